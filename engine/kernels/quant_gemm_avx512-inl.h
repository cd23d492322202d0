// AVX-512 VNNI kernels of quant_gemm.h: the GEMMs of q4_0, q8_0, q4_K, the integer formats and
// f16/bf16/nf4/fp8, and the decode kernels (gemv) of q4_0, symmetric int4 and f16/bf16. Included once, by quant_dot_avx512.cc after
// quant_dot_simd-inl.h (whose primitives and integer-code unpacking it uses), inside that
// translation unit's flags and namespace. No include guard on purpose.
#if !QBENCH_SIMD_AVX512
#error "quant_gemm_avx512-inl.h is for the AVX-512 translation unit only"
#endif

namespace qbench::quant_dot_detail::QBENCH_SIMD_NS {
namespace {

inline int32_t i32_at(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// q4_0 (18-byte blocks: fp16 d, 16 bytes of nibbles; value j < 16 in the low nibble of byte j,
// value 16 + j in its high nibble). The nibbles 0..15 are the unsigned operand of vpdpbusd
// (broadcast), the tile's int8 quants the signed one; 8 times the tile's -sum q_a starts each sum.
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
    const __m512i offset = _mm512_slli_epi32(_mm512_loadu_si512(tb + 576), 3);  // -8 sum q_a
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


// Decode (one token), q4_0, 16 rows per call. Row pair p's block b is one register: the two rows'
// 16 packed bytes side by side, split into low and high nibbles ([r v0-15 | r+1 v0-15 | r v16-31 |
// r+1 v16-31]), against the token's block laid out the same way ([a v0-15 | a v0-15 | a v16-31 |
// a v16-31], built once per block for the 16 rows). The 8 row pairs' vpdpbusd results (8 lanes
// per row) are added together in integers down to one lane per row (a fixed tree, 21 operations
// for 16 rows), minus 8 sum q_a (the nibbles are unsigned), then scaled once per block by the 16
// rows' d_w (row_scales) times d_a. Rows end up in the order kRowOfLane.
constexpr int kRowOfLane[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};

// Adds 8 registers of row-pair partial sums down to one lane per row, in the order kRowOfLane.
// r[p]'s 128-bit quarters hold 4 partial sums each of rows [2p, 2p + 1, 2p, 2p + 1]; quarters
// 0, 1 of r[2q] and r[2q + 1] plus their quarters 2, 3 give t[q], whose quarter L has 4 partial
// sums of row 4q + L. Then two levels halve the lanes twice.
inline __m512i sum_row_pairs(const __m512i (&r)[8]) {
  __m512i t[4];
  for (int p = 0; p < 4; ++p) {
    t[p] = _mm512_add_epi32(_mm512_shuffle_i64x2(r[2 * p], r[2 * p + 1], 0x44),
                            _mm512_shuffle_i64x2(r[2 * p], r[2 * p + 1], 0xEE));
  }
  // u0: quarter L = [row L, row L, row 4+L, row 4+L]; u1 the same for rows 8..15.
  const __m512i u0 = _mm512_add_epi32(_mm512_unpacklo_epi64(t[0], t[1]), _mm512_unpackhi_epi64(t[0], t[1]));
  const __m512i u1 = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2], t[3]), _mm512_unpackhi_epi64(t[2], t[3]));
  // Lanes 0, 2 of u0's quarter with lanes 0, 2 of u1's, plus lanes 1, 3 of each: quarter L =
  // [row L, row 4+L, row 8+L, row 12+L] (kRowOfLane).
  const __m512 f0 = _mm512_castsi512_ps(u0), f1 = _mm512_castsi512_ps(u1);
  return _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(f0, f1, 0x88)),
                          _mm512_castps_si512(_mm512_shuffle_ps(f0, f1, 0xDD)));
}

