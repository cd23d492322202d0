// Reference quantizers for ggml's k-quants. They follow ggml-quants.c step for step: the scale
// searches (make_qkx2_quants, make_qx_quants, make_q3_quants) are greedy and compare float sums,
// so any change of operation order, of tie-breaking (strict versus non-strict comparisons) or
// of rounding (nearest_int's ties-to-even versus roundf) changes bytes. Compiled with
// -ffp-contract=off (see quant_util.h).
#include "engine/formats/k_quants.h"

#include <cmath>
#include <cstring>

#include "engine/core/error.h"
#include "engine/core/half.h"
#include "engine/formats/quant_search.h"
#include "engine/formats/quant_util.h"

namespace qbench {

using quant_detail::ggml_max;
using quant_detail::ggml_min;
using quant_detail::load_block;
using quant_detail::make_qkx2_quants;
using quant_detail::make_qp_quants;
using quant_detail::make_qx_quants;
using quant_detail::nearest_int;
using quant_detail::store_block;

namespace {

using quant_detail::kGroupMaxEps;

// Symmetric quantization to [-nmax, nmax-1] refined by coordinate descent on the x^2-weighted
// least-squares scale (ggml's make_q3_quants with do_rmse). L receives quants + nmax.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
  const auto [max, amax] = quant_detail::signed_max(x, n);
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  const float iscale = float(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = ggml_max(-nmax, ggml_min(nmax - 1, l));
    L[i] = int8_t(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * float(l);
    suml2 += w * float(l) * float(l);
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * float(L[i]);
      if (slx > 0) {
        float sl2 = suml2 - w * float(L[i]) * float(L[i]);
        int new_l = nearest_int(x[i] * sl2 / slx);
        new_l = ggml_max(-nmax, ggml_min(nmax - 1, new_l));
        if (new_l != L[i]) {
          slx += w * x[i] * float(new_l);
          sl2 += w * float(new_l) * float(new_l);
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = int8_t(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = int8_t(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block: for j < 4 the low 6 bits of
// q[j] and q[j+4]; for j >= 4 a nibble of q[j+4] plus the top 2 bits of q[j-4] (scale) or q[j].
void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = uint8_t((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

void pack_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t* scales) {
  if (j < 4) {
    scales[j] = ls;
    scales[j + 4] = lm;
  } else {
    scales[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
    scales[j - 4] |= uint8_t((ls >> 4) << 6);
    scales[j - 0] |= uint8_t((lm >> 4) << 6);
  }
}

// Four 2-bit values per byte: byte 32*h + l of qs holds L[128h + l + 32s] in bits 2s..2s+1.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQK_K; j += 128) {
    for (int l = 0; l < 32; ++l) {
      qs[j / 4 + l] = uint8_t(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                              (L[j + l + 96] << 6));
    }
  }
}

int q3_K_scale(const uint8_t* scales, int j) {
  int sc = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
  sc = (sc | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
  return int(int8_t(sc));
}

// ggml's weights for the importance-weighted searches: imatrix_j * sqrt(sigma2 + x_j^2), so a
// value counts by how strongly its input fires and, less steeply, by its own magnitude; sigma2
// (a multiple of the super-block's mean square) keeps small weights from counting for nothing.
inline void importance_weights(const float* x, const float* qw, int n, float sigma2, float* weights) {
  for (int l = 0; l < n; ++l) weights[l] = qw[l] * std::sqrt(sigma2 + x[l] * x[l]);
}

inline float sum_of_squares(const float* x, int n) {
  float s = 0;
  for (int l = 0; l < n; ++l) s += x[l] * x[l];
  return s;
}

// Final quants of a Q4_K/Q5_K block from its stored (fp16, 6-bit) scales and mins.
template <typename Block>
void requantize_k4(const float* x, const Block& b, uint8_t* L, int nmax) {
  for (int j = 0; j < kQK_K / 32; ++j) {
    uint8_t sc, m;
    get_scale_min_k4(j, b.scales, &sc, &m);
    const float d = fp16_to_fp32(b.d) * float(sc);
    if (d == 0.0f) continue;
    const float dm = fp16_to_fp32(b.dmin) * float(m);
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = uint8_t(ggml_max(0, ggml_min(nmax, l)));
    }
  }
}

// Shared by Q4_K and Q5_K: sub-block fits, 6-bit scales and mins, and the final quants in L.
template <typename Block>
void quantize_scales_mins_k(const float* x, Block& b, uint8_t* L, int nmax, float rmin,
                            int nstep) {
  uint8_t Laux[32];
  float weights[32], mins[kQK_K / 32], scales[kQK_K / 32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < kQK_K / 32; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin,
                                 0.1f, nstep, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < kQK_K / 32; ++j) {
    // Stored through uint8_t before clamping, as ggml does (a negative scale wraps, then clamps).
    uint8_t ls = uint8_t(nearest_int(inv_scale * scales[j]));
    uint8_t lm = uint8_t(nearest_int(inv_min * mins[j]));
    ls = ggml_min<uint8_t>(63, ls);
    lm = ggml_min<uint8_t>(63, lm);
    pack_scale_min_k4(j, ls, lm, b.scales);
  }
  b.d = fp32_to_fp16(max_scale / 63.f);
  b.dmin = fp32_to_fp16(max_min / 63.f);
  requantize_k4(x, b, L, nmax);
}

// The same with importance weights (ggml's quantize_row_q4_K_impl / q5_K_impl): every sub-block
// fitted by make_qkx2_quants (use_mad false: ggml's make_qkx3_quants) on imatrix-derived weights, then the 8 scales and the 8 mins each
// fitted as 6-bit multiples of a super-block factor (make_qp_quants), weighted by the sub-blocks'
// total weight, instead of ggml's max-based rounding.
template <typename Block>
void quantize_scales_mins_k_weighted(const float* x, const float* qw, Block& b, uint8_t* L, int nmax) {
  uint8_t Laux[32], Ls[kQK_K / 32], Lm[kQK_K / 32];
  float weights[32], sw[kQK_K / 32], mins[kQK_K / 32], scales[kQK_K / 32];
  const float sigma2 = 2 * sum_of_squares(x, kQK_K) / kQK_K;
  for (int j = 0; j < kQK_K / 32; ++j) {
    importance_weights(x + 32 * j, qw + 32 * j, 32, sigma2, weights);
    float sumw = 0;
    for (int l = 0; l < 32; ++l) sumw += weights[l];
    sw[j] = sumw;
    scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
  }
  const float d_block = make_qp_quants(kQK_K / 32, 63, scales, Ls, sw);
  const float m_block = make_qp_quants(kQK_K / 32, 63, mins, Lm, sw);
  for (int j = 0; j < kQK_K / 32; ++j) {
    pack_scale_min_k4(j, ggml_min<uint8_t>(63, Ls[j]), ggml_min<uint8_t>(63, Lm[j]), b.scales);
  }
  b.d = fp32_to_fp16(d_block);
  b.dmin = fp32_to_fp16(m_block);
  requantize_k4(x, b, L, nmax);
}

// Final quants of a Q2_K block from its stored scales and mins, packed into qs.
void finish_q2_K(const float* x, BlockQ2_K& b, uint8_t* L) {
  for (int j = 0; j < kQK_K / 16; ++j) {
    const float d = fp16_to_fp32(b.d) * float(b.scales[j] & 0xF);
    if (d == 0.0f) continue;
    const float dm = fp16_to_fp32(b.dmin) * float(b.scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int((x[16 * j + ii] + dm) / d);
      L[16 * j + ii] = uint8_t(ggml_max(0, ggml_min(3, l)));
    }
  }
  pack_2bit(L, b.qs);
}

// Stores the 6-bit scale code l (0..63, the scale + 32) of Q3_K sub-block j.
void set_q3_K_scale(uint8_t* scales, int j, int l) {
  if (j < 8) {
    scales[j] = uint8_t(l & 0xF);
  } else {
    scales[j - 8] |= uint8_t((l & 0xF) << 4);
  }
  scales[j % 4 + 8] |= uint8_t((l >> 4) << (2 * (j / 4)));
}

// Final quants of a Q3_K block from its stored scales: hmask and the low 2 bits in qs.
void finish_q3_K(const float* x, BlockQ3_K& b, int8_t* L) {
  for (int j = 0; j < kQK_K / 16; ++j) {
    const float d = fp16_to_fp32(b.d) * float(q3_K_scale(b.scales, j));
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int(x[16 * j + ii] / d);
      L[16 * j + ii] = int8_t(ggml_max(-4, ggml_min(3, l)) + 4);
    }
  }
  std::memset(b.hmask, 0, sizeof b.hmask);
  uint8_t Lu[kQK_K];
  for (int j = 0; j < kQK_K; ++j) {
    Lu[j] = uint8_t(L[j]);
    if (Lu[j] > 3) {
      b.hmask[j % 32] |= uint8_t(1u << (j / 32));
      Lu[j] = uint8_t(Lu[j] - 4);
    }
  }
  pack_2bit(Lu, b.qs);
}

void pack_q4_K(const uint8_t* L, BlockQ4_K& b) {
  for (int p = 0; p < 4; ++p) {
    for (int l = 0; l < 32; ++l) {
      b.qs[32 * p + l] = uint8_t(L[64 * p + l] | (L[64 * p + l + 32] << 4));
    }
  }
}

void pack_q5_K(const uint8_t* L, BlockQ5_K& b) {
  std::memset(b.qh, 0, sizeof b.qh);
  for (int p = 0; p < 4; ++p) {
    const uint8_t m1 = uint8_t(1u << (2 * p)), m2 = uint8_t(2u << (2 * p));
    for (int j = 0; j < 32; ++j) {
      int l1 = L[64 * p + j];
      if (l1 > 15) {
        l1 -= 16;
        b.qh[j] |= m1;
      }
      int l2 = L[64 * p + j + 32];
      if (l2 > 15) {
        l2 -= 16;
        b.qh[j] |= m2;
      }
      b.qs[32 * p + j] = uint8_t(l1 | (l2 << 4));
    }
  }
}

// One Q6_K block; `qw` (importance per value, or nullptr) replaces make_qx_quants' x^2 weights
// (ggml's quantize_row_q6_K_impl passes the imatrix as is, without the sigma2 term of the others).
BlockQ6_K quantize_block_q6_K(const float* x, const float* qw) {
  BlockQ6_K b{};
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < kQK_K / 16; ++ib) {
    const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, qw ? qw + 16 * ib : nullptr);
    scales[ib] = scale;
    const float abs_scale = std::fabs(scale);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scale;
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(&b, 0, sizeof b);
    b.d = fp32_to_fp16(0.f);
    return b;
  }
  const float iscale = -128.f / max_scale;
  b.d = fp32_to_fp16(1 / iscale);
  for (int ib = 0; ib < kQK_K / 16; ++ib) {
    b.scales[ib] = int8_t(ggml_min(127, nearest_int(iscale * scales[ib])));
  }
  for (int j = 0; j < kQK_K / 16; ++j) {
    const float d = fp16_to_fp32(b.d) * float(b.scales[j]);
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int(x[16 * j + ii] / d);
      L[16 * j + ii] = int8_t(ggml_max(-32, ggml_min(31, l)) + 32);
    }
  }
  for (int h = 0; h < 2; ++h) {
    const int8_t* Lh = L + 128 * h;
    uint8_t* ql = b.ql + 64 * h;
    uint8_t* qh = b.qh + 32 * h;
    for (int l = 0; l < 32; ++l) {
      const uint8_t q1 = Lh[l] & 0xF, q2 = Lh[l + 32] & 0xF;
      const uint8_t q3 = Lh[l + 64] & 0xF, q4 = Lh[l + 96] & 0xF;
      ql[l] = uint8_t(q1 | (q3 << 4));
      ql[l + 32] = uint8_t(q2 | (q4 << 4));
      qh[l] = uint8_t((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                      ((Lh[l + 96] >> 4) << 6));
    }
  }
  return b;
}

}  // namespace

void quantize_row_q2_K_ref(const float* x, void* y, int64_t n) {
  QB_ASSERT(n % kQK_K == 0);
  constexpr float q4scale = 15.f;
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    BlockQ2_K b{};
    uint8_t L[kQK_K], Laux[16];
    float weights[16], mins[kQK_K / 16], scales[kQK_K / 16];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < kQK_K / 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f,
                                   0.1f, 15, true);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
      const float iscale = q4scale / max_scale;
      for (int j = 0; j < kQK_K / 16; ++j) b.scales[j] = uint8_t(nearest_int(iscale * scales[j]));
      b.d = fp32_to_fp16(max_scale / q4scale);
    } else {
      for (int j = 0; j < kQK_K / 16; ++j) b.scales[j] = 0;
      b.d = fp32_to_fp16(0.f);
    }
    if (max_min > 0) {
      const float iscale = q4scale / max_min;
      for (int j = 0; j < kQK_K / 16; ++j) {
        b.scales[j] |= uint8_t(nearest_int(iscale * mins[j]) << 4);
      }
      b.dmin = fp32_to_fp16(max_min / q4scale);
    } else {
      b.dmin = fp32_to_fp16(0.f);
    }
    finish_q2_K(x, b, L);
    store_block(y, i, b);
  }
}

void quantize_row_q2_K_weighted(const float* x, void* y, int64_t n, const float* qw) {
  QB_ASSERT(n % kQK_K == 0);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K, qw += kQK_K) {
    BlockQ2_K b{};
    uint8_t L[kQK_K], Laux[16], Ls[kQK_K / 16], Lm[kQK_K / 16];
    float weights[16], sw[kQK_K / 16], mins[kQK_K / 16], scales[kQK_K / 16];
    // sigma2 is the plain mean square here (twice it in Q3_K..Q5_K), as in ggml.
    const float sigma2 = sum_of_squares(x, kQK_K) / kQK_K;
    for (int j = 0; j < kQK_K / 16; ++j) {
      importance_weights(x + 16 * j, qw + 16 * j, 16, sigma2, weights);
      float sumw = 0;
      for (int l = 0; l < 16; ++l) sumw += weights[l];
      sw[j] = sumw;
      scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
    }
    const float dm = make_qp_quants(kQK_K / 16, 15, scales, Ls, sw);
    const float mm = make_qp_quants(kQK_K / 16, 15, mins, Lm, sw);
    b.d = fp32_to_fp16(dm);
    b.dmin = fp32_to_fp16(mm);
    for (int j = 0; j < kQK_K / 16; ++j) b.scales[j] = uint8_t(Ls[j] | (Lm[j] << 4));
    finish_q2_K(x, b, L);
    store_block(y, i, b);
  }
}

