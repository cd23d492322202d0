// SIMD kernels of quant_dot.h, written once and compiled twice: by quant_dot_avx2.cc (AVX2 + FMA
// + F16C) and by quant_dot_avx512.cc (adds AVX-512 F/BW/VL/DQ/VNNI), each with its own flags.
// The including file defines QBENCH_SIMD_NS (the namespace that keeps the two copies apart: no
// function here may be emitted under the same name from both translation units) and
// QBENCH_SIMD_AVX512 (0 or 1), and includes <immintrin.h> first. No include guard on purpose.
//
// Structure shared by every quantized kernel, and the reason it is fast for prefill as well as
// decode: a weight block is unpacked from its packed bits to bytes once, then multiplied with
// the matching block of up to kMaxTokenTile activation rows (tokens). Integer products:
//   AVX2:    vpmaddubsw (u8 x s8 -> pairs of i16) + vpmaddwd (i16 x i16 -> i32)
//   AVX-512: vpdpbusd (u8 x s8 -> i32, accumulating) and vpdpwssd (i16 x i16 -> i32), and two
//            32-value blocks per 512-bit register for the legacy formats.
// Signed weights use |x| as the unsigned operand and y * sign(x) as the signed one.
// Overflow: u8 <= 63 times |s8| <= 128, pairwise, is at most 16128 < 2^15 (vpmaddubsw saturates
// at 2^15 - 1); with |x| <= 128 (q8_0) and |y| <= 127 the bound is 32512, still below.
#ifndef QBENCH_SIMD_NS
#error "define QBENCH_SIMD_NS and QBENCH_SIMD_AVX512 before including quant_dot_simd-inl.h"
#endif

namespace qbench::quant_dot_detail::QBENCH_SIMD_NS {
namespace {

// ---------------------------------------------------------------------------------------------
// Primitives

inline float fp16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}
inline float f32_at(const uint8_t* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}
// The activation rows' scale tables (d_a, s_a) follow nb blocks of 34 or 36 bytes, so they are
// only 2-byte aligned when nb is odd: read them with unaligned loads. (A plain float or double
// access there, or _mm_load_sd, is undefined behaviour; UBSan reported it.)
inline float scale_at(const float* p) { return f32_at(reinterpret_cast<const uint8_t*>(p)); }
inline __m128 two_scales_at(const float* p) {
  return _mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
inline __m256i load256(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m128i load128(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 8 int32 lanes, lane k = sum of the products of bytes 4k .. 4k+3 (u unsigned, s signed).
inline __m256i dot_u8s8(__m256i u, __m256i s) {
#if QBENCH_SIMD_AVX512
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

// acc + per-16-byte-group scaled dot: int16 lane k of maddubs(u, s) (bytes 2k, 2k+1) times
// int16 lane k of sc16, summed in pairs into int32.
inline __m256i dot_u8s8_scaled(__m256i acc, __m256i u, __m256i s, __m256i sc16) {
#if QBENCH_SIMD_AVX512
  return _mm256_dpwssd_epi32(acc, _mm256_maddubs_epi16(u, s), sc16);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), sc16));
#endif
}

// Calls f.template operator()<NT>() with NT = n_tok as a compile-time constant, so that the
// per-token accumulators of the kernels live in registers.
template <typename F>
inline void with_token_count(int n_tok, F&& f) {
  static_assert(kMaxTokenTile == 8);
  switch (n_tok) {
    case 1: f.template operator()<1>(); break;
    case 2: f.template operator()<2>(); break;
    case 3: f.template operator()<3>(); break;
    case 4: f.template operator()<4>(); break;
    case 5: f.template operator()<5>(); break;
    case 6: f.template operator()<6>(); break;
    case 7: f.template operator()<7>(); break;
    default: f.template operator()<8>(); break;
  }
}

// ---------------------------------------------------------------------------------------------
// Legacy formats: 32-value blocks. Each format gives its block size, its activation block size
// (Q8_0: fp16 d + 32 quants; Q8_1: d, s, 32 quants; the kernels read the fp32 scale and
// contiguous quant copies that follow a row's blocks, see activation_row_bytes) and the 32 weight
// quants as bytes in value order: signed (q - z) when kSigned, else unsigned q with a minimum.

inline __m256i nibbles32(const uint8_t* qs) {  // low nibbles are values 0..15, high 16..31
  const __m128i packed = load128(qs);
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), _mm256_set1_epi8(0x0F));
}
// Byte j = 0x10 where bit j of the little-endian uint32 at qh is set, else 0.
inline __m256i high_bits32(const uint8_t* qh) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
#if QBENCH_SIMD_AVX512
  return _mm256_maskz_set1_epi8(__mmask32(h), 0x10);
#else
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(int(h)), shuf);
  bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
  return _mm256_and_si256(_mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1)), _mm256_set1_epi8(0x10));
#endif
}

#if QBENCH_SIMD_AVX512
// Two blocks' nibbles in value order: [b0 0..15, b0 16..31, b1 0..15, b1 16..31].
inline __m512i nibbles64(const uint8_t* qs0, const uint8_t* qs1) {
  const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(load128(qs0)), load128(qs1), 1);
  const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
  // both = [b0 low, b1 low, b0 high, b1 high] in 128-bit quarters; reorder the quarters.
  const __m512i order = _mm512_set_epi64(7, 6, 3, 2, 5, 4, 1, 0);
  return _mm512_and_si512(_mm512_permutexvar_epi64(order, both), _mm512_set1_epi8(0x0F));
}
// 0x10 where bit j of block 0's (j < 32) or block 1's (j >= 32) qh is set.
inline __m512i high_bits64(const uint8_t* qh0, const uint8_t* qh1) {
  uint32_t h0, h1;
  std::memcpy(&h0, qh0, 4);
  std::memcpy(&h1, qh1, 4);
  return _mm512_maskz_set1_epi8(__mmask64(h0) | (__mmask64(h1) << 32), 0x10);
}
#endif

// Two fp16 values (at p0 and p1) as floats in lanes 0 and 1.
inline __m128 fp16_pair(const uint8_t* p0, const uint8_t* p1) {
  uint16_t h0, h1;
  std::memcpy(&h0, p0, 2);
  std::memcpy(&h1, p1, 2);
  return _mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(h0), h1, 1));
}

