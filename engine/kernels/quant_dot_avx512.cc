// AVX-512 (F, BW, VL, VNNI) kernels of quant_dot.h: vpdpbusd does the unsigned x signed 8-bit
// dot product with 32-bit accumulation in one instruction, and two blocks are processed per
// 512-bit register. Compiled with its own flags (engine/CMakeLists.txt); run only after
// isa_available(CpuIsa::Avx512). No project header with inline functions is included (see
// quant_dot_avx2.cc).
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

inline __m256i load32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// Two blocks' 32 quants side by side.
inline __m512i load2x32(const uint8_t* p0, const uint8_t* p1) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(load32(p0)), load32(p1), 1);
}

inline __m256i unpack_q4(const uint8_t* qs) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), _mm256_set1_epi8(0x0F));
}

// Per-block scales d_w * d_a broadcast over that block's 8 lanes.
inline __m512 scales2(float d0, float d1) {
  return _mm512_insertf32x8(_mm512_set1_ps(d0), _mm256_set1_ps(d1), 1);
}

}  // namespace

// sum (q - 8) * y = sum q * y - 8 * sum y, with q in [0, 15] as the unsigned operand.
float vec_dot_q4_0_q8_0_avx512(int64_t n, const uint8_t* w, const uint8_t* a) {
  constexpr int64_t kW = sizeof(BlockQ4_0), kA = sizeof(BlockQ8_0);
  const int64_t nb = n / kQK8_0;
  const __m512i ones = _mm512_set1_epi8(1);
  __m512 acc = _mm512_setzero_ps();
  int64_t ib = 0;
  for (; ib + 1 < nb; ib += 2) {
    const uint8_t *x0 = w + ib * kW, *x1 = x0 + kW, *y0 = a + ib * kA, *y1 = y0 + kA;
    const __m512i qx = _mm512_inserti64x4(_mm512_castsi256_si512(unpack_q4(x0 + 2)), unpack_q4(x1 + 2), 1);
    const __m512i qy = load2x32(y0 + 2, y1 + 2);
    const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qx, qy);
    const __m512i sum_y = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, qy);
    const __m512i sumi = _mm512_sub_epi32(dot, _mm512_slli_epi32(sum_y, 3));
    const __m512 d = scales2(fp16_scale(x0) * fp16_scale(y0), fp16_scale(x1) * fp16_scale(y1));
    acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc);
  }
  float tail = 0;
  for (; ib < nb; ++ib) {  // odd block count: the last block in 256-bit
    const uint8_t *x0 = w + ib * kW, *y0 = a + ib * kA;
    const __m256i qy = load32(y0 + 2);
    const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), unpack_q4(x0 + 2), qy);
    const __m256i sum_y = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), qy);
    const __m256i sumi = _mm256_sub_epi32(dot, _mm256_slli_epi32(sum_y, 3));
    tail += fp16_scale(x0) * fp16_scale(y0) *
            float(_mm512_reduce_add_epi32(_mm512_zextsi256_si512(sumi)));
  }
  return _mm512_reduce_add_ps(acc) + tail;
}

// |x| as the unsigned operand, y with x's sign as the signed one.
float vec_dot_q8_0_q8_0_avx512(int64_t n, const uint8_t* w, const uint8_t* a) {
  constexpr int64_t kB = sizeof(BlockQ8_0);
  const int64_t nb = n / kQK8_0;
  __m512 acc = _mm512_setzero_ps();
  int64_t ib = 0;
  for (; ib + 1 < nb; ib += 2) {
    const uint8_t *x0 = w + ib * kB, *x1 = x0 + kB, *y0 = a + ib * kB, *y1 = y0 + kB;
    const __m512i qx = load2x32(x0 + 2, x1 + 2);
    const __m512i qy = load2x32(y0 + 2, y1 + 2);
    const __m512i ax = _mm512_abs_epi8(qx);
    // y * sign(x): negate y where x < 0; where x == 0, |x| = 0 makes the product 0 anyway.
    const __mmask64 neg = _mm512_movepi8_mask(qx);
    const __m512i sy = _mm512_mask_sub_epi8(qy, neg, _mm512_setzero_si512(), qy);
    const __m512i sumi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ax, sy);
    const __m512 d = scales2(fp16_scale(x0) * fp16_scale(y0), fp16_scale(x1) * fp16_scale(y1));
    acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc);
  }
  float tail = 0;
  for (; ib < nb; ++ib) {
    const uint8_t *x0 = w + ib * kB, *y0 = a + ib * kB;
    const __m256i qx = load32(x0 + 2), qy = load32(y0 + 2);
    const __m256i sumi = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(qx), _mm256_sign_epi8(qy, qx));
    tail += fp16_scale(x0) * fp16_scale(y0) *
            float(_mm512_reduce_add_epi32(_mm512_zextsi256_si512(sumi)));
  }
  return _mm512_reduce_add_ps(acc) + tail;
}

}  // namespace qbench::quant_dot_detail
