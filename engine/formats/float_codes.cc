#include "engine/formats/float_codes.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "engine/core/half.h"

namespace qbench {
namespace {

// Values of the 127 non-negative finite E4M3 codes 0x00..0x7E, increasing with the code.
constexpr std::array<float, 127> make_e4m3_table() {
  std::array<float, 127> t{};
  for (int c = 0; c < 127; ++c) {
    const int e = c >> 3, m = c & 7;
    // Subnormal (e == 0): m/8 * 2^-6; normal: (1 + m/8) * 2^(e-7).
    float v = e == 0 ? float(m) / 8.0f : 1.0f + float(m) / 8.0f;
    int ex = e == 0 ? -6 : e - 7;
    for (; ex > 0; --ex) v *= 2.0f;
    for (; ex < 0; ++ex) v *= 0.5f;
    t[size_t(c)] = v;
  }
  return t;
}
constexpr std::array<float, 127> kE4M3 = make_e4m3_table();
static_assert(kE4M3[126] == 448.0f && kE4M3[1] == 0.001953125f);

// Decision thresholds between consecutive NF4 levels: code i is chosen for v in
// (mid[i-1], mid[i]]. These are bitsandbytes' dQuantizeNF4 thresholds (csrc/kernels.cu: x > t
// picks the upper code), the midpoints printed to 17 digits and read as float literals. The
// midpoint of two floats is often exactly halfway between two floats, so computing it here
// (in float, or in double and rounded) lands one ulp away from bitsandbytes at 4 of the 15 and
// would code those 4 inputs differently (tests/engine/test_float_codes.cc).
constexpr std::array<float, 15> kNf4Mid = {
    -0.8480964004993439f, -0.6106329262256622f,  -0.4599952697753906f,   -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f,  0.2035212516784668f,   0.2920137718319893f,    0.3893125355243683f,
    0.5016634166240692f,  0.6427869200706482f,   0.8614784181118011f,
};
constexpr bool nf4_thresholds_separate_the_levels() {
  for (int i = 0; i < 15; ++i) {
    if (!(kNf4Codes[i] < kNf4Mid[size_t(i)] && kNf4Mid[size_t(i)] < kNf4Codes[i + 1])) return false;
    // Within one float step of the midpoint.
    const float mid = 0.5f * (kNf4Codes[i] + kNf4Codes[i + 1]);
    const float d = kNf4Mid[size_t(i)] - mid;
    if (d > 6e-8f || d < -6e-8f) return false;
  }
  return true;
}
static_assert(nf4_thresholds_separate_the_levels());

}  // namespace

int nf4_nearest(float v) {
  // First midpoint >= v: values exactly on a midpoint go to the lower code.
  return int(std::lower_bound(kNf4Mid.begin(), kNf4Mid.end(), v) - kNf4Mid.begin());
}

float e4m3_to_fp32(uint8_t code) {
  const float mag = (code & 0x7F) == 0x7F ? NAN : kE4M3[code & 0x7F];
  return (code & 0x80) ? -mag : mag;
}

uint8_t fp32_to_e4m3(float x) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  const float a = std::fabs(x);
  if (a >= kE4M3Max) return sign | 0x7E;
  // Largest code with value <= a, then the nearer of it and the next; ties to the even code
  // (the even mantissa, since the code's low bit is the mantissa's).
  const int lo = int(std::upper_bound(kE4M3.begin(), kE4M3.end(), a) - kE4M3.begin()) - 1;
  const float dl = a - kE4M3[size_t(lo)], dh = kE4M3[size_t(lo + 1)] - a;
  const int c = dl < dh ? lo : dh < dl ? lo + 1 : (lo % 2 == 0 ? lo : lo + 1);
  return sign | uint8_t(c);
}

void quantize_row_nf4(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint8_t*>(y);
  for (int64_t b = 0; b < n / kQKNf4; ++b, x += kQKNf4) {
    BlockNf4 blk{};
    float amax = 0.0f;
    for (int i = 0; i < kQKNf4; ++i) amax = std::max(amax, std::fabs(x[i]));
    blk.absmax = fp32_to_fp16(amax);
    const float s = fp16_to_fp32(blk.absmax);
    const float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (int i = 0; i < kQKNf4; i += 2) {
      const int hi = nf4_nearest(std::clamp(x[i] * inv, -1.0f, 1.0f));
      const int lo = nf4_nearest(std::clamp(x[i + 1] * inv, -1.0f, 1.0f));
      blk.qs[i / 2] = uint8_t(hi << 4 | lo);
    }
    std::memcpy(out + b * int64_t(sizeof(BlockNf4)), &blk, sizeof blk);
  }
}

void dequantize_row_nf4(const uint8_t* src, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQKNf4; ++b, y += kQKNf4) {
    BlockNf4 blk;
    std::memcpy(&blk, src + b * int64_t(sizeof(BlockNf4)), sizeof blk);
    const float s = fp16_to_fp32(blk.absmax);
    for (int i = 0; i < kQKNf4; i += 2) {
      y[i] = s * kNf4Codes[blk.qs[i / 2] >> 4];
      y[i + 1] = s * kNf4Codes[blk.qs[i / 2] & 15];
    }
  }
}

void pack_row_fp8_e4m3(const float* x, int64_t n, float scale, uint8_t* dst) {
  std::memcpy(dst, &scale, 4);
  uint8_t* q = dst + kFp8RowHeaderBytes;
  if (!(scale > 0.0f)) {
    std::memset(q, 0, size_t(n));
    return;
  }
  // Division, not multiplication by 1/scale: a subnormal scale's reciprocal can overflow.
  for (int64_t i = 0; i < n; ++i) q[i] = fp32_to_e4m3(x[i] / scale);
}

void quantize_row_fp8_e4m3(const float* x, void* y, int64_t n) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  pack_row_fp8_e4m3(x, n, amax / kE4M3Max, static_cast<uint8_t*>(y));
}

void dequantize_row_fp8_e4m3(const uint8_t* src, float* y, int64_t n) {
  float s;
  std::memcpy(&s, src, 4);
  const uint8_t* q = src + kFp8RowHeaderBytes;
  for (int64_t i = 0; i < n; ++i) y[i] = s * e4m3_to_fp32(q[i]);
}

}  // namespace qbench
