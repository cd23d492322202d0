// NF4 and FP8 E4M3 against their published definitions, not against qbench's own output.
//
// NF4: the 16 levels listed in the QLoRA paper (Dettmers et al. 2023, arXiv:2305.14314,
// Appendix E) and in bitsandbytes (functional.py get_4bit_type("nf4")); the construction they
// come from (create_normal_map: normal quantiles, 8 positive and 7 negative, scaled to [-1, 1]);
// and bitsandbytes' quantizer dQuantizeNF4 (csrc/kernels.cu), a decision tree of 15 float
// thresholds where x > t picks the upper code.
//
// FP8 E4M3: the OCP 8-bit Floating Point Specification (OFP8) rev. 1.0, Table 1 and section 5:
// sign, 4 exponent bits with bias 7, 3 mantissa bits; S.0000.001 = 2^-9 (smallest subnormal),
// S.0000.111 = 0.875 * 2^-6 (largest subnormal), S.0001.000 = 2^-6 (smallest normal),
// S.1111.110 = 1.75 * 2^8 = 448 (largest normal), S.1111.111 = NaN, no infinities, both zeros.
// Conversion to E4M3 rounds to nearest, ties to even; qbench uses the spec's saturating mode
// (float_codes.h: values beyond 448, infinities included, become +-448).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "engine/core/half.h"
#include "engine/formats/float_codes.h"

