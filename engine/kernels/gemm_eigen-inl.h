// Body of gemm_xwt (gemm_eigen.h), included once by each per-ISA unit. Eigen is header-only
// templates: compiled in two units with different flags, each instantiation is a weak symbol
// the linker keeps once, and an AVX-512 copy could end up called from baseline code. So a unit
// compiled with extra instruction sets renames Eigen's namespace before including this file
// (`#define Eigen qbench_eigen_avx2`), giving its instantiations names of their own
// (tests/check_portable.sh verifies that no symbol is shared). No include guard: one use per unit.
#include <Eigen/Core>

#include <cstdint>

namespace qbench {
namespace {

void gemm_xwt_eigen(const float* x, int64_t n_tok, int64_t cols, const float* w, int64_t n_rows,
                    float* y, int64_t ldy) {
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Map<const RowMajor> X(x, n_tok, cols);
  const Eigen::Map<const RowMajor> W(w, n_rows, cols);
  Eigen::Map<RowMajor, 0, Eigen::OuterStride<>> Y(y, n_tok, n_rows, Eigen::OuterStride<>(ldy));
  Y.noalias() = X * W.transpose();
}

void gram_add_eigen(const float* x, int64_t n, int64_t cols, double* h) {
  using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const MatD X = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(x, n, cols)
                     .cast<double>();
  Eigen::Map<MatD> H(h, cols, cols);
  H.noalias() += X.transpose() * X;  // one Eigen product per call: a fixed reduction order per ISA
}

}  // namespace
}  // namespace qbench
