#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <vector>

#include "engine/core/half.h"
#include "engine/formats/types.h"
#include <immintrin.h>

namespace qbench {
namespace {

TEST(Half, EveryFp16SurvivesARoundTrip) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_fp32(uint16_t(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(fp32_to_fp16(f), h) << "half bits " << h;
  }
}

TEST(Half, KnownValues) {
  EXPECT_EQ(fp16_to_fp32(0x3C00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0xC000), -2.0f);
  EXPECT_EQ(fp16_to_fp32(0x7BFF), 65504.0f);
  EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7C00);  // rounds to infinity
  EXPECT_EQ(fp32_to_fp16(65519.0f), 0x7BFF);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);  // tie to even: zero
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(NAN))));
  EXPECT_EQ(bf16_to_fp32(fp32_to_bf16(1.0f)), 1.0f);
  EXPECT_EQ(fp32_to_bf16(1.00390625f), 0x3F80);  // halfway rounds to even
  EXPECT_EQ(fp32_to_bf16(1.01171875f), 0x3F82);  // halfway rounds to even (up)
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(NAN))));
}

// F16C through a target attribute and a run-time check: the portable build compiles this file
// without -mf16c, and the test must run there too.
__attribute__((target("f16c"))) uint16_t f16c_narrow(float f) { return _cvtss_sh(f, 0); }

TEST(Half, NarrowingMatchesF16CRoundToNearestEven) {
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "no F16C on this CPU";
  std::mt19937 rng(7);
  for (int i = 0; i < 2000000; ++i) {
    const float f = std::bit_cast<float>(uint32_t(rng()));
    if (std::isnan(f)) continue;
    ASSERT_EQ(fp32_to_fp16(f), f16c_narrow(f)) << "float " << f;
  }
}

// Every fp16 value (NaNs included) widened by the scalar code, by the F16C unit that portable
// builds dispatch to, and by the f16 format's dequantizer: the same bits.
TEST(Half, WideningRowsAgreeOnEveryPathBitForBit) {
  std::vector<uint8_t> src(2 * 65536 + 6);  // + 3 values: a tail shorter than 8
  for (uint32_t h = 0; h < 65536 + 3; ++h) {
    src[2 * h] = uint8_t(h & 0xFF);
    src[2 * h + 1] = uint8_t((h >> 8) & 0xFF);
  }
  const int64_t n = int64_t(src.size() / 2);
  std::vector<float> scalar(static_cast<size_t>(n)), table(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) scalar[size_t(i)] = fp16_to_fp32(uint16_t(src[2 * i] | src[2 * i + 1] << 8));
  type_traits(TensorType::F16).dequantize_row(src.data(), table.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(table[size_t(i)]), std::bit_cast<uint32_t>(scalar[size_t(i)])) << i;
  }
  if (!__builtin_cpu_supports("f16c") || !__builtin_cpu_supports("avx")) GTEST_SKIP() << "no F16C on this CPU";
  std::vector<float> f16c(static_cast<size_t>(n));
  fp16_to_fp32_row_f16c(src.data(), f16c.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(f16c[size_t(i)]), std::bit_cast<uint32_t>(scalar[size_t(i)])) << i;
  }
}

}  // namespace
}  // namespace qbench
