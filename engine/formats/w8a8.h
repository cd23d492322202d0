// W8A8: 8-bit weights and 8-bit activations, the storage of SmoothQuant (Xiao et al. 2023) and of
// plain per-channel W8A8 (docs/formats.md):
//
// W8A8_INT8 (weights, one row = one output channel):
//   | fp32 d (row header) | n int8 q |       w = d * q,  q in [-127, 127]
//   d = max|row| / 127, q = round_half_away(w / d) (clamped); an all-zero row stores d = 0.
//   8 bits per weight plus 32 per row.
// Q8_T (activations, one row = one token; written by the kernels, never stored in a file):
//   the same bytes and the same rule, computed per token at run time (dynamic per-token scale).
//
// The kernel (engine/kernels/quant_dot.h) computes the exact int32 sum of q_w * q_a over the
// whole row, then y = (d_w * d_a) * isum: the int32 sum cannot overflow while
// n * 127 * 127 < 2^31, i.e. for rows of up to kW8A8MaxCols values.
#pragma once

#include <cstdint>

namespace qbench {

inline constexpr int kW8A8RowHeaderBytes = 4;  // fp32 scale
inline constexpr int64_t kW8A8MaxCols = (int64_t(1) << 31) / (127 * 127) - 1;  // 133142

// Packs `n` values with the scale d: header d, then q = clamp(round_half_away(x / d), -127, 127)
// (division, not a multiplication by 1/d, whose reciprocal may overflow for a subnormal d);
// d <= 0 writes zeros. Shared by the weight format and the Q8_T activation quantizer.
void pack_row_w8a8(const float* x, int64_t n, float d, uint8_t* dst);
// d = max|x| / 127, then pack_row_w8a8.
void quantize_row_w8a8_int8(const float* x, void* y, int64_t n);
void dequantize_row_w8a8_int8(const uint8_t* src, float* y, int64_t n);

}  // namespace qbench