// d of block b of the 16 rows (fp16 at wb + row * ws), in the order kRowOfLane: 16 scalar loads
// inserted into one register. A vpgatherdd here stalled the kernel (the instruction after it
// held 23% of its samples); with the loads, 26.2 against 23.0 t/s on one thread (TinyLlama-shaped
// q4_0 file).
inline __m512 row_scales(const uint8_t* wb, size_t ws) {
  auto h = [&](int l) {
    uint16_t v;
    std::memcpy(&v, wb + size_t(kRowOfLane[l]) * ws, 2);
    return short(v);
  };
  return _mm512_cvtph_ps(_mm256_set_epi16(h(15), h(14), h(13), h(12), h(11), h(10), h(9), h(8), h(7), h(6), h(5), h(4),
                                          h(3), h(2), h(1), h(0)));
}

// Prefetches into L2, over a call's steps, the 16 rows after the current ones (the next 16 ws
// bytes), an equal share of their cache lines at each step (no division per step). The 16 rows are read as 16 slow
// streams, which the hardware prefetchers follow badly (without it the q4_0 decode kernel ran at
// 14 t/s on one thread, the row kernel at 21; with it, 26). Into L1 it would evict the rows in use.
class NextRowsPrefetcher {
 public:
  NextRowsPrefetcher(const uint8_t* w, size_t ws, int64_t steps)
      : line_(w + 16 * ws), per_step_(16 * ws / 64 / size_t(steps)), extra_(16 * ws / 64 % size_t(steps)),
        steps_(size_t(steps)) {}
  void step() {
    size_t n = per_step_;
    if ((err_ += extra_) >= steps_) {
      err_ -= steps_;
      ++n;
    }
    for (size_t i = 0; i < n; ++i, line_ += 64) _mm_prefetch(reinterpret_cast<const char*>(line_), _MM_HINT_T1);
  }

 private:
  const uint8_t* line_;
  size_t per_step_, extra_, steps_, err_ = 0;
};

// Float weights (f16, bf16) against one FP32 activation row (decode). The 16 rows in 8 pairs:
// a pair's two rows are read side by side (one activation load per 2 FMAs), two accumulators
// per row, and the next 16 rows are prefetched into L2 over the call (NextRowsPrefetcher). The
// prefetch is what pays: on a TinyLlama-shaped f16 file, one thread, the row kernel decoded 7.4
// t/s; pairs with the prefetch 10.2-11.3, 4 rows at a time 9.2-10.0, 8 at a time 7.9-8.0, pairs
// without the prefetch 4.9-5.5, and the prefetch into L1 instead of L2 7.0-7.5.
// y[r] = sum_i W_r[i] x[i], summed exactly as the row kernel dot_float sums one token (lanes i
// mod 32 in two accumulators, their sum reduced, then the tail): the same bits.
template <typename F>
void gemv16_float(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, float* y) {
  const float* x = reinterpret_cast<const float*>(a);
  constexpr int64_t kStep = 32;
  constexpr int kRows = 2;
  const int64_t steps = n / kStep;
  NextRowsPrefetcher prefetch(w, ws, std::max<int64_t>(1, (16 / kRows) * steps));
  for (int g = 0; g < 16 / kRows; ++g) {
    const uint8_t* wr[kRows];
    for (int r = 0; r < kRows; ++r) wr[r] = w + size_t(kRows * g + r) * ws;
    __m512 acc0[kRows], acc1[kRows];
    for (int r = 0; r < kRows; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t i = s * kStep;
      prefetch.step();
      const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
      for (int r = 0; r < kRows; ++r) {
        acc0[r] = _mm512_fmadd_ps(F::load16(wr[r], i), x0, acc0[r]);
        acc1[r] = _mm512_fmadd_ps(F::load16(wr[r], i + 16), x1, acc1[r]);
      }
    }
    for (int r = 0; r < kRows; ++r) {
      float tail = 0;
      for (int64_t j = steps * kStep; j < n; ++j) tail += F::scalar(wr[r], j) * x[j];
      y[kRows * g + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[r], acc1[r])) + tail;
    }
  }
}

