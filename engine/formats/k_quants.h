// ggml's k-quant block formats: super-blocks of 256 values split into sub-blocks of 16 or 32,
// each sub-block with its own 4-, 6- or 8-bit scale (and for Q2_K/Q4_K/Q5_K a minimum), the
// sub-block scales themselves scaled by fp16 super-block factors. Layouts and reference
// quantizers match llama.cpp's ggml-common.h and ggml-quants.c byte for byte (checked by
// tests/engine/test_formats.cc against llama-quantize output). Q8_K is not a weight format: it is
// the activation format of the k-quant dot products (float scale, per-16 sums of the quants).
//
// Value order inside a super-block: the "interleaved by 32" layouts below are described per
// struct; the dequantizers are the executable definition.
#pragma once

#include <cstdint>

namespace qbench {

inline constexpr int kQK_K = 256;
inline constexpr int kKScaleSize = 12;  // packed 6-bit scales and mins of Q3_K/Q4_K/Q5_K

// 2.625 bits per weight. 16 sub-blocks of 16: x = d*sc_j*q - dmin*m_j, q in [0, 3],
// sc_j = scales[j] & 15, m_j = scales[j] >> 4. qs[32*h + l] holds values 128*h + l + 32*s in
// bits 2s..2s+1 (s = 0..3).
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];  // 4-bit scale (low) and 4-bit min (high) per sub-block
  uint8_t qs[kQK_K / 4];       // 2-bit quants
  uint16_t d;                  // fp16 super-block scale of the scales
  uint16_t dmin;               // fp16 super-block scale of the mins
};
static_assert(sizeof(BlockQ2_K) == kQK_K / 16 + kQK_K / 4 + 4);

// 3.4375 bits per weight. 16 sub-blocks of 16: x = d * (sc_j - 32) * (q - 4), q in [0, 7];
// low 2 bits of q as in Q2_K's qs, bit 2 of value v in bit v/32 of hmask[v % 32]; sc_j is
// 6 bits: low 4 in nibble (j/8) of scales[j % 8], high 2 in bits 2*(j/4).. of scales[8 + j%4].
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];     // high bit of each quant
  uint8_t qs[kQK_K / 4];        // low 2 bits of each quant
  uint8_t scales[kKScaleSize];  // 16 x 6-bit scales, offset by 32
  uint16_t d;                   // fp16 super-block scale
};
static_assert(sizeof(BlockQ3_K) == kQK_K / 8 + kQK_K / 4 + 12 + 2);

// 4.5 bits per weight. 8 sub-blocks of 32: x = d*sc_j*q - dmin*m_j, q in [0, 15]; sc_j, m_j are
// 6 bits packed in `scales` (see get_scale_min_k4 in k_quants.cc). qs[32*p + l] holds value
// 64*p + l (low nibble) and 64*p + 32 + l (high nibble).
struct BlockQ4_K {
  uint16_t d;                   // fp16 super-block scale of the scales
  uint16_t dmin;                // fp16 super-block scale of the mins
  uint8_t scales[kKScaleSize];  // 8 x (6-bit scale, 6-bit min)
  uint8_t qs[kQK_K / 2];        // 4-bit quants
};
static_assert(sizeof(BlockQ4_K) == 4 + 12 + kQK_K / 2);

// 5.5 bits per weight. As Q4_K with q in [0, 31]; bit 4 of value 64*p + l is bit 2p of qh[l],
// of value 64*p + 32 + l bit 2p+1 of qh[l].
struct BlockQ5_K {
  uint16_t d;                   // fp16 super-block scale of the scales
  uint16_t dmin;                // fp16 super-block scale of the mins
  uint8_t scales[kKScaleSize];  // 8 x (6-bit scale, 6-bit min)
  uint8_t qh[kQK_K / 8];        // high bit of each quant
  uint8_t qs[kQK_K / 2];        // low 4 bits of each quant
};
static_assert(sizeof(BlockQ5_K) == 4 + 12 + kQK_K / 8 + kQK_K / 2);

// 6.5625 bits per weight. 16 sub-blocks of 16: x = d * scales[j] * (q - 32), q in [0, 63].
// In each half h (128 values): ql[64h + l] holds values 128h + l (low nibble), 128h + 64 + l
// (high); ql[64h + 32 + l] values 128h + 32 + l, 128h + 96 + l; qh[32h + l] bits 2s..2s+1 are
// the high 2 bits of value 128h + 32s + l.
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];       // low 4 bits of each quant
  uint8_t qh[kQK_K / 4];       // high 2 bits of each quant
  int8_t scales[kQK_K / 16];   // 8-bit signed sub-block scales
  uint16_t d;                  // fp16 super-block scale
};
static_assert(sizeof(BlockQ6_K) == kQK_K / 2 + kQK_K / 4 + kQK_K / 16 + 2);

// 9.125 bits per value (activations). x = d * qs[i], qs in [-128, 127]; bsums[j] = sum of
// qs[16j .. 16j+15], used by the k-quant dot products to apply the minimums.
struct BlockQ8_K {
  float d;                       // fp32 scale
  int8_t qs[kQK_K];              // quants
  int16_t bsums[kQK_K / 16];     // sums of quants in groups of 16
};
static_assert(sizeof(BlockQ8_K) == 4 + kQK_K + kQK_K / 16 * 2);

// Reference quantizers (llama.cpp's quantize_row_*_ref, i.e. llama-quantize without an
// importance matrix) and dequantizers. `n` is a multiple of 256.
void quantize_row_q2_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q3_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q4_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q5_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q6_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q8_K_ref(const float* x, void* y, int64_t n);

// Importance-weighted quantizers: llama.cpp's quantize_row_*_impl with quant_weights, i.e. what
// llama-quantize writes with an importance matrix. `x` is one row of `n` values (a multiple of
// 256) and `qw` its n non-negative importances (the imatrix entry of each column: mean x_j^2 of
// the input). Same block layout as the reference quantizers; the scale search differs (weights
// imatrix_j * sqrt(sigma2 + x_j^2), make_qkx2_quants / make_qp_quants / weighted make_qx_quants),
// so the bytes differ from the reference ones even for equal importances.
void quantize_row_q2_K_weighted(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_q3_K_weighted(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_q4_K_weighted(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_q5_K_weighted(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_q6_K_weighted(const float* x, void* y, int64_t n, const float* qw);

void dequantize_row_q2_K(const uint8_t* src, float* y, int64_t n);
void dequantize_row_q3_K(const uint8_t* src, float* y, int64_t n);
void dequantize_row_q4_K(const uint8_t* src, float* y, int64_t n);
void dequantize_row_q5_K(const uint8_t* src, float* y, int64_t n);
void dequantize_row_q6_K(const uint8_t* src, float* y, int64_t n);
void dequantize_row_q8_K(const uint8_t* src, float* y, int64_t n);

}  // namespace qbench
