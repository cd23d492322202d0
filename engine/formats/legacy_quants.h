// ggml's "legacy" block formats: 32 values per block, one fp16 scale (and for the _1 types an
// fp16 minimum) per block. Layouts and reference quantizers match llama.cpp's ggml-common.h and
// ggml-quants.c byte for byte; tests/engine/test_formats.cc checks that against files written by
// llama-quantize.
//
// Value j of a block (0 <= j < 32) is stored in nibble (j < 16 ? low : high) of qs[j % 16]; the
// 5-bit types keep bit 4 of value j in bit j of the little-endian uint32 qh.
// fp16 fields are raw IEEE binary16 bits (engine/core/half.h).
#pragma once

#include <cstdint>

namespace qbench {

inline constexpr int kQK4_0 = 32;
inline constexpr int kQK4_1 = 32;
inline constexpr int kQK5_0 = 32;
inline constexpr int kQK5_1 = 32;
inline constexpr int kQK8_0 = 32;

// 4.5 bits per weight. x = d * (q - 8), q in [0, 15]; d = (signed max-magnitude value) / -8.
struct BlockQ4_0 {
  uint16_t d;               // fp16 scale
  uint8_t qs[kQK4_0 / 2];   // 4-bit quants, two per byte
};
static_assert(sizeof(BlockQ4_0) == 2 + kQK4_0 / 2);

// 5 bits per weight. x = d * q + m, q in [0, 15]; m = block minimum, d = (max - min) / 15.
struct BlockQ4_1 {
  uint16_t d;               // fp16 scale
  uint16_t m;               // fp16 minimum
  uint8_t qs[kQK4_1 / 2];   // 4-bit quants
};
static_assert(sizeof(BlockQ4_1) == 4 + kQK4_1 / 2);

// 5.5 bits per weight. x = d * (q - 16), q in [0, 31]; d = (signed max-magnitude value) / -16.
struct BlockQ5_0 {
  uint16_t d;               // fp16 scale
  uint8_t qh[4];            // bit 4 of each quant (uint32, little-endian)
  uint8_t qs[kQK5_0 / 2];   // low 4 bits of each quant
};
static_assert(sizeof(BlockQ5_0) == 2 + 4 + kQK5_0 / 2);

// 6 bits per weight. x = d * q + m, q in [0, 31]; m = block minimum, d = (max - min) / 31.
struct BlockQ5_1 {
  uint16_t d;               // fp16 scale
  uint16_t m;               // fp16 minimum
  uint8_t qh[4];            // bit 4 of each quant (uint32, little-endian)
  uint8_t qs[kQK5_1 / 2];   // low 4 bits of each quant
};
static_assert(sizeof(BlockQ5_1) == 4 + 4 + kQK5_1 / 2);

// 8.5 bits per weight. x = d * q, q in [-127, 127]; d = max|x| / 127.
struct BlockQ8_0 {
  uint16_t d;               // fp16 scale
  int8_t qs[kQK8_0];        // quants
};
static_assert(sizeof(BlockQ8_0) == 2 + kQK8_0);

// Reference quantizers (llama.cpp's quantize_row_*_ref) and dequantizers. `n` is a multiple of
// 32; `y` receives n / 32 blocks.
void quantize_row_q4_0_ref(const float* x, void* y, int64_t n);
void quantize_row_q4_1_ref(const float* x, void* y, int64_t n);
void quantize_row_q5_0_ref(const float* x, void* y, int64_t n);
void quantize_row_q5_1_ref(const float* x, void* y, int64_t n);
void quantize_row_q8_0_ref(const float* x, void* y, int64_t n);

// Importance-weighted quantizers (llama.cpp's quantize_row_*_impl with quant_weights, what
// llama-quantize writes with an importance matrix): `x` is one whole row of `n` values (sigma2 is
// its mean square), `qw` its n non-negative importances. Q8_0 has none: llama.cpp ignores an
// imatrix for it.
void quantize_row_q4_0_weighted(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_q4_1_weighted(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_q5_0_weighted(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_q5_1_weighted(const float* x, void* y, int64_t n, const float* qw);

void dequantize_row_q4_0(const uint8_t* src, float* y, int64_t n);
void dequantize_row_q4_1(const uint8_t* src, float* y, int64_t n);
void dequantize_row_q5_0(const uint8_t* src, float* y, int64_t n);
void dequantize_row_q5_1(const uint8_t* src, float* y, int64_t n);
void dequantize_row_q8_0(const uint8_t* src, float* y, int64_t n);

}  // namespace qbench