void quantize_row_q3_K_ref(const float* x, void* y, int64_t n) {
  QB_ASSERT(n % kQK_K == 0);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    BlockQ3_K b{};
    int8_t L[kQK_K];
    float scales[kQK_K / 16];
    float max_scale = 0, amax = 0;
    for (int j = 0; j < kQK_K / 16; ++j) {
      scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
      const float scale = std::fabs(scales[j]);
      if (scale > amax) {
        amax = scale;
        max_scale = scales[j];
      }
    }
    std::memset(b.scales, 0, sizeof b.scales);
    if (max_scale != 0.0f) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < kQK_K / 16; ++j) {
        // int8_t as in ggml: nearest_int wraps to 8 bits before the clamp.
        const int8_t l = int8_t(nearest_int(iscale * scales[j]));
        set_q3_K_scale(b.scales, j, ggml_max(-32, ggml_min(31, int(l))) + 32);
      }
      b.d = fp32_to_fp16(1 / iscale);
    } else {
      b.d = fp32_to_fp16(0.f);
    }
    finish_q3_K(x, b, L);
    store_block(y, i, b);
  }
}

void quantize_row_q3_K_weighted(const float* x, void* y, int64_t n, const float* qw) {
  QB_ASSERT(n % kQK_K == 0);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K, qw += kQK_K) {
    BlockQ3_K b{};
    int8_t L[kQK_K], Ls[kQK_K / 16];
    float weights[16], sw[kQK_K / 16], scales[kQK_K / 16];
    const float sigma2 = 2 * sum_of_squares(x, kQK_K) / kQK_K;
    for (int j = 0; j < kQK_K / 16; ++j) {
      importance_weights(x + 16 * j, qw + 16 * j, 16, sigma2, weights);
      float sumw = 0;
      for (int l = 0; l < 16; ++l) sumw += weights[l];
      sw[j] = sumw;
      scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, weights);
    }
    // The 16 signed sub-block scales as 6-bit multiples (-32..31) of one fp16 factor, weighted.
    const float d_block = make_qx_quants(kQK_K / 16, 32, scales, Ls, sw);
    std::memset(b.scales, 0, sizeof b.scales);
    for (int j = 0; j < kQK_K / 16; ++j) set_q3_K_scale(b.scales, j, Ls[j]);
    b.d = fp32_to_fp16(d_block);
    finish_q3_K(x, b, L);
    store_block(y, i, b);
  }
}