struct FmtQ4_0 {
  static constexpr int64_t kBytes = 18, kActBytes = 34;
  static constexpr bool kSigned = true, kHasMin = false;
  static __m256i quants(const uint8_t* b) { return _mm256_sub_epi8(nibbles32(b + 2), _mm256_set1_epi8(8)); }
#if QBENCH_SIMD_AVX512
  static __m512i quants2(const uint8_t* b0, const uint8_t* b1) {
    return _mm512_sub_epi8(nibbles64(b0 + 2, b1 + 2), _mm512_set1_epi8(8));
  }
#endif
};
struct FmtQ4_1 {
  static constexpr int64_t kBytes = 20, kActBytes = 36;
  static constexpr bool kSigned = false, kHasMin = true;
  static __m256i quants(const uint8_t* b) { return nibbles32(b + 4); }
#if QBENCH_SIMD_AVX512
  static __m512i quants2(const uint8_t* b0, const uint8_t* b1) { return nibbles64(b0 + 4, b1 + 4); }
#endif
};
struct FmtQ5_0 {
  static constexpr int64_t kBytes = 22, kActBytes = 34;
  static constexpr bool kSigned = true, kHasMin = false;
  static __m256i quants(const uint8_t* b) {
    return _mm256_sub_epi8(_mm256_or_si256(nibbles32(b + 6), high_bits32(b + 2)), _mm256_set1_epi8(16));
  }
#if QBENCH_SIMD_AVX512
  static __m512i quants2(const uint8_t* b0, const uint8_t* b1) {
    return _mm512_sub_epi8(_mm512_or_si512(nibbles64(b0 + 6, b1 + 6), high_bits64(b0 + 2, b1 + 2)),
                           _mm512_set1_epi8(16));
  }
#endif
};
struct FmtQ5_1 {
  static constexpr int64_t kBytes = 24, kActBytes = 36;
  static constexpr bool kSigned = false, kHasMin = true;
  static __m256i quants(const uint8_t* b) { return _mm256_or_si256(nibbles32(b + 8), high_bits32(b + 4)); }
#if QBENCH_SIMD_AVX512
  static __m512i quants2(const uint8_t* b0, const uint8_t* b1) {
    return _mm512_or_si512(nibbles64(b0 + 8, b1 + 8), high_bits64(b0 + 4, b1 + 4));
  }
#endif
};
struct FmtQ8_0 {
  static constexpr int64_t kBytes = 34, kActBytes = 34;
  static constexpr bool kSigned = true, kHasMin = false;
  static __m256i quants(const uint8_t* b) { return load256(b + 2); }
#if QBENCH_SIMD_AVX512
  static __m512i quants2(const uint8_t* b0, const uint8_t* b1) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(load256(b0 + 2)), load256(b1 + 2), 1);
  }
#endif
};

// 8 fp16 values at p, p + stride, ... as floats.
inline __m256 fp16_x8(const uint8_t* p, int64_t stride) {
  uint16_t h[8];
  for (int i = 0; i < 8; ++i) std::memcpy(&h[i], p + i * stride, 2);
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)));
}

// Per block and token: acc_t += (d_w * d_a) * sumi (8 lanes), m_t += m_w * s_a (minimum formats).
// Activation block scales d_a (and s_a) are read from the fp32 copies after the row's blocks.
template <typename F, int NT>
void dot_legacy_tiled(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, float* y, size_t ys) {
  const int64_t nb = n / 32;
  float summ[NT] = {};
  const uint8_t* at[NT];
  const float* da[NT];     // d_a of each block
  const float* sa[NT];     // s_a of each block (Q8_1)
  const uint8_t* qa[NT];   // all quants, contiguous
  for (int t = 0; t < NT; ++t) {
    at[t] = a + size_t(t) * as;
    da[t] = reinterpret_cast<const float*>(at[t] + nb * F::kActBytes);
    sa[t] = da[t] + nb;
    qa[t] = reinterpret_cast<const uint8_t*>(da[t] + (F::kHasMin ? 2 * nb : nb));
  }
  int64_t ib = 0;
#if QBENCH_SIMD_AVX512
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  // Eight blocks per step, two per 512-bit register; the 8 products d_w d_a are formed in one
  // multiply and spread to their register halves by vpermps.
  __m256 minsum8[NT];  // per lane (block ib + l): sum of m_w * s_a
  for (int t = 0; t < NT; ++t) minsum8[t] = _mm256_setzero_ps();
  for (; ib + 8 <= nb; ib += 8) {
    __m512i ux[4];
    __mmask64 neg[4];
    for (int k = 0; k < 4; ++k) {
      const uint8_t* x0 = w + (ib + 2 * k) * F::kBytes;
      const __m512i qx = F::quants2(x0, x0 + F::kBytes);
      ux[k] = F::kSigned ? _mm512_abs_epi8(qx) : qx;
      neg[k] = F::kSigned ? _mm512_movepi8_mask(qx) : 0;
    }
    const __m256 dw = fp16_x8(w + ib * F::kBytes, F::kBytes);
    const __m256 mw = F::kHasMin ? fp16_x8(w + ib * F::kBytes + 2, F::kBytes) : _mm256_setzero_ps();
    for (int t = 0; t < NT; ++t) {
      const __m512 dd = _mm512_castps256_ps512(_mm256_mul_ps(dw, _mm256_loadu_ps(da[t] + ib)));
      for (int k = 0; k < 4; ++k) {
        __m512i qy = _mm512_loadu_si512(qa[t] + (ib + 2 * k) * 32);
        if (F::kSigned) qy = _mm512_mask_sub_epi8(qy, neg[k], _mm512_setzero_si512(), qy);
        const __m512i sumi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ux[k], qy);
        // Lanes 0..7 take product 2k, lanes 8..15 product 2k + 1.
        const __m512i sel = _mm512_set_epi32(2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1,
                                             2 * k + 1, 2 * k + 1, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k);
        acc[t] = _mm512_fmadd_ps(_mm512_permutexvar_ps(sel, dd), _mm512_cvtepi32_ps(sumi), acc[t]);
      }
      if (F::kHasMin) minsum8[t] = _mm256_fmadd_ps(mw, _mm256_loadu_ps(sa[t] + ib), minsum8[t]);
    }
  }
  // Then two blocks per register.
  __m128 minsum[NT];  // lanes 0, 1: sum of m_w * s_a over the even, odd blocks
  for (int t = 0; t < NT; ++t) minsum[t] = _mm_setzero_ps();
  // Lanes 0..7 take element 0 (block ib's scale), lanes 8..15 element 1 (block ib + 1's).
  const __m512i halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  for (; ib + 1 < nb; ib += 2) {
    const uint8_t* x0 = w + ib * F::kBytes;
    const uint8_t* x1 = x0 + F::kBytes;
    const __m512i qx = F::quants2(x0, x1);
    const __m512i ux = F::kSigned ? _mm512_abs_epi8(qx) : qx;
    const __mmask64 neg = F::kSigned ? _mm512_movepi8_mask(qx) : 0;
    const __m128 dw = fp16_pair(x0, x1);
    const __m128 mw = F::kHasMin ? fp16_pair(x0 + 2, x1 + 2) : _mm_setzero_ps();
    for (int t = 0; t < NT; ++t) {
      __m512i qy = _mm512_loadu_si512(qa[t] + ib * 32);
      if (F::kSigned) qy = _mm512_mask_sub_epi8(qy, neg, _mm512_setzero_si512(), qy);
      const __m512i sumi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ux, qy);
      const __m128 pair_da = two_scales_at(da[t] + ib);
      const __m128 dd = _mm_mul_ps(dw, pair_da);
      const __m512 d = _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(dd));
      acc[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc[t]);
      if (F::kHasMin) {
        const __m128 pair_sa = two_scales_at(sa[t] + ib);
        minsum[t] = _mm_fmadd_ps(mw, pair_sa, minsum[t]);
      }
    }
  }
  __m256 acc8[NT];
  for (int t = 0; t < NT; ++t) {
    acc8[t] = _mm256_add_ps(_mm512_castps512_ps256(acc[t]),
                            _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[t]), 1)));
    if (F::kHasMin) {
      const __m128 m = _mm_add_ps(_mm_add_ps(_mm256_castps256_ps128(minsum8[t]), _mm256_extractf128_ps(minsum8[t], 1)),
                                  minsum[t]);
      const __m128 m2 = _mm_add_ps(m, _mm_movehl_ps(m, m));
      summ[t] = _mm_cvtss_f32(_mm_add_ss(m2, _mm_movehdup_ps(m2)));
    }
  }
