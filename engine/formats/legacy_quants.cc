// Reference quantizers for the legacy ggml block types. Each follows ggml-quants.c's
// quantize_row_*_ref step for step (same comparisons, same float operations in the same order),
// which is what makes the output byte-identical; comments mark the places where a "cleaner"
// formulation would change bytes.
#include "engine/formats/legacy_quants.h"

#include <cfloat>
#include <climits>
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
using quant_detail::make_qx_quants;
using quant_detail::store_block;

namespace {

// The value of largest magnitude, keeping its sign; the first one wins ties (strict <).
float signed_absmax(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

void min_max(const float* x, int n, float* min, float* max) {
  float lo = FLT_MAX, hi = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    if (x[j] < lo) lo = x[j];
    if (x[j] > hi) hi = x[j];
  }
  *min = lo;
  *max = hi;
}

// C's (int8_t)(float) as ggml's reference compiles on x86-64 (cvttss2si, then the low byte):
// truncation toward zero, and INT32_MIN for NaN or out-of-range values (reached only for
// degenerate blocks, e.g. subnormal inputs whose 1/d is infinite). Spelled out because a plain
// cast of such a value is undefined behaviour in C++.
inline int32_t trunc_to_i32(float v) {
  return (v >= -2147483648.0f && v < 2147483648.0f) ? int32_t(v) : INT32_MIN;
}
inline int trunc_to_i8(float v) { return int(int8_t(trunc_to_i32(v))); }

void pack_5bit(const uint8_t* q, uint8_t* qs, uint8_t* qh_bytes) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = uint8_t((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
    qh |= uint32_t((q[j] & 0x10u) >> 4) << j;
    qh |= uint32_t((q[j + 16] & 0x10u) >> 4) << (j + 16);
  }
  for (int b = 0; b < 4; ++b) qh_bytes[b] = uint8_t(qh >> (8 * b));
}

// ggml's importance weights for the legacy types: imatrix_j * sqrt(sigma2 + x_j^2) with sigma2
// the mean square of the whole row (not of a super-block, as in the k-quants).
float row_sigma2(const float* x, int64_t n) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / float(n);
}
void block_weights(const float* xb, const float* qw, float sigma2, float* weight) {
  for (int j = 0; j < 32; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
}

uint32_t read_qh(const uint8_t* qh) {
  return uint32_t(qh[0]) | uint32_t(qh[1]) << 8 | uint32_t(qh[2]) << 16 | uint32_t(qh[3]) << 24;
}

}  // namespace

void quantize_row_q4_0_ref(const float* x, void* y, int64_t n) {
  QB_ASSERT(n % kQK4_0 == 0);
  for (int64_t i = 0; i < n / kQK4_0; ++i) {
    const float* xb = x + i * kQK4_0;
    const float d = signed_absmax(xb, kQK4_0) / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ4_0 b;
    b.d = fp32_to_fp16(d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      // x*id + 8.5 truncated is round-half-up of x/d + 8; 16 (only for -max) clamps to 15.
      const int q0 = ggml_min(15, trunc_to_i8(xb[j] * id + 8.5f));
      const int q1 = ggml_min(15, trunc_to_i8(xb[j + 16] * id + 8.5f));
      b.qs[j] = uint8_t(q0 | (q1 << 4));
    }
    store_block(y, i, b);
  }
}

void quantize_row_q4_1_ref(const float* x, void* y, int64_t n) {
  QB_ASSERT(n % kQK4_1 == 0);
  for (int64_t i = 0; i < n / kQK4_1; ++i) {
    const float* xb = x + i * kQK4_1;
    float min, max;
    min_max(xb, kQK4_1, &min, &max);
    const float d = (max - min) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ4_1 b;
    b.d = fp32_to_fp16(d);
    b.m = fp32_to_fp16(min);
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      const int q0 = ggml_min(15, trunc_to_i8((xb[j] - min) * id + 0.5f));
      const int q1 = ggml_min(15, trunc_to_i8((xb[j + 16] - min) * id + 0.5f));
      b.qs[j] = uint8_t(q0 | (q1 << 4));
    }
    store_block(y, i, b);
  }
}