void quantize_row_q4_K_ref(const float* x, void* y, int64_t n) {
  QB_ASSERT(n % kQK_K == 0);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    BlockQ4_K b{};
    uint8_t L[kQK_K];
    quantize_scales_mins_k(x, b, L, 15, -1.f, 20);
    pack_q4_K(L, b);
    store_block(y, i, b);
  }
}

void quantize_row_q4_K_weighted(const float* x, void* y, int64_t n, const float* qw) {
  QB_ASSERT(n % kQK_K == 0);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K, qw += kQK_K) {
    BlockQ4_K b{};
    uint8_t L[kQK_K];
    quantize_scales_mins_k_weighted(x, qw, b, L, 15);
    pack_q4_K(L, b);
    store_block(y, i, b);
  }
}

void quantize_row_q5_K_ref(const float* x, void* y, int64_t n) {
  QB_ASSERT(n % kQK_K == 0);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    BlockQ5_K b{};
    uint8_t L[kQK_K];
    quantize_scales_mins_k(x, b, L, 31, -0.5f, 15);
    pack_q5_K(L, b);
    store_block(y, i, b);
  }
}

void quantize_row_q5_K_weighted(const float* x, void* y, int64_t n, const float* qw) {
  QB_ASSERT(n % kQK_K == 0);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K, qw += kQK_K) {
    BlockQ5_K b{};
    uint8_t L[kQK_K];
    quantize_scales_mins_k_weighted(x, qw, b, L, 31);
    pack_q5_K(L, b);
    store_block(y, i, b);
  }
}