#else
  __m256 acc8[NT];
  for (int t = 0; t < NT; ++t) acc8[t] = _mm256_setzero_ps();
#endif
  for (; ib < nb; ++ib) {
    const uint8_t* x0 = w + ib * F::kBytes;
    const __m256i qx = F::quants(x0);
    const __m256i ux = F::kSigned ? _mm256_sign_epi8(qx, qx) : qx;
    const float d0 = fp16_at(x0);
    for (int t = 0; t < NT; ++t) {
      __m256i qy = load256(qa[t] + ib * 32);
      if (F::kSigned) qy = _mm256_sign_epi8(qy, qx);
      const __m256i sumi = dot_u8s8(ux, qy);
      acc8[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * scale_at(da[t] + ib)), _mm256_cvtepi32_ps(sumi), acc8[t]);
      if (F::kHasMin) summ[t] += fp16_at(x0 + 2) * scale_at(sa[t] + ib);
    }
  }
  for (int t = 0; t < NT; ++t) y[size_t(t) * ys] = hsum(acc8[t]) + summ[t];
}

template <typename F>
void dot_legacy(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  with_token_count(nt, [&]<int NT>() { dot_legacy_tiled<F, NT>(n, w, a, as, y, ys); });
}

// ---------------------------------------------------------------------------------------------
// K-quants: 256-value super-blocks against Q8_K (fp32 d at 0, 256 quants at 4, 16 int16 bsums at
// 260). Each format unpacks a super-block into the common form of quant_dot_scalar.cc's
// KUnpacked: q[8] (32 unsigned quants each, value order), 16 int16 group scales (and mins), the
// offset z and the fp16 factors d, dmin.
struct KBlock {
  __m256i q[8];
  __m256i sc16;    // int16 scale of each 16-value group
  __m256i mins16;  // int16 min of each group (zero for Q3_K, Q6_K)
  float d, dmin;
};

inline __m256i mask_bits(__m256i v, int shift, int mask) {
  return _mm256_and_si256(_mm256_srli_epi16(v, shift), _mm256_set1_epi8(char(mask)));
}

// Q4_K / Q5_K: 8 x (6-bit scale, 6-bit min) in 12 bytes -> groups' scales and mins (each
// 32-value sub-block's pair twice). ggml's kmask shuffle.
inline void scales_mins_k4(const uint8_t* s, KBlock& k) {
  uint32_t u[4];
  std::memcpy(u, s, 12);
  constexpr uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
  u[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
  const uint32_t uaux = u[1] & kmask1;
  u[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
  u[2] = uaux;
  u[0] &= kmask1;
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(u));  // sc0..7, m0..7
  k.sc16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(b, b));
  k.mins16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(b, b));
}

struct FmtQ2_K {  // scales[16] @0, qs[64] @16, d @80, dmin @82
  static constexpr int64_t kBytes = 84;
  static constexpr int kZ = 0;
  static constexpr bool kHasMin = true;
  static void unpack(const uint8_t* b, KBlock& k) {
    for (int h = 0; h < 2; ++h) {
      const __m256i v = load256(b + 16 + 32 * h);
      for (int s = 0; s < 4; ++s) k.q[4 * h + s] = mask_bits(v, 2 * s, 3);
    }
    const __m128i sm = load128(b);
    k.sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sm, _mm_set1_epi8(0x0F)));
    k.mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), _mm_set1_epi8(0x0F)));
    k.d = fp16_at(b + 80);
    k.dmin = fp16_at(b + 82);
  }
};

struct FmtQ3_K {  // hmask[32] @0, qs[64] @32, scales[12] @96, d @108
  static constexpr int64_t kBytes = 110;
  static constexpr int kZ = 4;
  static constexpr bool kHasMin = false;
  static void unpack(const uint8_t* b, KBlock& k) {
    const __m256i hm = load256(b);
    for (int h = 0; h < 2; ++h) {
      const __m256i v = load256(b + 32 + 32 * h);
      for (int s = 0; s < 4; ++s) {
        const int j = 4 * h + s;
        k.q[j] = _mm256_or_si256(mask_bits(v, 2 * s, 3), _mm256_slli_epi16(mask_bits(hm, j, 1), 2));
      }
    }
    uint32_t aux[3];
    std::memcpy(aux, b + 96, 12);
    constexpr uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    __m128i sc = _mm_set_epi32(int(((aux[1] >> 4) & kmask2) | (((aux[2] >> 6) & kmask1) << 4)),
                               int(((aux[0] >> 4) & kmask2) | (((aux[2] >> 4) & kmask1) << 4)),
                               int((aux[1] & kmask2) | (((aux[2] >> 2) & kmask1) << 4)),
                               int((aux[0] & kmask2) | (((aux[2] >> 0) & kmask1) << 4)));
    sc = _mm_sub_epi8(sc, _mm_set1_epi8(32));
    k.sc16 = _mm256_cvtepi8_epi16(sc);
    k.mins16 = _mm256_setzero_si256();
    k.d = fp16_at(b + 108);
    k.dmin = 0;
  }
};