// Where a 4-bit layout keeps 32-value chunk b of a row: its 16 code bytes and its fp16 scale,
// and whether byte j holds values j and j + 16 (q4_0) or 2j and 2j + 1 (interleaved: qbench's
// int4 bit stream).
struct NibblesQ4_0 {
  static constexpr bool kInterleaved = false;
  int64_t codes(int64_t b) const { return 18 * b + 2; }
  int64_t scale(int64_t b) const { return 18 * b; }
  static bool new_scale(int64_t) { return true; }
};
template <int64_t G>  // qbench's symmetric int4, groups of G values (0: one per row of n)
struct NibblesInt4 {
  static constexpr bool kInterleaved = true;
  int64_t group, group_bytes;
  explicit NibblesInt4(int64_t n) : group(G == 0 ? n : G), group_bytes(2 + (group / 32) * 16) {}
  int64_t codes(int64_t b) const { return (32 * b / group) * group_bytes + 2 + (32 * b % group / 32) * 16; }
  int64_t scale(int64_t b) const { return (32 * b / group) * group_bytes; }
  // Whether chunk b starts a group (the 16 rows' scales are loaded once per group).
  bool new_scale(int64_t b) const { return 32 * b % group == 0; }
};

template <typename L>
void gemv16_nibbles(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, float* y, const L& layout) {
  const int64_t nb = n / 32;
  // The Q8_0 activation row (quant_dot.h): nb ggml blocks, nb fp32 d, then the n quants.
  const float* da = reinterpret_cast<const float*>(a + size_t(nb) * 34);
  const uint8_t* qa = reinterpret_cast<const uint8_t*>(da + nb);
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i dup = _mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0);
  // Interleaved codes: the low nibbles are the even values, the high ones the odd values, so the
  // token's block is reordered to [evens | odds] first (within each 128-bit lane, then qwords).
  const __m256i even_odd = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
                                            0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  const __m256i bias = _mm256_set1_epi8(char(0x80));
  __m512 acc = _mm512_setzero_ps();
  NextRowsPrefetcher prefetch(w, ws, nb);
  __m512 dw = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qa + 32 * b));
    const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(q, bias), _mm256_setzero_si256());
    const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
    const int32_t sum_a = int32_t(_mm_cvtsi128_si32(s2) + _mm_extract_epi32(s2, 2)) - 32 * 128;
    if constexpr (L::kInterleaved) {
      q = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(q, even_odd), 0xD8);  // qwords 0, 2, 1, 3
    }
    const __m512i av = _mm512_permutexvar_epi64(dup, _mm512_castsi256_si512(q));
    const uint8_t* wc = w + layout.codes(b);
    prefetch.step();
    __m512i r[8];
    for (int p = 0; p < 8; ++p) {
      const uint8_t* w0 = wc + size_t(2 * p) * ws;
      const __m256i packed = _mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w0))),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(w0 + ws)), 1);
      const __m512i nib = _mm512_and_si512(
          _mm512_inserti64x4(_mm512_castsi256_si512(packed), _mm256_srli_epi16(packed, 4), 1), low4);
      r[p] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), nib, av);
    }
    // Row 2p: lanes 0-3 and 8-11 of r[p]; row 2p + 1: lanes 4-7 and 12-15.
    __m512i v = sum_row_pairs(r);
    v = _mm512_sub_epi32(v, _mm512_set1_epi32(8 * sum_a));
    if (layout.new_scale(b)) dw = row_scales(w + layout.scale(b), ws);
    // The row's fp32 d copies are only 2-byte aligned when nb is odd (quant_dot.h): scale_at.
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(dw, _mm512_set1_ps(scale_at(da + b))), acc);
  }
  alignas(64) float out[16];
  _mm512_store_ps(out, acc);
  for (int l = 0; l < 16; ++l) y[kRowOfLane[l]] = out[l];
}

void gemv16_q4_0(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, float* y) {
  gemv16_nibbles(n, w, ws, a, y, NibblesQ4_0{});
}

template <int64_t G>
void gemv16_int4(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, float* y) {
  gemv16_nibbles(n, w, ws, a, y, NibblesInt4<G>(n));
}