void quantize_row_q5_0_ref(const float* x, void* y, int64_t n) {
  QB_ASSERT(n % kQK5_0 == 0);
  for (int64_t i = 0; i < n / kQK5_0; ++i) {
    const float* xb = x + i * kQK5_0;
    const float d = signed_absmax(xb, kQK5_0) / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ5_0 b;
    b.d = fp32_to_fp16(d);
    uint8_t q[kQK5_0];
    for (int j = 0; j < kQK5_0; ++j) q[j] = uint8_t(ggml_min(31, trunc_to_i8(xb[j] * id + 16.5f)));
    pack_5bit(q, b.qs, b.qh);
    store_block(y, i, b);
  }
}

void quantize_row_q5_1_ref(const float* x, void* y, int64_t n) {
  QB_ASSERT(n % kQK5_1 == 0);
  for (int64_t i = 0; i < n / kQK5_1; ++i) {
    const float* xb = x + i * kQK5_1;
    float min, max;
    min_max(xb, kQK5_1, &min, &max);
    const float d = (max - min) / 31;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ5_1 b;
    b.d = fp32_to_fp16(d);
    b.m = fp32_to_fp16(min);
    uint8_t q[kQK5_1];
    // No clamp here in ggml: (max - min) * id + 0.5 stays below 32 in float.
    for (int j = 0; j < kQK5_1; ++j) q[j] = uint8_t(trunc_to_i32((xb[j] - min) * id + 0.5f));
    pack_5bit(q, b.qs, b.qh);
    store_block(y, i, b);
  }
}

void quantize_row_q8_0_ref(const float* x, void* y, int64_t n) {
  QB_ASSERT(n % kQK8_0 == 0);
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    const float* xb = x + i * kQK8_0;
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) amax = ggml_max(amax, std::fabs(xb[j]));
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ8_0 b;
    b.d = fp32_to_fp16(d);
    // roundf: halves away from zero (not nearest_int's ties-to-even).
    for (int j = 0; j < kQK8_0; ++j) b.qs[j] = int8_t(trunc_to_i32(std::round(xb[j] * id)));
    store_block(y, i, b);
  }
}

// Importance-weighted versions (ggml's quantize_row_*_impl with quant_weights): symmetric types by
// make_qx_quants on the weights, the _1 types by make_qkx2_quants without use_mad (ggml's make_qkx3_quants; min clamped to <= 0).
void quantize_row_q4_0_weighted(const float* x, void* y, int64_t n, const float* qw) {
  QB_ASSERT(n % kQK4_0 == 0);
  const float sigma2 = row_sigma2(x, n);
  float weight[kQK4_0];
  int8_t L[kQK4_0];
  for (int64_t i = 0; i < n / kQK4_0; ++i) {
    const float* xb = x + i * kQK4_0;
    block_weights(xb, qw + i * kQK4_0, sigma2, weight);
    BlockQ4_0 b;
    b.d = fp32_to_fp16(make_qx_quants(kQK4_0, 8, xb, L, weight));
    for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(L[j] | (L[j + 16] << 4));
    store_block(y, i, b);
  }
}