struct FmtQ4_K {  // d @0, dmin @2, scales[12] @4, qs[128] @16
  static constexpr int64_t kBytes = 144;
  static constexpr int kZ = 0;
  static constexpr bool kHasMin = true;
  static void unpack(const uint8_t* b, KBlock& k) {
    for (int p = 0; p < 4; ++p) {
      const __m256i v = load256(b + 16 + 32 * p);
      k.q[2 * p] = mask_bits(v, 0, 0x0F);
      k.q[2 * p + 1] = mask_bits(v, 4, 0x0F);
    }
    scales_mins_k4(b + 4, k);
    k.d = fp16_at(b);
    k.dmin = fp16_at(b + 2);
  }
};

struct FmtQ5_K {  // d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48
  static constexpr int64_t kBytes = 176;
  static constexpr int kZ = 0;
  static constexpr bool kHasMin = true;
  static void unpack(const uint8_t* b, KBlock& k) {
    const __m256i hb = load256(b + 16);
    for (int p = 0; p < 4; ++p) {
      const __m256i v = load256(b + 48 + 32 * p);
      k.q[2 * p] = _mm256_or_si256(mask_bits(v, 0, 0x0F), _mm256_slli_epi16(mask_bits(hb, 2 * p, 1), 4));
      k.q[2 * p + 1] = _mm256_or_si256(mask_bits(v, 4, 0x0F), _mm256_slli_epi16(mask_bits(hb, 2 * p + 1, 1), 4));
    }
    scales_mins_k4(b + 4, k);
    k.d = fp16_at(b);
    k.dmin = fp16_at(b + 2);
  }
};

struct FmtQ6_K {  // ql[128] @0, qh[64] @128, scales[16] (int8) @192, d @208
  static constexpr int64_t kBytes = 210;
  static constexpr int kZ = 32;
  static constexpr bool kHasMin = false;
  static void unpack(const uint8_t* b, KBlock& k) {
    for (int h = 0; h < 2; ++h) {
      const __m256i lo = load256(b + 64 * h), hi = load256(b + 64 * h + 32);
      const __m256i qh = load256(b + 128 + 32 * h);
      k.q[4 * h + 0] = _mm256_or_si256(mask_bits(lo, 0, 0x0F), _mm256_slli_epi16(mask_bits(qh, 0, 3), 4));
      k.q[4 * h + 1] = _mm256_or_si256(mask_bits(hi, 0, 0x0F), _mm256_slli_epi16(mask_bits(qh, 2, 3), 4));
      k.q[4 * h + 2] = _mm256_or_si256(mask_bits(lo, 4, 0x0F), _mm256_slli_epi16(mask_bits(qh, 4, 3), 4));
      k.q[4 * h + 3] = _mm256_or_si256(mask_bits(hi, 4, 0x0F), _mm256_slli_epi16(mask_bits(qh, 6, 3), 4));
    }
    k.sc16 = _mm256_cvtepi8_epi16(load128(b + 192));
    k.mins16 = _mm256_setzero_si256();
    k.d = fp16_at(b + 208);
    k.dmin = 0;
  }
};

// Per super-block and token, with S1 = sum_g sc_g (sum q a - z bsum_g) and S2 = sum_g m_g bsum_g
// held as 8 int32 lanes (exact): acc_t += (d_a d) S1 - (d_a dmin) S2.
template <typename F, int NT>
void dot_k_tiled(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, float* y, size_t ys) {
  constexpr int64_t kActBytes = 292;
  const int64_t nb = n / 256;
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  // Byte shuffle that spreads int16 lane 0 (of a dword broadcast) over the low 128 bits and
  // lane 1 over the high 128 bits: the scales of groups 2k and 2k+1 for quants q[k].
#if QBENCH_SIMD_AVX512
  // int16 lane l -> l / 8.
  const __m512i group_of_lane = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2,
                                                 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
#else
  const __m256i spread = _mm256_set_epi8(3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2,
                                         1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0);
#endif
  for (int64_t ib = 0; ib < nb; ++ib) {
    KBlock k;
    F::unpack(w + ib * F::kBytes, k);
    const __m256i scz16 = _mm256_mullo_epi16(k.sc16, _mm256_set1_epi16(F::kZ));
#if QBENCH_SIMD_AVX512
    // 64 quants per register: zq[j] = (q[2j], q[2j+1]), values 64j .. 64j+63. int16 lane l of
    // maddubs(zq[j], .) covers values 64j + 2l, +1: group 4j + l/8, whose scale vpermw spreads.
    __m512i zq[4], zsc[4];
    const __m512i sc512 = _mm512_castsi256_si512(k.sc16);
    for (int j = 0; j < 4; ++j) {
      zq[j] = _mm512_inserti64x4(_mm512_castsi256_si512(k.q[2 * j]), k.q[2 * j + 1], 1);
      zsc[j] = _mm512_permutexvar_epi16(_mm512_add_epi16(group_of_lane, _mm512_set1_epi16(short(4 * j))), sc512);
    }
#else
    __m256i scq[8];
    for (int j = 0; j < 8; ++j) {
      scq[j] = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(k.sc16, _mm256_set1_epi32(j)), spread);
    }
#endif
    for (int t = 0; t < NT; ++t) {
      const uint8_t* yb = a + size_t(t) * as + ib * kActBytes;
#if QBENCH_SIMD_AVX512
      __m512i z1 = _mm512_setzero_si512();
      for (int j = 0; j < 4; ++j) {
        const __m512i qy = _mm512_loadu_si512(yb + 4 + 64 * j);
        z1 = _mm512_dpwssd_epi32(z1, _mm512_maddubs_epi16(zq[j], qy), zsc[j]);
      }
      __m256i s1 = _mm256_add_epi32(_mm512_castsi512_si256(z1), _mm512_extracti64x4_epi64(z1, 1));
#else
      __m256i s1 = _mm256_setzero_si256();
      for (int j = 0; j < 8; ++j) s1 = dot_u8s8_scaled(s1, k.q[j], load256(yb + 4 + 32 * j), scq[j]);
#endif
      const __m256i bsums = load256(yb + 260);
      if (F::kZ != 0) s1 = _mm256_sub_epi32(s1, _mm256_madd_epi16(bsums, scz16));
      const float yd = f32_at(yb);
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(yd * k.d), _mm256_cvtepi32_ps(s1), acc[t]);
      if (F::kHasMin) {
        const __m256i s2 = _mm256_madd_epi16(bsums, k.mins16);
        acc[t] = _mm256_fnmadd_ps(_mm256_set1_ps(yd * k.dmin), _mm256_cvtepi32_ps(s2), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) y[size_t(t) * ys] = hsum(acc[t]);
}

template <typename F>
void dot_k(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  with_token_count(nt, [&]<int NT>() { dot_k_tiled<F, NT>(n, w, a, as, y, ys); });
}

// ---------------------------------------------------------------------------------------------
// Float weights (f32, f16, bf16) times FP32 activations, for decode: weights are widened to FP32
// in registers (F16C vcvtph2ps; bf16 by a 16-bit shift, exact) and never written back, so the
// kernel streams 2 bytes per weight instead of Eigen's 4 (plus a dequantized copy).

struct FloatF32 {
  static constexpr int64_t kBytes = 4;
  static float scalar(const uint8_t* w, int64_t i) { return f32_at(w + 4 * i); }
#if QBENCH_SIMD_AVX512
  static __m512 load16(const uint8_t* w, int64_t i) { return _mm512_loadu_ps(reinterpret_cast<const float*>(w + 4 * i)); }
#else
  static __m256 load8(const uint8_t* w, int64_t i) { return _mm256_loadu_ps(reinterpret_cast<const float*>(w + 4 * i)); }
#endif
};
struct FloatF16 {
  static constexpr int64_t kBytes = 2;
  static float scalar(const uint8_t* w, int64_t i) { return fp16_at(w + 2 * i); }
#if QBENCH_SIMD_AVX512
  static __m512 load16(const uint8_t* w, int64_t i) { return _mm512_cvtph_ps(load256(w + 2 * i)); }
#else
  static __m256 load8(const uint8_t* w, int64_t i) { return _mm256_cvtph_ps(load128(w + 2 * i)); }
#endif
};
struct FloatBF16 {
  static constexpr int64_t kBytes = 2;
  static float scalar(const uint8_t* w, int64_t i) {
    uint16_t h;
    std::memcpy(&h, w + 2 * i, 2);
    const uint32_t bits = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
#if QBENCH_SIMD_AVX512
  static __m512 load16(const uint8_t* w, int64_t i) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(load256(w + 2 * i)), 16));
  }