// q4_K against K-layout tiles (quant_gemm.h). Per row and super-block: the 8 (scale, min) pairs
// decoded (ggml's kmask shuffle), the 128 bytes of nibbles unpacked once to 256 bytes in value
// order (sub-block 2p: low nibbles of bytes 32p..32p+31, 2p + 1: their high nibbles); per
// sub-block j, 8 vpdpbusd (nibbles broadcast, the tile's int8 quants) give the exact sum_j per
// token, and in integers S = sum_j sc_j sum_j, M = sum_j m_j bsum_j (the tile's quant sums);
// then acc += float(S) (d d_a) - float(M) (dmin d_a).
template <int R>
void rows_q4_K(int64_t nb, const uint8_t* w, size_t ws, const uint8_t* tile, float* out) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* tb = tile + size_t(b) * kGemmKBlockBytes;
    const __m512 da = _mm512_loadu_ps(reinterpret_cast<const float*>(tb + 4096));
    const uint8_t* bsum = tb + 4096 + 64;
    alignas(64) uint8_t q[R][256];
    uint8_t sm[R][16];  // per row: scales of sub-blocks 0..7, then their mins
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w + size_t(r) * ws + size_t(b) * 144;
      uint32_t u[4];
      std::memcpy(u, blk + 4, 12);
      constexpr uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
      u[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
      const uint32_t uaux = u[1] & kmask1;
      u[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
      u[2] = uaux;
      u[0] &= kmask1;
      std::memcpy(sm[r], u, 16);
      for (int p = 0; p < 4; ++p) {
        const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 16 + 32 * p));
        _mm256_store_si256(reinterpret_cast<__m256i*>(q[r] + 64 * p), _mm256_and_si256(packed, low4));
        _mm256_store_si256(reinterpret_cast<__m256i*>(q[r] + 64 * p + 32), _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4));
      }
    }
    __m512i sums[R], mins[R];
    for (int r = 0; r < R; ++r) sums[r] = mins[r] = _mm512_setzero_si512();
    for (int j = 0; j < 8; ++j) {
      __m512i a[8];
      for (int k = 0; k < 8; ++k) a[k] = _mm512_loadu_si512(tb + 64 * (8 * j + k));
      const __m512i bs = _mm512_loadu_si512(bsum + 64 * j);
      for (int r = 0; r < R; ++r) {
        __m512i s = _mm512_setzero_si512();
        for (int k = 0; k < 8; ++k) s = _mm512_dpbusd_epi32(s, _mm512_set1_epi32(i32_at(q[r] + 32 * j + 4 * k)), a[k]);
        sums[r] = _mm512_add_epi32(sums[r], _mm512_mullo_epi32(s, _mm512_set1_epi32(sm[r][j])));
        mins[r] = _mm512_add_epi32(mins[r], _mm512_mullo_epi32(bs, _mm512_set1_epi32(sm[r][8 + j])));
      }
    }
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w + size_t(r) * ws + size_t(b) * 144;
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[r]), _mm512_mul_ps(da, _mm512_set1_ps(fp16_at(blk))), acc[r]);
      acc[r] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mins[r]), _mm512_mul_ps(da, _mm512_set1_ps(fp16_at(blk + 2))), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(out + r * kGemmTokens, acc[r]);
}

void gemm_q4_K(int64_t n, const uint8_t* w, size_t ws, int n_rows, const uint8_t* tile, float* out) {
  const int64_t nb = n / 256;
  int r = 0;
  for (; r + 4 <= n_rows; r += 4) rows_q4_K<4>(nb, w + size_t(r) * ws, ws, tile, out + r * kGemmTokens);
  for (; r < n_rows; ++r) rows_q4_K<1>(nb, w + size_t(r) * ws, ws, tile, out + r * kGemmTokens);
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

constexpr QuantGemmKernel kLegacyGemms[] = {
    {TensorType::Q4_0, GemmActLayout::Signed, gemm<rows_q4_0<kGroup>, rows_q4_0<1>>, gemv16_q4_0},
    {TensorType::Q8_0, GemmActLayout::Unsigned, gemm<rows_q8_0<kGroup>, rows_q8_0<1>>, nullptr},
    {TensorType::Q4_K, GemmActLayout::K, gemm_q4_K, nullptr},
};

// f16 / bf16 prefill: widen the rows once, then R rows x one tile per pass over k.
inline __m512 widen16(const uint8_t* p, TensorType type) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  if (type == TensorType::F16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));  // bf16
}

