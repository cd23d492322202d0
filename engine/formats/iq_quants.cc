#include "engine/formats/iq_quants.h"

#include <cmath>
#include <cstring>
#include <type_traits>

#include "engine/core/error.h"
#include "engine/core/half.h"
#include "engine/formats/quant_util.h"

namespace qbench {
namespace {

using quant_detail::ggml_max;
using quant_detail::ggml_min;
using quant_detail::load_block;
using quant_detail::nearest_int;
using quant_detail::store_block;

using quant_detail::kGroupMaxEps;

struct BlockIq4nl {
  uint16_t d;
  uint8_t qs[16];
};
static_assert(sizeof(BlockIq4nl) == 18);

struct BlockIq4xs {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[4];
  uint8_t qs[128];
};
static_assert(sizeof(BlockIq4xs) == 136);

// Index of the code-book value nearest to x (ties to the lower one), by bisection as ggml does.
int best_index(float x) {
  const int8_t* val = kIq4nlValues;
  if (x <= val[0]) return 0;
  if (x >= val[15]) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (x < val[mid]) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return x - val[hi - 1] < val[hi] - x ? hi - 1 : hi;
}

// One block (iq4_nl: super = block = 32) or super-block (iq4_xs: super = 256, block = 32) of x.
// Writes d, the indices L[super] and, for iq4_xs, the packed 6-bit sub-block scales.
// ntry: 7 trial scales either side (llama-quantize's quantize_iq4_nl / quantize_iq4_xs), or -1
// (ggml's quantize_row_iq4_nl_ref: the first scale's sign flipped, no trials, no re-rounding).
void quantize_iq4(int super, int block, const float* x, uint16_t* dh, uint8_t* q4, uint16_t* scales_h, uint8_t* scales_l,
                  const float* qw, int ntry = 7) {
  float scales[256 / 32];
  float weight[32];
  uint8_t L[256];
  float sigma2 = 0;
  for (int j = 0; j < super; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.f / float(super);
  std::memset(q4, 0, size_t(super / 2));
  *dh = fp32_to_fp16(0.f);

  float max_scale = 0, amax_scale = 0;
  const int nb = super / block;
  for (int ib = 0; ib < nb; ++ib) {
    const float* xb = x + ib * block;
    uint8_t* Lb = L + ib * block;
    if (qw != nullptr) {
      const float* w = qw + ib * block;
      for (int j = 0; j < block; ++j) weight[j] = w[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    } else {
      for (int j = 0; j < block; ++j) weight[j] = xb[j] * xb[j];
    }
    // All-zero weights (an imatrix entry of zeros, or values whose squares underflow) would make
    // ggml's scale 0/0, a NaN in the file; equal weights instead (the only departure from ggml).
    bool any_weight = false;
    for (int j = 0; j < block; ++j) any_weight |= weight[j] > 0;
    if (!any_weight) {
      for (int j = 0; j < block; ++j) weight[j] = 1.0f;
    }
    const auto [max, amax] = quant_detail::signed_max(xb, block);
    if (amax < kGroupMaxEps) {
      scales[ib] = 0;
      continue;
    }
    float d = ntry > 0 ? -max / float(kIq4nlValues[0]) : max / float(kIq4nlValues[0]);
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < block; ++j) {
      const int l = best_index(id * xb[j]);
      Lb[j] = uint8_t(l);
      const float q = kIq4nlValues[l];
      const float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    d = sumqx / sumq2;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; ++itry) {
      id = float(itry + kIq4nlValues[0]) / max;
      sumqx = sumq2 = 0;
      for (int j = 0; j < block; ++j) {
        const float q = kIq4nlValues[best_index(id * xb[j])];
        const float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
    const float abs_d = std::fabs(d);
    if (abs_d > amax_scale) {
      amax_scale = abs_d;
      max_scale = d;
    }
  }

  if (nb > 1) {
    *scales_h = 0;
    const float d = -max_scale / 32;
    *dh = fp32_to_fp16(d);
    const float id = d != 0 ? 1 / d : 0.f;
    for (int ib = 0; ib < nb; ++ib) {
      int l = ggml_max(-32, ggml_min(31, nearest_int(id * scales[ib])));
      const float dl = d * float(l);
      const float idl = dl != 0 ? 1 / dl : 0.f;
      uint8_t* Lb = L + ib * block;
      const float* xb = x + ib * block;
      for (int j = 0; j < block; ++j) Lb[j] = uint8_t(best_index(idl * xb[j]));
      l += 32;
      const uint8_t low = uint8_t(l & 0xf), high = uint8_t(l >> 4);
      if (ib % 2 == 0) {
        scales_l[ib / 2] = low;
      } else {
        scales_l[ib / 2] |= uint8_t(low << 4);
      }
      *scales_h |= uint16_t(high << 2 * (ib % 8));
    }
  } else {
    *dh = fp32_to_fp16(scales[0]);
    if (ntry > 0) {
      const float id = scales[0] != 0 ? 1 / scales[0] : 0.f;
      for (int j = 0; j < super; ++j) L[j] = uint8_t(best_index(id * x[j]));
    }
  }
  for (int i = 0; i < super / 32; ++i) {
    for (int j = 0; j < 16; ++j) q4[16 * i + j] = uint8_t(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
  }
}

// Rows of iq4_nl (Block = BlockIq4nl, 32 values a block) or iq4_xs (BlockIq4xs, 256).
template <typename Block>
void quantize_blocks(const float* x, void* y, int64_t n, const float* qw) {
  constexpr bool kXs = std::is_same_v<Block, BlockIq4xs>;
  constexpr int kSuper = kXs ? 256 : 32;
  QB_ASSERT(n % kSuper == 0);
  for (int64_t b = 0; b < n / kSuper; ++b) {
    Block blk{};
    uint16_t* scales_h = nullptr;
    uint8_t* scales_l = nullptr;
    if constexpr (kXs) {
      scales_h = &blk.scales_h;
      scales_l = blk.scales_l;
    }
    quantize_iq4(kSuper, 32, x + kSuper * b, &blk.d, blk.qs, scales_h, scales_l, qw ? qw + kSuper * b : nullptr);
    store_block(y, b, blk);
  }
}

}  // namespace

void quantize_row_iq4_nl_ref(const float* x, void* y, int64_t n) { quantize_blocks<BlockIq4nl>(x, y, n, nullptr); }
void quantize_row_iq4_nl_from_float(const float* x, void* y, int64_t n) {
  QB_ASSERT(n % 32 == 0);
  for (int64_t b = 0; b < n / 32; ++b) {
    BlockIq4nl blk{};
    quantize_iq4(32, 32, x + 32 * b, &blk.d, blk.qs, nullptr, nullptr, nullptr, -1);
    store_block(y, b, blk);
  }
}
void quantize_row_iq4_nl_weighted(const float* x, void* y, int64_t n, const float* qw) {
  quantize_blocks<BlockIq4nl>(x, y, n, qw);
}

namespace {

// 32 values of 16 nibble bytes (value j in the low nibble of qs[j], value j + 16 in the high one)
// through the IQ4_NL code book, times `d`.
void dequantize_iq4_32(const uint8_t* qs, float d, float* out) {
  for (int j = 0; j < 16; ++j) {
    out[j] = d * float(kIq4nlValues[qs[j] & 0xf]);
    out[j + 16] = d * float(kIq4nlValues[qs[j] >> 4]);
  }
}

}  // namespace

void dequantize_row_iq4_nl(const uint8_t* src, float* y, int64_t n) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const auto blk = load_block<BlockIq4nl>(src, b);
    dequantize_iq4_32(blk.qs, fp16_to_fp32(blk.d), y + 32 * b);
  }
}

void quantize_row_iq4_xs_ref(const float* x, void* y, int64_t n) { quantize_blocks<BlockIq4xs>(x, y, n, nullptr); }
void quantize_row_iq4_xs_weighted(const float* x, void* y, int64_t n, const float* qw) {
  quantize_blocks<BlockIq4xs>(x, y, n, qw);
}

void dequantize_row_iq4_xs(const uint8_t* src, float* y, int64_t n) {
  for (int64_t b = 0; b < n / 256; ++b) {
    const auto blk = load_block<BlockIq4xs>(src, b);
    const float d = fp16_to_fp32(blk.d);
    for (int ib = 0; ib < 8; ++ib) {
      const int ls = ((blk.scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((blk.scales_h >> 2 * ib) & 3) << 4);
      dequantize_iq4_32(blk.qs + 16 * ib, d * float(ls - 32), y + 256 * b + 32 * ib);
    }
  }
}

}  // namespace qbench