#else
  static __m256 load8(const uint8_t* w, int64_t i) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(w + 2 * i)), 16));
  }
#endif
};

template <typename F, int NT>
void dot_float_tiled(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, float* y, size_t ys) {
  const float* at[NT];
  for (int t = 0; t < NT; ++t) at[t] = reinterpret_cast<const float*>(a + size_t(t) * as);
  int64_t i = 0;
#if QBENCH_SIMD_AVX512
  constexpr int64_t kStep = 32;
  __m512 acc0[NT], acc1[NT];
  for (int t = 0; t < NT; ++t) acc0[t] = acc1[t] = _mm512_setzero_ps();
  for (; i + kStep <= n; i += kStep) {
    const __m512 w0 = F::load16(w, i), w1 = F::load16(w, i + 16);
    for (int t = 0; t < NT; ++t) {
      acc0[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(at[t] + i), acc0[t]);
      acc1[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(at[t] + i + 16), acc1[t]);
    }
  }
  for (int t = 0; t < NT; ++t) {
    float tail = 0;
    for (int64_t j = i; j < n; ++j) tail += F::scalar(w, j) * at[t][j];
    y[size_t(t) * ys] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t])) + tail;
  }
#else
  constexpr int64_t kStep = 16;
  __m256 acc0[NT], acc1[NT];
  for (int t = 0; t < NT; ++t) acc0[t] = acc1[t] = _mm256_setzero_ps();
  for (; i + kStep <= n; i += kStep) {
    const __m256 w0 = F::load8(w, i), w1 = F::load8(w, i + 8);
    for (int t = 0; t < NT; ++t) {
      acc0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(at[t] + i), acc0[t]);
      acc1[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(at[t] + i + 8), acc1[t]);
    }
  }
  for (int t = 0; t < NT; ++t) {
    float tail = 0;
    for (int64_t j = i; j < n; ++j) tail += F::scalar(w, j) * at[t][j];
    y[size_t(t) * ys] = hsum(_mm256_add_ps(acc0[t], acc1[t])) + tail;
  }
#endif
}

template <typename F>
void dot_float(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  with_token_count(nt, [&]<int NT>() { dot_float_tiled<F, NT>(n, w, a, as, y, ys); });
}

// ---------------------------------------------------------------------------------------------
// qbench's integer formats (engine/formats/int_quants.h): N-bit codes u in a little-endian bit
// stream, an fp16 scale d per group of G values (or per row) and an offset: 2^(N-1) (symmetric)
// or a uint8 zero point z (asymmetric). Q8_0 activations. Per 32 values the codes are unpacked
// to bytes and the offset subtracted, giving signed bytes in value order, and the integer part
// sum (u - off) * a is exact, as for q4_0/q8_0. One case does not fit a byte: 8-bit asymmetric
// (u - z spans -255..255); it uses u - 128 and adds (128 - z) * sum(a), also exact.
// The parameters of table entry I, re-derived here (int_quants.h is not included, see the note at
// the top of quant_dot_avx2.cc); quant_dot_scalar.cc checks them against int_format_at.
constexpr int int_bits(uint32_t i) { return 2 + int(i / 8); }
constexpr bool int_sym(uint32_t i) { return (i / 4) % 2 == 0; }
constexpr int int_group(uint32_t i) { return i % 4 == 3 ? 0 : 32 << (i % 4); }

