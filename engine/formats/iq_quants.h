// llama.cpp's non-linear 4-bit types (ggml's "i-quants" with a 16-value code book):
//
//   iq4_nl: blocks of 32: | fp16 d | 16 bytes of 4-bit indices |            x = d * kIq4nlValues[i]
//   iq4_xs: super-blocks of 256: | fp16 d | u16 scales_h | 4 x u8 scales_l | 128 bytes of indices |
//           8 sub-blocks of 32, each with a 6-bit scale ls (low 4 bits in scales_l, high 2 in
//           scales_h): x = d * (ls - 32) * kIq4nlValues[i]
// Indices of a 32-value (sub-)block: byte j holds value j (low nibble) and value j + 16 (high).
//
// Quantization (own code of llama.cpp's quantize_row_iq4_nl_impl, 7 trial scales either side of
// max / -127): per 32 values the scale minimising sum w (x - d q)^2 with weights w = x^2, or
// imatrix * sqrt(sigma^2 + x^2) with an importance matrix (sigma^2 = 2 sum x^2 / n of the block or
// super-block); iq4_xs then rounds the 8 sub-block scales to 6 bits of d = -max_scale / 32. The
// same float expressions in the same order as ggml-quants.c, so the bytes are llama-quantize's
// (tests/engine/test_formats.cc, on the shared kquant-test files made with and without an
// imatrix). Compiled with -ffp-contract=off (engine/CMakeLists.txt). One departure: a block whose
// weights are all zero (a zero imatrix entry) gets equal weights, where ggml would store a NaN scale.
#pragma once

#include <cstdint>

namespace qbench {

// The code book of iq4_nl and iq4_xs (ggml's kvalues_iq4nl).
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

void quantize_row_iq4_nl_ref(const float* x, void* y, int64_t n);
// What ggml's CPU backend writes when it converts FP32 to iq4_nl at run time (its from_float,
// quantize_row_iq4_nl_ref: no trial scales, the first scale's sign flipped), e.g. into an iq4_nl
// KV cache. Not llama-quantize's bytes (quantize_row_iq4_nl_ref above is those).
void quantize_row_iq4_nl_from_float(const float* x, void* y, int64_t n);
void quantize_row_iq4_nl_weighted(const float* x, void* y, int64_t n, const float* qw);
void dequantize_row_iq4_nl(const uint8_t* src, float* y, int64_t n);

void quantize_row_iq4_xs_ref(const float* x, void* y, int64_t n);
void quantize_row_iq4_xs_weighted(const float* x, void* y, int64_t n, const float* qw);
void dequantize_row_iq4_xs(const uint8_t* src, float* y, int64_t n);

}  // namespace qbench
