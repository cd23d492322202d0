// AVX-512 VNNI GEMM kernels of quant_gemm.h for q4_0 and q8_0 weights. Compiled with its own
// flags (engine/CMakeLists.txt); entered only after isa_available(CpuIsa::Avx512).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "engine/kernels/quant_gemm.h"

namespace qbench::quant_gemm_detail {
namespace {

inline float fp16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}
inline int32_t i32_at(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// q4_0 (18-byte blocks: fp16 d, 16 bytes of nibbles; value j < 16 in the low nibble of byte j,
// value 16 + j in its high nibble). The nibbles 0..15 are the unsigned operand of vpdpbusd
// (broadcast), the tile's int8 quants the signed one; the tile's -8 sum q_a starts each sum.
// R rows share the activation loads of each block.
template <int R>
void rows_q4_0(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* tile, float* out) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const __m128i low4 = _mm_set1_epi8(0x0F);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* tb = tile + size_t(b) * kGemmBlockBytes;
    __m512i a[8];
    for (int k = 0; k < 8; ++k) a[k] = _mm512_loadu_si512(tb + 64 * k);
    const __m512 da = _mm512_loadu_ps(reinterpret_cast<const float*>(tb + 512));
    const __m512i offset = _mm512_loadu_si512(tb + 576);
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w + size_t(r) * ws + size_t(b) * 18;
      const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
      alignas(32) uint8_t q[32];
      _mm_store_si128(reinterpret_cast<__m128i*>(q), _mm_and_si128(packed, low4));
      _mm_store_si128(reinterpret_cast<__m128i*>(q + 16), _mm_and_si128(_mm_srli_epi16(packed, 4), low4));
      __m512i s = offset;
      for (int k = 0; k < 8; ++k) s = _mm512_dpbusd_epi32(s, _mm512_set1_epi32(i32_at(q + 4 * k)), a[k]);
      const __m512 dd = _mm512_mul_ps(da, _mm512_set1_ps(fp16_at(blk)));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), dd, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(out + r * kGemmTokens, acc[r]);
}

// q8_0 (34-byte blocks: fp16 d, 32 int8 quants). The tile's quants + 128 are the unsigned
// operand, the weight dwords (broadcast) the signed one; the sum starts at -128 sum q_w.
template <int R>
void rows_q8_0(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* tile, float* out) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const __m256i bias = _mm256_set1_epi8(char(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* tb = tile + size_t(b) * kGemmBlockBytes;
    __m512i a[8];
    for (int k = 0; k < 8; ++k) a[k] = _mm512_loadu_si512(tb + 64 * k);
    const __m512 da = _mm512_loadu_ps(reinterpret_cast<const float*>(tb + 512));
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w + size_t(r) * ws + size_t(b) * 34;
      // sum q_w: sum (q_w + 128) as bytes against zero, minus 32 * 128.
      const __m256i qw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
      const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(qw, bias), _mm256_setzero_si256());
      const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
      const int32_t sum_w = int32_t(_mm_cvtsi128_si32(s2) + _mm_extract_epi32(s2, 2)) - 32 * 128;
      __m512i s = _mm512_set1_epi32(-128 * sum_w);
      for (int k = 0; k < 8; ++k) s = _mm512_dpbusd_epi32(s, a[k], _mm512_set1_epi32(i32_at(blk + 2 + 4 * k)));
      const __m512 dd = _mm512_mul_ps(da, _mm512_set1_ps(fp16_at(blk)));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), dd, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(out + r * kGemmTokens, acc[r]);
}


// Rows in groups of kGroup (the activation loads of a block are shared by the group), then one
// by one.
constexpr int kGroup = 4;
template <void (*Group)(int64_t, const uint8_t*, size_t, const uint8_t*, float*),
          void (*One)(int64_t, const uint8_t*, size_t, const uint8_t*, float*)>
void gemm(int64_t n, const uint8_t* w, size_t ws, int n_rows, const uint8_t* tile, float* out) {
  const int64_t nb = n / 32;
  int r = 0;
  for (; r + kGroup <= n_rows; r += kGroup) Group(nb, w + size_t(r) * ws, ws, tile, out + r * kGemmTokens);
  for (; r < n_rows; ++r) One(nb, w + size_t(r) * ws, ws, tile, out + r * kGemmTokens);
}

constexpr QuantGemmKernel kGemms[] = {
    {TensorType::Q4_0, GemmActLayout::Signed, gemm<rows_q4_0<kGroup>, rows_q4_0<1>>},
    {TensorType::Q8_0, GemmActLayout::Unsigned, gemm<rows_q8_0<kGroup>, rows_q8_0<1>>},
};

}  // namespace

const QuantGemmKernel* avx512_gemm(TensorType type) {
  for (const QuantGemmKernel& k : kGemms) {
    if (k.weight_type == type) return &k;
  }
  return nullptr;
}

}  // namespace qbench::quant_gemm_detail