template <int R>
void float_rows(int64_t n, const float* wbuf, const float* tile, float* out) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < n; ++k) {
    const __m512 x = _mm512_loadu_ps(tile + k * kGemmTokens);
    for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(wbuf[r * n + k]), x, acc[r]);
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(out + r * kGemmTokens, acc[r]);
}

// Widens (f16, bf16) or dequantizes (nf4, fp8) the chunk's rows into wbuf, once per chunk. nf4
// and fp8 are decoded in registers by the decode kernels' decoders (nf4_values8, FloatE4M3) and
// give their reference dequantizer's values bit for bit: nf4 is absmax * code-book value, the
// same product; fp8 is (e4m3 / 256) * (scale * 256), the same real product as e4m3 * scale (both
// factors scaled by powers of two, exactly), so the same rounding. (The NaN codes, which qbench
// never writes, read as +-480 here.) With the reference dequantizer, fp8 prefill ran at 156 t/s
// on one thread at the llama-160m shape against f16's 337.
template <TensorType kType>
void float_gemm(int64_t n, const uint8_t* w, size_t ws, int n_rows, const float* tiles, int64_t n_tiles, float* wbuf,
                float* out, size_t out_tile_stride) {
  for (int r = 0; r < n_rows; ++r) {
    const uint8_t* row = w + size_t(r) * ws;
    float* dst = wbuf + r * n;
    if constexpr (kType == TensorType::NF4) {
      const __m256 tab_lo = _mm256_loadu_ps(kNf4Codes), tab_hi = _mm256_loadu_ps(kNf4Codes + 8);
      for (int64_t b = 0; b < n / kQKNf4; ++b) {
        const uint8_t* blk = row + b * int64_t(sizeof(BlockNf4));
        const __m256 absmax = _mm256_set1_ps(fp16_at(blk));
        for (int k = 0; k < kQKNf4 / 8; ++k) {
          _mm256_storeu_ps(dst + b * kQKNf4 + 8 * k, _mm256_mul_ps(absmax, nf4_values8(blk + 2 + 4 * k, tab_lo, tab_hi)));
        }
      }
      continue;
    } else if constexpr (kType == TensorType::FP8_E4M3) {
      const float scale = f32_at(row) * 256.0f;
      const uint8_t* q = row + kFp8RowHeaderBytes;
      const __m512 sv = _mm512_set1_ps(scale);
      int64_t k = 0;
      for (; k + 16 <= n; k += 16) _mm512_storeu_ps(dst + k, _mm512_mul_ps(FloatE4M3::load16(q, k), sv));
      for (; k < n; ++k) dst[k] = FloatE4M3::scalar(q, k) * scale;
      continue;
    }
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) _mm512_storeu_ps(dst + k, widen16(row + 2 * k, kType));
    for (; k < n; ++k) {
      uint16_t h;
      std::memcpy(&h, row + 2 * k, 2);
      dst[k] = kType == TensorType::F16 ? _cvtsh_ss(h) : [&] {
        const uint32_t bits = uint32_t(h) << 16;
        float f;
        std::memcpy(&f, &bits, 4);
        return f;
      }();
    }
  }
  constexpr int kRows = 8;
  for (int64_t tile = 0; tile < n_tiles; ++tile) {
    const float* tp = tiles + tile * n * kGemmTokens;
    float* op = out + size_t(tile) * out_tile_stride;
    int r = 0;
    for (; r + kRows <= n_rows; r += kRows) float_rows<kRows>(n, wbuf + r * n, tp, op + r * kGemmTokens);
    for (; r < n_rows; ++r) float_rows<1>(n, wbuf + r * n, tp, op + r * kGemmTokens);
  }
}