void quantize_row_q6_K_ref(const float* x, void* y, int64_t n) {
  QB_ASSERT(n % kQK_K == 0);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) store_block(y, i, quantize_block_q6_K(x, nullptr));
}

void quantize_row_q6_K_weighted(const float* x, void* y, int64_t n, const float* qw) {
  QB_ASSERT(n % kQK_K == 0);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K, qw += kQK_K) store_block(y, i, quantize_block_q6_K(x, qw));
}

void quantize_row_q8_K_ref(const float* x, void* y, int64_t n) {
  QB_ASSERT(n % kQK_K == 0);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    BlockQ8_K b{};  // ggml leaves bsums unwritten for an all-zero block; here they are zero
    float max = 0, amax = 0;
    for (int j = 0; j < kQK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax != 0.0f) {
      // -127 rather than -128 so that every quant is in [-127, 127] (ggml's choice for IQ2).
      const float iscale = -127.f / max;
      for (int j = 0; j < kQK_K; ++j) b.qs[j] = int8_t(ggml_min(127, nearest_int(iscale * x[j])));
      for (int j = 0; j < kQK_K / 16; ++j) {
        int sum = 0;
        for (int ii = 0; ii < 16; ++ii) sum += b.qs[j * 16 + ii];
        b.bsums[j] = int16_t(sum);
      }
      b.d = 1 / iscale;
    }
    store_block(y, i, b);
  }
}

