// AVX2 + FMA + F16C kernels of quant_dot.h. Compiled with exactly those flags (see
// engine/CMakeLists.txt) and run only after isa_available(CpuIsa::Avx2). This file includes no
// project header with inline functions: an inline function emitted here with AVX2 could be
// the copy the linker keeps for the whole program.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "engine/formats/legacy_quants.h"  // block structs and sizes only

namespace qbench::quant_dot_detail {
namespace {

inline float fp16_scale(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Signed 8-bit dot product of 32 pairs as 8 int32 lanes: |x| * (y with x's sign), so that
// maddubs (unsigned x signed) sees a non-negative left operand. |x| <= 128, |y| <= 127: the
// pairwise int16 sums stay below 2^15.
inline __m256i dot_i8(__m256i x, __m256i y) {
  const __m256i ax = _mm256_sign_epi8(x, x);
  const __m256i sy = _mm256_sign_epi8(y, x);
  return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
}

}  // namespace

float vec_dot_q4_0_q8_0_avx2(int64_t n, const uint8_t* w, const uint8_t* a) {
  const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
  const __m256i eight = _mm256_set1_epi8(8);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t ib = 0; ib < n / kQK8_0; ++ib) {
    const uint8_t* xb = w + ib * int64_t(sizeof(BlockQ4_0));
    const uint8_t* yb = a + ib * int64_t(sizeof(BlockQ8_0));
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(xb + 2));
    // Low nibbles are values 0..15, high nibbles values 16..31.
    __m256i qx = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), low_nibbles);
    qx = _mm256_sub_epi8(qx, eight);
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yb + 2));
    const __m256 d = _mm256_set1_ps(fp16_scale(xb) * fp16_scale(yb));
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, qy)), acc);
  }
  return hsum(acc);
}

float vec_dot_q8_0_q8_0_avx2(int64_t n, const uint8_t* w, const uint8_t* a) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t ib = 0; ib < n / kQK8_0; ++ib) {
    const uint8_t* xb = w + ib * int64_t(sizeof(BlockQ8_0));
    const uint8_t* yb = a + ib * int64_t(sizeof(BlockQ8_0));
    const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 2));
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yb + 2));
    const __m256 d = _mm256_set1_ps(fp16_scale(xb) * fp16_scale(yb));
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, qy)), acc);
  }
  return hsum(acc);
}

}  // namespace qbench::quant_dot_detail
