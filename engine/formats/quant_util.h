// Helpers shared by the block-format quantizers (legacy_quants.cc, k_quants.cc). Internal to
// engine/formats; not part of the public interface.
//
// Bit-exactness with llama.cpp's reference quantizers depends on evaluating every float
// expression in the same order and precision as ggml-quants.c, so the translation units that
// include this header are compiled with -ffp-contract=off (see engine/CMakeLists.txt): ggml's
// reference is built for baseline x86-64 (no FMA), and a fused a*b+c would round differently.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace qbench::quant_detail {

// Round to nearest, ties to even, for |v| <= 2^22 - 1 (ggml's nearest_int): adding 1.5 * 2^23
// moves the integer part into the low mantissa bits, where the FPU's rounding did the work.
// Outside that range the result is meaningless but defined, as in ggml.
inline int nearest_int(float v) {
  const float biased = v + 12582912.f;
  const int32_t bits = std::bit_cast<int32_t>(biased);
  return (bits & 0x007fffff) - 0x00400000;
}

// ggml's GROUP_MAX_EPS: a group whose largest magnitude is below this quantizes to all zeros.
inline constexpr float kGroupMaxEps = 1e-15f;

// The value of largest magnitude of x[0..n) (the first one on ties) and that magnitude, as
// ggml's quantizers find it before choosing a scale.
struct SignedMax {
  float max = 0, amax = 0;
};
inline SignedMax signed_max(const float* x, int n) {
  SignedMax m;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > m.amax) {
      m.amax = ax;
      m.max = x[i];
    }
  }
  return m;
}

// ggml's MIN / MAX macros: (a) < (b) ? (a) : (b) and (a) > (b) ? (a) : (b). Spelled out
// because std::min/std::max differ on ties and NaN in which operand they return.
template <typename T>
constexpr T ggml_min(T a, T b) { return a < b ? a : b; }
template <typename T>
constexpr T ggml_max(T a, T b) { return a > b ? a : b; }

// Block structs are copied in and out with memcpy: the packed bytes (a file mapping, a
// std::vector<uint8_t>) need not be aligned for the struct, and no aliasing rule is bent.
template <typename Block>
inline Block load_block(const uint8_t* src, int64_t index) {
  Block b;
  std::memcpy(&b, src + index * int64_t(sizeof(Block)), sizeof(Block));
  return b;
}
template <typename Block>
inline void store_block(void* dst, int64_t index, const Block& b) {
  std::memcpy(static_cast<uint8_t*>(dst) + index * int64_t(sizeof(Block)), &b, sizeof(Block));
}

}  // namespace qbench::quant_detail