void dequantize_row_q2_K(const uint8_t* src, float* y, int64_t n) {
  QB_ASSERT(n % kQK_K == 0);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto b = load_block<BlockQ2_K>(src, i);
    const float d = fp16_to_fp32(b.d), min = fp16_to_fp32(b.dmin);
    const uint8_t* q = b.qs;
    int is = 0;
    for (int h = 0; h < 2; ++h, q += 32) {
      for (int s = 0; s < 4; ++s) {
        const int shift = 2 * s;
        for (int half = 0; half < 2; ++half) {
          const uint8_t sc = b.scales[is++];
          const float dl = d * float(sc & 0xF), ml = min * float(sc >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * float((q[l + 16 * half] >> shift) & 3) - ml;
        }
      }
    }
  }
}

void dequantize_row_q3_K(const uint8_t* src, float* y, int64_t n) {
  QB_ASSERT(n % kQK_K == 0);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto b = load_block<BlockQ3_K>(src, i);
    const float d_all = fp16_to_fp32(b.d);
    const uint8_t* q = b.qs;
    int is = 0;
    uint8_t m = 1;
    for (int h = 0; h < 2; ++h, q += 32) {
      for (int s = 0; s < 4; ++s, m = uint8_t(m << 1)) {
        const int shift = 2 * s;
        for (int half = 0; half < 2; ++half) {
          const float dl = d_all * float(q3_K_scale(b.scales, is++));
          for (int l = 0; l < 16; ++l) {
            const int k = l + 16 * half;
            const int v = ((q[k] >> shift) & 3) - ((b.hmask[k] & m) ? 0 : 4);
            *y++ = dl * float(v);
          }
        }
      }
    }
  }
}