void quantize_row_q4_1_weighted(const float* x, void* y, int64_t n, const float* qw) {
  QB_ASSERT(n % kQK4_1 == 0);
  const float sigma2 = row_sigma2(x, n);
  float weight[kQK4_1];
  uint8_t L[kQK4_1], Laux[kQK4_1];
  for (int64_t i = 0; i < n / kQK4_1; ++i) {
    const float* xb = x + i * kQK4_1;
    block_weights(xb, qw + i * kQK4_1, sigma2, weight);
    float min;
    const float d = make_qkx2_quants(kQK4_1, 15, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
    BlockQ4_1 b;
    b.d = fp32_to_fp16(d);
    b.m = fp32_to_fp16(-min);
    for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(L[j] | (L[j + 16] << 4));
    store_block(y, i, b);
  }
}

void quantize_row_q5_0_weighted(const float* x, void* y, int64_t n, const float* qw) {
  QB_ASSERT(n % kQK5_0 == 0);
  const float sigma2 = row_sigma2(x, n);
  float weight[kQK5_0];
  int8_t L[kQK5_0];
  for (int64_t i = 0; i < n / kQK5_0; ++i) {
    const float* xb = x + i * kQK5_0;
    block_weights(xb, qw + i * kQK5_0, sigma2, weight);
    BlockQ5_0 b;
    b.d = fp32_to_fp16(make_qx_quants(kQK5_0, 16, xb, L, weight));
    uint8_t q[kQK5_0];
    for (int j = 0; j < kQK5_0; ++j) q[j] = uint8_t(L[j]);
    pack_5bit(q, b.qs, b.qh);
    store_block(y, i, b);
  }
}

void quantize_row_q5_1_weighted(const float* x, void* y, int64_t n, const float* qw) {
  QB_ASSERT(n % kQK5_1 == 0);
  const float sigma2 = row_sigma2(x, n);
  float weight[kQK5_1];
  uint8_t L[kQK5_1], Laux[kQK5_1];
  for (int64_t i = 0; i < n / kQK5_1; ++i) {
    const float* xb = x + i * kQK5_1;
    block_weights(xb, qw + i * kQK5_1, sigma2, weight);
    float min;
    const float d = make_qkx2_quants(kQK5_1, 31, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
    BlockQ5_1 b;
    b.d = fp32_to_fp16(d);
    b.m = fp32_to_fp16(-min);
    pack_5bit(L, b.qs, b.qh);
    store_block(y, i, b);
  }
}

void dequantize_row_q4_0(const uint8_t* src, float* y, int64_t n) {
  QB_ASSERT(n % kQK4_0 == 0);
  for (int64_t i = 0; i < n / kQK4_0; ++i, y += kQK4_0) {
    const auto b = load_block<BlockQ4_0>(src, i);
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      y[j] = float((b.qs[j] & 0x0F) - 8) * d;
      y[j + 16] = float((b.qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_row_q4_1(const uint8_t* src, float* y, int64_t n) {
  QB_ASSERT(n % kQK4_1 == 0);
  for (int64_t i = 0; i < n / kQK4_1; ++i, y += kQK4_1) {
    const auto b = load_block<BlockQ4_1>(src, i);
    const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      y[j] = float(b.qs[j] & 0x0F) * d + m;
      y[j + 16] = float(b.qs[j] >> 4) * d + m;
    }
  }
}

void dequantize_row_q5_0(const uint8_t* src, float* y, int64_t n) {
  QB_ASSERT(n % kQK5_0 == 0);
  for (int64_t i = 0; i < n / kQK5_0; ++i, y += kQK5_0) {
    const auto b = load_block<BlockQ5_0>(src, i);
    const float d = fp16_to_fp32(b.d);
    const uint32_t qh = read_qh(b.qh);
    for (int j = 0; j < kQK5_0 / 2; ++j) {
      const int h0 = int((qh >> j) << 4) & 0x10;
      const int h1 = int(qh >> (j + 12)) & 0x10;
      y[j] = float(((b.qs[j] & 0x0F) | h0) - 16) * d;
      y[j + 16] = float(((b.qs[j] >> 4) | h1) - 16) * d;
    }
  }
}

void dequantize_row_q5_1(const uint8_t* src, float* y, int64_t n) {
  QB_ASSERT(n % kQK5_1 == 0);
  for (int64_t i = 0; i < n / kQK5_1; ++i, y += kQK5_1) {
    const auto b = load_block<BlockQ5_1>(src, i);
    const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
    const uint32_t qh = read_qh(b.qh);
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const int h0 = int((qh >> j) << 4) & 0x10;
      const int h1 = int(qh >> (j + 12)) & 0x10;
      y[j] = float((b.qs[j] & 0x0F) | h0) * d + m;
      y[j + 16] = float((b.qs[j] >> 4) | h1) * d + m;
    }
  }
}

void dequantize_row_q8_0(const uint8_t* src, float* y, int64_t n) {
  QB_ASSERT(n % kQK8_0 == 0);
  for (int64_t i = 0; i < n / kQK8_0; ++i, y += kQK8_0) {
    const auto b = load_block<BlockQ8_0>(src, i);
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < kQK8_0; ++j) y[j] = float(b.qs[j]) * d;
  }
}

}  // namespace qbench
