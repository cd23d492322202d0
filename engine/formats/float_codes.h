// qbench's code-book formats (docs/formats.md):
//
// NF4 (TensorType::NF4): bitsandbytes' 4-bit NormalFloat. Blocks of 64 values:
//   | fp16 absmax | 32 bytes: value 2i in the HIGH nibble of byte i, value 2i+1 in the low |
//   x = absmax * kNf4Codes[code]; 34 bytes per 64 values = 4.25 bits per weight.
//   (bitsandbytes keeps absmax in fp32, 4.5 bits per weight; qbench stores it as fp16.)
//
// FP8 E4M3 (TensorType::FP8_E4M3): OCP 8-bit floating point, E4M3 variant (sign, 4 exponent
// bits with bias 7, 3 mantissa bits; no infinities, S.1111.111 is NaN, largest finite 448),
// one scale per row:
//   | fp32 scale s (row header) | one E4M3 byte per value |        x = s * e4m3(code)
//   s = max|row| / 448, so the largest magnitude maps to 448. The scale is fp32, not fp16:
//   max|w|/448 for typical weights (~1e-2) falls in fp16's subnormal range and would lose
//   precision. 8 bits per weight plus 32 per row.
#pragma once

#include <cstdint>

namespace qbench {

inline constexpr int kQKNf4 = 64;

// The 16 NF4 levels, exactly as in bitsandbytes (functional.py / csrc) and the QLoRA paper's
// Appendix E.
inline constexpr float kNf4Codes[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

// 4.25 bits per weight.
struct BlockNf4 {
  uint16_t absmax;            // fp16 max |x| of the block
  uint8_t qs[kQKNf4 / 2];     // code of value 2i in qs[i] >> 4, of value 2i+1 in qs[i] & 15
};
static_assert(sizeof(BlockNf4) == 2 + kQKNf4 / 2);

inline constexpr float kE4M3Max = 448.0f;
inline constexpr int kFp8RowHeaderBytes = 4;  // fp32 scale

// Index of the code-book entry nearest to v (v in [-1, 1]), exactly as bitsandbytes'
// dQuantizeNF4 decides it (its thresholds; a value on a threshold goes to the lower code).
int nf4_nearest(float v);
float e4m3_to_fp32(uint8_t code);
// Round to nearest, ties to even mantissa; saturates to +-448 (there is no infinity); NaN
// must not be passed.
uint8_t fp32_to_e4m3(float x);

void quantize_row_nf4(const float* x, void* y, int64_t n);
void dequantize_row_nf4(const uint8_t* src, float* y, int64_t n);
// `n` values with the row's scale header first.
void quantize_row_fp8_e4m3(const float* x, void* y, int64_t n);
void dequantize_row_fp8_e4m3(const uint8_t* src, float* y, int64_t n);
// Packs a row with a given scale (e.g. clipped or per-tensor); scale 0 writes zeros.
void pack_row_fp8_e4m3(const float* x, int64_t n, float scale, uint8_t* dst);

}  // namespace qbench