void dequantize_row_q4_K(const uint8_t* src, float* y, int64_t n) {
  QB_ASSERT(n % kQK_K == 0);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto b = load_block<BlockQ4_K>(src, i);
    const float d = fp16_to_fp32(b.d), min = fp16_to_fp32(b.dmin);
    const uint8_t* q = b.qs;
    for (int p = 0; p < 4; ++p, q += 32) {
      uint8_t sc, m;
      get_scale_min_k4(2 * p, b.scales, &sc, &m);
      const float d1 = d * float(sc), m1 = min * float(m);
      get_scale_min_k4(2 * p + 1, b.scales, &sc, &m);
      const float d2 = d * float(sc), m2 = min * float(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
    }
  }
}

void dequantize_row_q5_K(const uint8_t* src, float* y, int64_t n) {
  QB_ASSERT(n % kQK_K == 0);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto b = load_block<BlockQ5_K>(src, i);
    const float d = fp16_to_fp32(b.d), min = fp16_to_fp32(b.dmin);
    const uint8_t* ql = b.qs;
    for (int p = 0; p < 4; ++p, ql += 32) {
      const uint8_t u1 = uint8_t(1u << (2 * p)), u2 = uint8_t(2u << (2 * p));
      uint8_t sc, m;
      get_scale_min_k4(2 * p, b.scales, &sc, &m);
      const float d1 = d * float(sc), m1 = min * float(m);
      get_scale_min_k4(2 * p + 1, b.scales, &sc, &m);
      const float d2 = d * float(sc), m2 = min * float(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * float((ql[l] & 0xF) + ((b.qh[l] & u1) ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * float((ql[l] >> 4) + ((b.qh[l] & u2) ? 16 : 0)) - m2;
    }
  }
}

void dequantize_row_q6_K(const uint8_t* src, float* y, int64_t n) {
  QB_ASSERT(n % kQK_K == 0);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto b = load_block<BlockQ6_K>(src, i);
    const float d = fp16_to_fp32(b.d);
    for (int h = 0; h < 2; ++h, y += 128) {
      const uint8_t* ql = b.ql + 64 * h;
      const uint8_t* qh = b.qh + 32 * h;
      const int8_t* sc = b.scales + 8 * h;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * float(sc[is + 0]) * float(q1);
        y[l + 32] = d * float(sc[is + 2]) * float(q2);
        y[l + 64] = d * float(sc[is + 4]) * float(q3);
        y[l + 96] = d * float(sc[is + 6]) * float(q4);
      }
    }
  }
}

void dequantize_row_q8_K(const uint8_t* src, float* y, int64_t n) {
  QB_ASSERT(n % kQK_K == 0);
  for (int64_t i = 0; i < n / kQK_K; ++i, y += kQK_K) {
    const auto b = load_block<BlockQ8_K>(src, i);
    for (int j = 0; j < kQK_K; ++j) y[j] = b.d * float(b.qs[j]);
  }
}

}  // namespace qbench
