// Matrix products of activations with stored weights.
//
// y[t, o] = sum_i W[o, i] * x[t, i]   for t < n_tokens, o < W.rows
// x is row-major [n_tokens x W.cols], y row-major [n_tokens x W.rows], both FP32.
//
// Work is split over fixed chunks of output rows (kRowChunk, independent of the thread count)
// and each chunk is one Eigen product with a fixed reduction order, so the result is the same
// bit for bit for any number of threads. F32 weights are used in place; other formats with a
// dequantize function are expanded chunk by chunk into a per-call scratch tile, never to a full
// FP32 copy of the matrix.
#pragma once

#include <cstdint>

#include "engine/model/model.h"

namespace qbench {

void matmul(const Matrix& w, const float* x, int64_t n_tokens, float* y);

// Looks up row `r` of `w` (e.g. a token embedding) as FP32 into dst[0..w.cols).
void matrix_row(const Matrix& w, int64_t r, float* dst);

}  // namespace qbench