// 32 codes of N = 3, 5, 6, 7 bits (4N bytes at p, a whole number of dwords, loaded with a dword
// mask so nothing past them is read): 64-bit lane l holds bytes l*N .. l*N + N - 1 at its bottom
// (above them other bytes or zeros, which the unpacking masks off). The low 128-bit half keeps
// bytes 0..15, the high half a 16-byte window from dword (2N)/4; vpshufb places each lane.
template <int N>
inline __m256i int_code_lanes(const uint8_t* p) {
  static_assert(N == 3 || N == 5 || N == 6 || N == 7);
  const __m256i dword_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(N), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256i raw = _mm256_maskload_epi32(reinterpret_cast<const int*>(p), dword_mask);
  constexpr int kHi = (2 * N) / 4;  // first dword of the high half's window
  const __m256i windows = _mm256_permutevar8x32_epi32(raw, _mm256_setr_epi32(0, 1, 2, 3, kHi, kHi + 1, kHi + 2, kHi + 3));
  alignas(32) static constexpr auto kShuffle = [] {
    std::array<int8_t, 32> idx{};
    const int start[4] = {0, N, 2 * N - 4 * kHi, 3 * N - 4 * kHi};  // lane l's first byte in its half
    for (int l = 0; l < 4; ++l) {
      for (int b = 0; b < 8; ++b) idx[size_t(8 * l + b)] = b < N ? int8_t(start[l] + b) : int8_t(-128);
    }
    return idx;
  }();
  return _mm256_shuffle_epi8(windows, _mm256_load_si256(reinterpret_cast<const __m256i*>(kShuffle.data())));
}

// Value k (bits k*N .. k*N + N - 1) of each 64-bit lane to byte k of that lane: the 32 codes in
// value order.
template <int N>
inline __m256i int_lanes_to_bytes(__m256i x) {
  const __m256i mask = _mm256_set1_epi64x((1 << N) - 1);
  __m256i out = _mm256_and_si256(x, mask);
  for (int k = 1; k < 8; ++k) {
    const __m256i v = _mm256_and_si256(_mm256_srli_epi64(x, k * N), mask);
    out = _mm256_or_si256(out, _mm256_slli_epi64(v, 8 * k));
  }
  return out;
}

// The 32 codes (4N bytes at p) as unsigned bytes in value order.
template <int N>
inline __m256i int_codes32(const uint8_t* p) {
  if constexpr (N == 8) {
    return load256(p);
  } else if constexpr (N == 4) {  // value 2k: low nibble of byte k; 2k + 1: high nibble
    const __m128i packed = load128(p);
    const __m128i m = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(packed, m), hi = _mm_and_si128(_mm_srli_epi16(packed, 4), m);
    return _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
  } else if constexpr (N == 2) {  // value 4k + s: bits 2s of byte k
    const __m128i packed = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    const __m128i m = _mm_set1_epi8(3);
    const __m128i v0 = _mm_and_si128(packed, m), v1 = _mm_and_si128(_mm_srli_epi16(packed, 2), m);
    const __m128i v2 = _mm_and_si128(_mm_srli_epi16(packed, 4), m), v3 = _mm_and_si128(_mm_srli_epi16(packed, 6), m);
    const __m128i a01 = _mm_unpacklo_epi8(v0, v1), a23 = _mm_unpacklo_epi8(v2, v3);
    return _mm256_set_m128i(_mm_unpackhi_epi16(a01, a23), _mm_unpacklo_epi16(a01, a23));
  } else {  // 3, 5, 6, 7 bits: values straddle bytes. Each 8 values fill N bytes; they go to one
            // 64-bit lane (lane l = bytes l*N ..), then value k of a lane moves from bit k*N to byte k.
    return int_lanes_to_bytes<N>(int_code_lanes<N>(p));
  }
}

template <uint32_t I, int NT>
void dot_int_tiled(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, float* y, size_t ys) {
  constexpr int N = int_bits(I);
  constexpr bool kSym = int_sym(I);
  constexpr bool kWide = !kSym && N == 8;
  constexpr int64_t kHeader = kSym ? 2 : 3, kChunk = 4 * N;  // bytes of a header, of 32 codes
  const int64_t nb = n / 32;
  const int64_t G = int_group(I) == 0 ? n : int_group(I);
  const int64_t group_bytes = kHeader + (G / 32) * kChunk;
  const float* da[NT];
  const uint8_t* qa[NT];
  for (int t = 0; t < NT; ++t) {
    da[t] = reinterpret_cast<const float*>(a + size_t(t) * as + nb * 34);
    qa[t] = reinterpret_cast<const uint8_t*>(da[t] + nb);
  }
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
#if QBENCH_SIMD_AVX512
  if constexpr (!kWide) {
    // Two chunks per zmm (as the legacy formats): |u - off| x (a negated where u - off < 0) by
    // vpdpbusd, the two products d_w d_a spread to their halves by vpermps. u - off >= -127, so
    // vpabsb is exact. The chunks may belong to different groups (G = 32) or the same one.
    const int64_t cpg = G / 32;  // chunks per group
    const __m512i halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512 acc2[NT];
    for (int t = 0; t < NT; ++t) acc2[t] = _mm512_setzero_ps();
    int64_t g = 0, c = 0;  // group and chunk-in-group of chunk ib
    auto chunk = [&](int64_t gi, int64_t ci, float* d) {
      const uint8_t* blk = w + gi * group_bytes;
      *d = fp16_at(blk);
      const int off = kSym ? (1 << (N - 1)) : blk[2];
      return _mm256_sub_epi8(int_codes32<N>(blk + kHeader + ci * kChunk), _mm256_set1_epi8(char(off)));
    };
    int64_t ib = 0;
    for (; ib + 1 < nb; ib += 2) {
      float d0, d1;
      const __m256i q0 = chunk(g, c, &d0);
      if (++c == cpg) c = 0, ++g;
      const __m256i q1 = chunk(g, c, &d1);
      if (++c == cpg) c = 0, ++g;
      const __m512i qx = _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1);
      const __m512i ux = _mm512_abs_epi8(qx);
      const __mmask64 neg = _mm512_movepi8_mask(qx);
      const __m128 dw = _mm_setr_ps(d0, d1, 0.0f, 0.0f);
      for (int t = 0; t < NT; ++t) {
        __m512i qy = _mm512_loadu_si512(qa[t] + ib * 32);
        qy = _mm512_mask_sub_epi8(qy, neg, _mm512_setzero_si512(), qy);
        const __m512i sumi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ux, qy);
        const __m128 pair_da = two_scales_at(da[t] + ib);
        const __m512 dd = _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(_mm_mul_ps(dw, pair_da)));
        acc2[t] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(sumi), acc2[t]);
      }
    }
    if (ib < nb) {  // an odd last chunk
      float d0;
      const __m256i qx = chunk(g, c, &d0);
      const __m256i ux = _mm256_sign_epi8(qx, qx);
      for (int t = 0; t < NT; ++t) {
        const __m256i sumi = dot_u8s8(ux, _mm256_sign_epi8(load256(qa[t] + ib * 32), qx));
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0 * scale_at(da[t] + ib)), _mm256_cvtepi32_ps(sumi), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) {
      const __m256 folded = _mm256_add_ps(_mm512_castps512_ps256(acc2[t]),
                                          _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc2[t]), 1)));
      y[size_t(t) * ys] = hsum(_mm256_add_ps(acc[t], folded));
    }
    return;
  }
