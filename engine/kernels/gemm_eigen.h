// The float product of the dequantize path (matmul.cc), y = x w^T on row-major operands:
//   y[t * ldy + r] = sum_{k < cols} x[t * cols + k] * w[r * cols + k]    (t < n_tok, r < n_rows)
// by Eigen's blocked GEMM/GEMV, compiled once per instruction set: gemm_eigen.cc (the build's
// baseline), gemm_eigen_avx2.cc and gemm_eigen_avx512.cc (their own flags, engine/CMakeLists.txt).
// Without this a portable build would run Eigen on SSE2 only (measured: docs/kernels.md).
#pragma once

#include <cstdint>

#include "engine/kernels/kernel_options.h"

namespace qbench {

// `isa` must be available on this CPU (isa_available); Scalar is the baseline build of Eigen.
void gemm_xwt(CpuIsa isa, const float* x, int64_t n_tok, int64_t cols, const float* w,
              int64_t n_rows, float* y, int64_t ldy);

// h[i * cols + j] += sum_{t < n} x[t * cols + i] * x[t * cols + j] in double (the input Gram
// matrix XᵀX of calibration, quantizers/calibration.cc), by Eigen's GEMM on `isa`. The sum order
// is fixed for a given isa (results are the same for any thread count, not across ISAs).
void gram_add(CpuIsa isa, const float* x, int64_t n, int64_t cols, double* h);

// The per-ISA units' entry points (called by gemm_xwt and gram_add only).
void gram_add_avx2(const float* x, int64_t n, int64_t cols, double* h);
void gram_add_avx512(const float* x, int64_t n, int64_t cols, double* h);
void gemm_xwt_avx2(const float* x, int64_t n_tok, int64_t cols, const float* w, int64_t n_rows,
                   float* y, int64_t ldy);
void gemm_xwt_avx512(const float* x, int64_t n_tok, int64_t cols, const float* w, int64_t n_rows,
                     float* y, int64_t ldy);

}  // namespace qbench