namespace qbench {
namespace {

// QLoRA Appendix E / bitsandbytes, as printed there (double literals).
constexpr double kQloraNf4[16] = {
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
};

// bitsandbytes dQuantizeNF4's thresholds in increasing order: code i+1 when x > kBnbNf4Split[i].
constexpr float kBnbNf4Split[15] = {
    -0.8480964004993439f, -0.6106329262256622f,  -0.4599952697753906f,   -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f,  0.2035212516784668f,   0.2920137718319893f,    0.3893125355243683f,
    0.5016634166240692f,  0.6427869200706482f,   0.8614784181118011f,
};

int bnb_nf4_quantize(float x) {
  int code = 0;
  for (float t : kBnbNf4Split) code += x > t ? 1 : 0;
  return code;
}

TEST(Nf4Oracle, CodeBookIsTheQloraTable) {
  for (int i = 0; i < 16; ++i) EXPECT_EQ(kNf4Codes[i], float(kQloraNf4[i])) << "code " << i;
}

// Inverse of the standard normal CDF by bisection on erfc (double precision, ~1e-15).
double norm_ppf(double p) {
  double lo = -10.0, hi = 10.0;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

TEST(Nf4Oracle, CodeBookFollowsTheQloraConstruction) {
  // create_normal_map(offset = 0.9677083): 8 positive levels at the quantiles
  // linspace(offset, 0.5, 9)[:-1], 7 negative at -linspace(offset, 0.5, 8)[:-1], zero, and
  // everything divided by the largest. bitsandbytes spaces the probabilities in float32, which
  // moves the steepest quantiles by a few 1e-7.
  const double offset = 0.9677083;
  std::vector<double> v;
  for (int i = 0; i < 8; ++i) v.push_back(norm_ppf(offset + (0.5 - offset) * i / 8.0));
  for (int i = 0; i < 7; ++i) v.push_back(-norm_ppf(offset + (0.5 - offset) * i / 7.0));
  v.push_back(0.0);
  std::sort(v.begin(), v.end());
  const double vmax = v.back();
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(kNf4Codes[i], v[size_t(i)] / vmax, 1e-6) << "code " << i;
}

TEST(Nf4Oracle, NearestCodeAgreesWithBitsandbytesQuantizer) {
  // Exactly at, one float below and one above each of bitsandbytes' thresholds, then a dense
  // sweep of [-1, 1].
  for (int i = 0; i < 15; ++i) {
    const float t = kBnbNf4Split[i];
    for (float x : {std::nextafter(t, -2.0f), t, std::nextafter(t, 2.0f)}) {
      EXPECT_EQ(nf4_nearest(x), bnb_nf4_quantize(x)) << "threshold " << i << " x=" << x;
    }
  }
  for (int k = -100000; k <= 100000; ++k) {
    const float x = float(k) / 100000.0f;
    ASSERT_EQ(nf4_nearest(x), bnb_nf4_quantize(x)) << "x=" << x;
  }
}

TEST(Nf4Oracle, BlockLayoutAndDequantizedValues) {
  // A block whose absmax is 2 (exact in fp16) and whose values are 2 * level i for i = 0..15,
  // repeated: the codes are 0..15 and the bytes pack value 2i in the high nibble.
  std::vector<float> x(kQKNf4);
  for (int i = 0; i < kQKNf4; ++i) x[size_t(i)] = float(2.0 * kQloraNf4[i % 16]);
  std::vector<uint8_t> packed(sizeof(BlockNf4));
  quantize_row_nf4(x.data(), packed.data(), kQKNf4);
  uint16_t absmax;
  std::memcpy(&absmax, packed.data(), 2);
  EXPECT_EQ(absmax, 0x4000);  // fp16 2.0
  EXPECT_EQ(packed[2], 0x01);  // values 0 and 1: codes 0 and 1
  EXPECT_EQ(packed[2 + 7], 0xEF);  // values 14 and 15
  std::vector<float> y(kQKNf4);
  dequantize_row_nf4(packed.data(), y.data(), kQKNf4);
  for (int i = 0; i < kQKNf4; ++i) EXPECT_EQ(y[size_t(i)], x[size_t(i)]) << i;
}

// E4M3 value of a code, written from the OCP table's definition.
double ocp_e4m3(uint8_t code) {
  const int s = code >> 7, e = (code >> 3) & 15, m = code & 7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  const double mag = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return s ? -mag : mag;
}

TEST(Fp8E4m3Oracle, SpecialAndExtremeEncodings) {
  EXPECT_EQ(e4m3_to_fp32(0x00), 0.0f);
  EXPECT_FALSE(std::signbit(e4m3_to_fp32(0x00)));
  EXPECT_EQ(e4m3_to_fp32(0x80), 0.0f);
  EXPECT_TRUE(std::signbit(e4m3_to_fp32(0x80)));
  EXPECT_EQ(e4m3_to_fp32(0x01), std::ldexp(1.0f, -9));          // S.0000.001
  EXPECT_EQ(e4m3_to_fp32(0x07), 0.875f * std::ldexp(1.0f, -6));  // S.0000.111
  EXPECT_EQ(e4m3_to_fp32(0x08), std::ldexp(1.0f, -6));          // S.0001.000
  EXPECT_EQ(e4m3_to_fp32(0x38), 1.0f);                          // S.0111.000
  EXPECT_EQ(e4m3_to_fp32(0x40), 2.0f);
  EXPECT_EQ(e4m3_to_fp32(0x3C), 1.5f);
  EXPECT_EQ(e4m3_to_fp32(0x77), 240.0f);                        // S.1110.111
  EXPECT_EQ(e4m3_to_fp32(0x78), 256.0f);  // exponent 1111 is a normal exponent in E4M3
  EXPECT_EQ(e4m3_to_fp32(0x7E), 448.0f);                        // S.1111.110
  EXPECT_EQ(e4m3_to_fp32(0xFE), -448.0f);
  EXPECT_EQ(e4m3_to_fp32(0xB8), -1.0f);
  EXPECT_TRUE(std::isnan(e4m3_to_fp32(0x7F)));                  // S.1111.111
  EXPECT_TRUE(std::isnan(e4m3_to_fp32(0xFF)));
  EXPECT_EQ(kE4M3Max, 448.0f);
}

TEST(Fp8E4m3Oracle, EveryCodeDecodesToTheSpecValueAndRoundTrips) {
  int nans = 0;
  for (int c = 0; c < 256; ++c) {
    const double want = ocp_e4m3(uint8_t(c));
    const float got = e4m3_to_fp32(uint8_t(c));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << "code " << c;
      ++nans;
      continue;
    }
    EXPECT_EQ(double(got), want) << "code " << c;
    EXPECT_EQ(std::signbit(got), c >= 0x80) << "code " << c;
    EXPECT_EQ(fp32_to_e4m3(got), c) << "code " << c;  // every value is exactly representable
  }
  EXPECT_EQ(nans, 2);  // only S.1111.111: no infinities, no other NaNs
}

TEST(Fp8E4m3Oracle, RoundsToNearestTiesToEven) {
  // Ties: exactly halfway between two codes goes to the one with an even mantissa.
  EXPECT_EQ(fp32_to_e4m3(1.0625f), 0x38);   // 1.0 (m=000) vs 1.125 (m=001)
  EXPECT_EQ(fp32_to_e4m3(1.1875f), 0x3A);   // 1.125 (001) vs 1.25 (010)
  EXPECT_EQ(fp32_to_e4m3(-1.1875f), 0xBA);
  EXPECT_EQ(fp32_to_e4m3(400.0f), 0x7C);    // 384 (100) vs 416 (101)
  EXPECT_EQ(fp32_to_e4m3(432.0f), 0x7E);    // 416 (101) vs 448 (110)
  EXPECT_EQ(fp32_to_e4m3(std::ldexp(1.0f, -10)), 0x00);  // 0 vs 2^-9: to zero
  EXPECT_EQ(fp32_to_e4m3(-std::ldexp(1.0f, -10)), 0x80);
  EXPECT_EQ(fp32_to_e4m3(std::ldexp(3.0f, -10)), 0x02);  // 2^-9 (001) vs 2^-8 (010)
  EXPECT_EQ(fp32_to_e4m3(std::ldexp(15.0f, -10)), 0x08);  // largest subnormal vs 2^-6
  EXPECT_EQ(fp32_to_e4m3(8.5f), 0x50);  // 8 (S.1010.000) vs 9 (S.1010.001)
  // Off the tie, the nearer code.
  EXPECT_EQ(fp32_to_e4m3(std::nextafter(1.0625f, 2.0f)), 0x39);
  EXPECT_EQ(fp32_to_e4m3(std::nextafter(1.1875f, 0.0f)), 0x39);
  EXPECT_EQ(fp32_to_e4m3(std::nextafter(std::ldexp(1.0f, -10), 1.0f)), 0x01);
  EXPECT_EQ(fp32_to_e4m3(0.3f), 0x2A);  // 0.3 between 0.28125 (0x29) and 0.3125 (0x2A)
  EXPECT_EQ(fp32_to_e4m3(1e-30f), 0x00);
  EXPECT_EQ(fp32_to_e4m3(-0.0f), 0x80);
}

TEST(Fp8E4m3Oracle, SaturatesBeyondTheLargestNormal) {
  // float_codes.h: the spec's saturating conversion, since E4M3 has no infinity.
  EXPECT_EQ(fp32_to_e4m3(448.0f), 0x7E);
  EXPECT_EQ(fp32_to_e4m3(464.0f), 0x7E);  // halfway to the 480 that S.1111.111 would have been
  EXPECT_EQ(fp32_to_e4m3(500.0f), 0x7E);
  EXPECT_EQ(fp32_to_e4m3(1e30f), 0x7E);
  EXPECT_EQ(fp32_to_e4m3(-1e30f), 0xFE);
  EXPECT_EQ(fp32_to_e4m3(std::numeric_limits<float>::infinity()), 0x7E);
  EXPECT_EQ(fp32_to_e4m3(-std::numeric_limits<float>::infinity()), 0xFE);
}

TEST(Fp8E4m3Oracle, RowFormatScalesTheLargestMagnitudeTo448) {
  const std::vector<float> x = {0.5f, -2.0f, 1.0f, 0.0f};  // max |x| = 2: scale 2/448
  std::vector<uint8_t> packed(size_t(kFp8RowHeaderBytes) + x.size());
  quantize_row_fp8_e4m3(x.data(), packed.data(), int64_t(x.size()));
  float scale;
  std::memcpy(&scale, packed.data(), 4);
  EXPECT_EQ(scale, 2.0f / 448.0f);
  // 0.5 / scale = 112 = 1.75 * 2^6: S.1101.110; -2 -> -448; 1 -> 224 = 1.75 * 2^7: S.1110.110.
  EXPECT_EQ(packed[4], 0x6E);
  EXPECT_EQ(packed[5], 0xFE);
  EXPECT_EQ(packed[6], 0x76);
  EXPECT_EQ(packed[7], 0x00);
}

}  // namespace
}  // namespace qbench