#endif
  for (int64_t g = 0; g < n / G; ++g) {
    const uint8_t* blk = w + g * group_bytes;
    const float d = fp16_at(blk);
    const int off = kSym ? (1 << (N - 1)) : (kWide ? 128 : blk[2]);
    const __m256i voff = _mm256_set1_epi8(char(off));
    const __m256i corr = _mm256_set1_epi32(kWide ? int(blk[2]) - 128 : 0);
    const uint8_t* codes = blk + kHeader;
    for (int64_t c = 0; c < G / 32; ++c) {
      const int64_t ib = g * (G / 32) + c;
      const __m256i qx = _mm256_sub_epi8(int_codes32<N>(codes + c * kChunk), voff);
      const __m256i ux = _mm256_sign_epi8(qx, qx);
      for (int t = 0; t < NT; ++t) {
        const __m256i qy = load256(qa[t] + ib * 32);
        __m256i sumi = dot_u8s8(ux, _mm256_sign_epi8(qy, qx));
        if constexpr (kWide) sumi = _mm256_sub_epi32(sumi, _mm256_mullo_epi32(corr, dot_u8s8(_mm256_set1_epi8(1), qy)));
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * scale_at(da[t] + ib)), _mm256_cvtepi32_ps(sumi), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) y[size_t(t) * ys] = hsum(acc[t]);
}

template <uint32_t I>
void dot_int(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  with_token_count(nt, [&]<int NT>() { dot_int_tiled<I, NT>(n, w, a, as, y, ys); });
}


// NF4 (float_codes.h) times FP32 activations, for decode: blocks of 64 codes, value 2k in the
// high nibble of byte k; 8 codes at a time become code-book floats by a register table lookup
// (two vpermps and a blend on AVX2, one vpermt2ps with AVX-512), then FMA; x absmax per block.
inline __m256 nf4_values8(const uint8_t* p, __m256 tab_lo, __m256 tab_hi) {
  uint32_t four;
  std::memcpy(&four, p, 4);
  const __m128i b = _mm_cvtsi32_si128(int(four));
  const __m128i m = _mm_set1_epi8(0x0F);
  const __m128i codes = _mm_unpacklo_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
  const __m256i idx = _mm256_cvtepu8_epi32(codes);
#if QBENCH_SIMD_AVX512
  return _mm256_permutex2var_ps(tab_lo, idx, tab_hi);
#else
  const __m256 lo = _mm256_permutevar8x32_ps(tab_lo, idx), hi = _mm256_permutevar8x32_ps(tab_hi, idx);
  return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
#endif
}

template <int NT>
void dot_nf4_tiled(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, float* y, size_t ys) {
  const __m256 tab_lo = _mm256_loadu_ps(kNf4Codes), tab_hi = _mm256_loadu_ps(kNf4Codes + 8);
  const float* at[NT];
  for (int t = 0; t < NT; ++t) at[t] = reinterpret_cast<const float*>(a + size_t(t) * as);
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / kQKNf4; ++b) {
    const uint8_t* blk = w + b * int64_t(sizeof(BlockNf4));
    const __m256 absmax = _mm256_set1_ps(fp16_at(blk));
    __m256 v[8];
    for (int k = 0; k < 8; ++k) v[k] = nf4_values8(blk + 2 + 4 * k, tab_lo, tab_hi);
    for (int t = 0; t < NT; ++t) {
      const float* x = at[t] + b * kQKNf4;
      __m256 s0 = _mm256_mul_ps(v[0], _mm256_loadu_ps(x)), s1 = _mm256_mul_ps(v[1], _mm256_loadu_ps(x + 8));
      for (int k = 2; k < 8; k += 2) {
        s0 = _mm256_fmadd_ps(v[k], _mm256_loadu_ps(x + 8 * k), s0);
        s1 = _mm256_fmadd_ps(v[k + 1], _mm256_loadu_ps(x + 8 * k + 8), s1);
      }
      acc[t] = _mm256_fmadd_ps(absmax, _mm256_add_ps(s0, s1), acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) y[size_t(t) * ys] = hsum(acc[t]);
}

void dot_nf4(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  with_token_count(nt, [&]<int NT>() { dot_nf4_tiled<NT>(n, w, a, as, y, ys); });
}

// FP8 E4M3 with an fp32 row scale, times FP32 activations, for decode. A code's low 7 bits placed
// at bit 7 of an fp16 (sign at bit 15) are that fp16's exponent and top mantissa bits: the fp16
// is exactly e4m3(code) / 256 (subnormals included), so vcvtph2ps widens it; the row scale
// carries the 256. (The NaN codes 0x7F/0xFF, which qbench never writes, read as +-480.)
inline __m128i e4m3_as_fp16(__m128i c16) {  // 8 codes zero-extended to 16 bits
  return _mm_or_si128(_mm_slli_epi16(_mm_and_si128(c16, _mm_set1_epi16(0x80)), 8),
                      _mm_slli_epi16(_mm_and_si128(c16, _mm_set1_epi16(0x7F)), 7));
}
struct FloatE4M3 {
  static constexpr int64_t kBytes = 1;
  static float scalar(const uint8_t* w, int64_t i) {
    const unsigned c = w[i];
    return _cvtsh_ss(uint16_t(((c & 0x80u) << 8) | ((c & 0x7Fu) << 7)));
  }
#if QBENCH_SIMD_AVX512
  static __m512 load16(const uint8_t* w, int64_t i) {
    const __m256i c = _mm256_cvtepu8_epi16(load128(w + i));
    const __m256i h = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(c, _mm256_set1_epi16(0x80)), 8),
                                      _mm256_slli_epi16(_mm256_and_si256(c, _mm256_set1_epi16(0x7F)), 7));
    return _mm512_cvtph_ps(h);
  }
#else
  static __m256 load8(const uint8_t* w, int64_t i) {
    return _mm256_cvtph_ps(e4m3_as_fp16(_mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + i)))));
  }
