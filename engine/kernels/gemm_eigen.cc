#include "engine/kernels/gemm_eigen.h"

#include "engine/core/error.h"
// Baseline flags here: Eigen keeps its own namespace, shared with the other baseline users
// (train/, quantizers/gptq.cc, ...), whose instantiations are compiled with the same flags.
#include "engine/kernels/gemm_eigen-inl.h"

namespace qbench {

void gemm_xwt(CpuIsa isa, const float* x, int64_t n_tok, int64_t cols, const float* w,
              int64_t n_rows, float* y, int64_t ldy) {
  switch (isa) {
    case CpuIsa::Avx512: gemm_xwt_avx512(x, n_tok, cols, w, n_rows, y, ldy); return;
    case CpuIsa::Avx2: gemm_xwt_avx2(x, n_tok, cols, w, n_rows, y, ldy); return;
    case CpuIsa::Scalar: gemm_xwt_eigen(x, n_tok, cols, w, n_rows, y, ldy); return;
  }
  QB_ASSERT(!"unknown CpuIsa");
}

void gram_add(CpuIsa isa, const float* x, int64_t n, int64_t cols, double* h) {
  switch (isa) {
    case CpuIsa::Avx512: gram_add_avx512(x, n, cols, h); return;
    case CpuIsa::Avx2: gram_add_avx2(x, n, cols, h); return;
    case CpuIsa::Scalar: gram_add_eigen(x, n, cols, h); return;
  }
  QB_ASSERT(!"unknown CpuIsa");
}

}  // namespace qbench