// GEMM of quant_gemm.h for the integer formats (AVX-512 only): per 32-value chunk the codes u
// are unpacked once (int_codes32) for 16 tokens and are vpdpbusd's unsigned operand, one dword
// broadcast per instruction, against the tile's int8 quants; the integer sum starts at
// off * (-sum q_a) (off = 2^(N-1), or the group's zero point), so it is sum (u - off) q_a exactly
// (8-bit asymmetric included: u is unsigned). Then acc += float(sum) * (d_w d_a), per chunk.
template <uint32_t I, int R>
void gemm_int_rows(int64_t n, const uint8_t* w, size_t ws, const uint8_t* tile, float* out) {
  constexpr int N = int_bits(I);
  constexpr bool kSym = int_sym(I);
  constexpr int64_t kHeader = kSym ? 2 : 3, kChunk = 4 * N;
  const int64_t nb = n / 32;
  const int64_t G = int_group(I) == 0 ? n : int_group(I);
  const int64_t group_bytes = kHeader + (G / 32) * kChunk;
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* tb = tile + size_t(b) * kGemmBlockBytes;
    __m512i av[8];
    for (int k = 0; k < 8; ++k) av[k] = _mm512_loadu_si512(tb + 64 * k);
    const __m512 da = _mm512_loadu_ps(reinterpret_cast<const float*>(tb + 512));
    const __m512i neg_sum = _mm512_loadu_si512(tb + 576);
    const int64_t g = (32 * b) / G, c = (32 * b) % G / 32;
    for (int r = 0; r < R; ++r) {
      const uint8_t* gp = w + size_t(r) * ws + size_t(g * group_bytes);
      alignas(32) uint8_t q[32];
      _mm256_store_si256(reinterpret_cast<__m256i*>(q), int_codes32<N>(gp + kHeader + c * kChunk));
      __m512i s = kSym ? _mm512_slli_epi32(neg_sum, N - 1) : _mm512_mullo_epi32(neg_sum, _mm512_set1_epi32(gp[2]));
      for (int k = 0; k < 8; ++k) {
        int32_t u4;
        std::memcpy(&u4, q + 4 * k, 4);
        s = _mm512_dpbusd_epi32(s, _mm512_set1_epi32(u4), av[k]);
      }
      const __m512 dd = _mm512_mul_ps(da, _mm512_set1_ps(fp16_at(gp)));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), dd, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(out + r * kGemmTokens, acc[r]);
}

template <uint32_t I>
void gemm_int(int64_t n, const uint8_t* w, size_t ws, int n_rows, const uint8_t* tile, float* out) {
  int r = 0;
  for (; r + 4 <= n_rows; r += 4) gemm_int_rows<I, 4>(n, w + size_t(r) * ws, ws, tile, out + r * kGemmTokens);
  for (; r < n_rows; ++r) gemm_int_rows<I, 1>(n, w + size_t(r) * ws, ws, tile, out + r * kGemmTokens);
}

// Decode of the symmetric 4-bit formats: gemv16_int4; the others decode on the row kernels.
template <uint32_t I>
constexpr GemvFn int_gemv() {
  if constexpr (int_bits(I) == 4 && int_sym(I)) return gemv16_int4<int_group(I)>;
  return nullptr;
}

template <size_t... I>
constexpr std::array<QuantGemmKernel, sizeof...(I)> int_gemms(std::index_sequence<I...>) {
  return {QuantGemmKernel{TensorType(uint32_t(TensorType::INT_FIRST) + I), GemmActLayout::Signed, gemm_int<I>,
                          int_gemv<I>()}...};
}
constexpr auto kIntGemms = int_gemms(std::make_index_sequence<uint32_t(TensorType::INT_LAST) -
                                                               uint32_t(TensorType::INT_FIRST) + 1>());

}  // namespace
}  // namespace qbench::quant_dot_detail::QBENCH_SIMD_NS
