// gemm_xwt for CPUs with AVX512 (flags: engine/CMakeLists.txt), entered only through gemm_xwt
// after the run-time CPU check. Eigen gets a name of its own here: see gemm_eigen-inl.h.
#define Eigen qbench_eigen_avx512
#include "engine/kernels/gemm_eigen-inl.h"
#undef Eigen

#include "engine/kernels/gemm_eigen.h"

namespace qbench {

void gemm_xwt_avx512(const float* x, int64_t n_tok, int64_t cols, const float* w, int64_t n_rows,
                   float* y, int64_t ldy) {
  gemm_xwt_eigen(x, n_tok, cols, w, n_rows, y, ldy);
}

void gram_add_avx512(const float* x, int64_t n, int64_t cols, double* h) { gram_add_eigen(x, n, cols, h); }

}  // namespace qbench