#endif
};

void dot_fp8(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  const float scale = f32_at(w) * 256.0f;
  with_token_count(nt, [&]<int NT>() { dot_float_tiled<FloatE4M3, NT>(n, w + kFp8RowHeaderBytes, a, as, y, ys); });
  for (int t = 0; t < nt; ++t) y[size_t(t) * ys] *= scale;
}

// W8A8 (engine/formats/w8a8.h) times Q8_T activations: both rows are an fp32 scale (4 bytes; the
// constant is repeated here, see the note at the top of quant_dot_avx2.cc) and n int8 quants in
// [-127, 127]. The int32 sum over the whole row is exact on every path (the scalar reference
// asserts n <= kW8A8MaxCols, so no lane can overflow), and the float part is the same two
// roundings, (d_w * d_a) * float(isum): all paths give the same bits. Products as the legacy
// formats: |w| unsigned times a * sign(w); AVX2 pairs stay below 2 * 127 * 127 < 2^15.
constexpr int64_t kW8A8Header = 4;

inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

template <int NT>
void dot_w8a8_tiled(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, float* y, size_t ys) {
  const float dw = f32_at(w);
  const uint8_t* qw = w + kW8A8Header;
  const uint8_t* qa[NT];
  for (int t = 0; t < NT; ++t) qa[t] = a + size_t(t) * as + kW8A8Header;
  int32_t isum[NT];
  int64_t i = 0;
#if QBENCH_SIMD_AVX512
  // 128 values per step into two accumulators per token (vpdpbusd latency), then the tail in
  // masked 64-byte steps (masked-off bytes are not read and count as zero).
  __m512i acc0[NT], acc1[NT];
  for (int t = 0; t < NT; ++t) acc0[t] = acc1[t] = _mm512_setzero_si512();
  for (; i + 128 <= n; i += 128) {
    const __m512i x0 = _mm512_loadu_si512(qw + i), x1 = _mm512_loadu_si512(qw + i + 64);
    const __m512i u0 = _mm512_abs_epi8(x0), u1 = _mm512_abs_epi8(x1);
    const __mmask64 n0 = _mm512_movepi8_mask(x0), n1 = _mm512_movepi8_mask(x1);
    for (int t = 0; t < NT; ++t) {
      __m512i y0 = _mm512_loadu_si512(qa[t] + i), y1 = _mm512_loadu_si512(qa[t] + i + 64);
      y0 = _mm512_mask_sub_epi8(y0, n0, _mm512_setzero_si512(), y0);
      y1 = _mm512_mask_sub_epi8(y1, n1, _mm512_setzero_si512(), y1);
      acc0[t] = _mm512_dpbusd_epi32(acc0[t], u0, y0);
      acc1[t] = _mm512_dpbusd_epi32(acc1[t], u1, y1);
    }
  }
  for (; i < n; i += 64) {
    const int64_t rem = n - i;
    const __mmask64 m = rem >= 64 ? ~__mmask64(0) : (__mmask64(1) << rem) - 1;
    const __m512i x = _mm512_maskz_loadu_epi8(m, qw + i);
    const __m512i u = _mm512_abs_epi8(x);
    const __mmask64 neg = _mm512_movepi8_mask(x);
    for (int t = 0; t < NT; ++t) {
      __m512i yv = _mm512_maskz_loadu_epi8(m, qa[t] + i);
      yv = _mm512_mask_sub_epi8(yv, neg, _mm512_setzero_si512(), yv);
      acc0[t] = _mm512_dpbusd_epi32(acc0[t], u, yv);
    }
  }
  for (int t = 0; t < NT; ++t) isum[t] = _mm512_reduce_add_epi32(_mm512_add_epi32(acc0[t], acc1[t]));
#else
  __m256i acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_si256();
  for (; i + 32 <= n; i += 32) {
    const __m256i x = load256(qw + i);
    const __m256i u = _mm256_sign_epi8(x, x);
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_add_epi32(acc[t], dot_u8s8(u, _mm256_sign_epi8(load256(qa[t] + i), x)));
  }
  for (int t = 0; t < NT; ++t) {
    isum[t] = hsum_i32(acc[t]);
    for (int64_t j = i; j < n; ++j) isum[t] += int32_t(int8_t(qw[j])) * int32_t(int8_t(qa[t][j]));
  }
#endif
  for (int t = 0; t < NT; ++t) y[size_t(t) * ys] = float(isum[t]) * (dw * f32_at(qa[t] - kW8A8Header));
}

void dot_w8a8(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  with_token_count(nt, [&]<int NT>() { dot_w8a8_tiled<NT>(n, w, a, as, y, ys); });
}

constexpr auto kKernels = kernel_table([]<TensorType T>() -> DotFn {
  if constexpr (T == TensorType::F32) return dot_float<FloatF32>;
  else if constexpr (T == TensorType::F16) return dot_float<FloatF16>;
  else if constexpr (T == TensorType::BF16) return dot_float<FloatBF16>;
  else if constexpr (T == TensorType::Q4_0) return dot_legacy<FmtQ4_0>;
  else if constexpr (T == TensorType::Q4_1) return dot_legacy<FmtQ4_1>;
  else if constexpr (T == TensorType::Q5_0) return dot_legacy<FmtQ5_0>;
  else if constexpr (T == TensorType::Q5_1) return dot_legacy<FmtQ5_1>;
  else if constexpr (T == TensorType::Q8_0) return dot_legacy<FmtQ8_0>;
  else if constexpr (T == TensorType::Q2_K) return dot_k<FmtQ2_K>;
  else if constexpr (T == TensorType::Q3_K) return dot_k<FmtQ3_K>;
  else if constexpr (T == TensorType::Q4_K) return dot_k<FmtQ4_K>;
  else if constexpr (T == TensorType::Q5_K) return dot_k<FmtQ5_K>;
  else if constexpr (T == TensorType::Q6_K) return dot_k<FmtQ6_K>;
  else if constexpr (T == TensorType::NF4) return dot_nf4;
  else if constexpr (T == TensorType::FP8_E4M3) return dot_fp8;
  else if constexpr (T == TensorType::W8A8_INT8) return dot_w8a8;
  else if constexpr (is_int_kernel_format(T)) return dot_int<int_index(T)>;
  else static_assert(kNoKernelFor<T>, "a format of kListedKernelFormats has no SIMD kernel");
});

}  // namespace
}  // namespace qbench::quant_dot_detail::QBENCH_SIMD_NS
