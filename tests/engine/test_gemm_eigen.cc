// gemm_xwt (engine/kernels/gemm_eigen.h): the Eigen product of the dequantize path, compiled once
// per instruction set, against a double-precision reference on every path this CPU has, and the
// dequantize path of matmul() on each forced path.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/formats/types.h"
#include "engine/kernels/gemm_eigen.h"
#include "engine/kernels/matmul.h"
#include "engine/kernels/quant_dot.h"

namespace qbench {
namespace {

std::vector<float> gaussian(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& f : v) f = d(rng);
  return v;
}

TEST(GemmEigen, EveryPathMatchesADoubleReference) {
  // Odd sizes (not multiples of any packet) and a strided output, GEMV (1 token) and GEMM.
  for (const int64_t n_tok : {1, 3, 37}) {
    const int64_t cols = 131, n_rows = 70, ldy = 75;
    const auto x = gaussian(size_t(n_tok * cols), 1), w = gaussian(size_t(n_rows * cols), 2);
    std::vector<double> want(size_t(n_tok * n_rows));
    for (int64_t t = 0; t < n_tok; ++t)
      for (int64_t r = 0; r < n_rows; ++r) {
        double s = 0;
        for (int64_t k = 0; k < cols; ++k) s += double(x[size_t(t * cols + k)]) * w[size_t(r * cols + k)];
        want[size_t(t * n_rows + r)] = s;
      }
    for (CpuIsa isa : kAllIsas) {
      if (!isa_available(isa)) continue;
      std::vector<float> y(size_t(n_tok * ldy), -7.0f);
      gemm_xwt(isa, x.data(), n_tok, cols, w.data(), n_rows, y.data(), ldy);
      for (int64_t t = 0; t < n_tok; ++t) {
        for (int64_t r = 0; r < ldy; ++r) {
          const float got = y[size_t(t * ldy + r)];
          if (r >= n_rows) {
            ASSERT_EQ(got, -7.0f) << "wrote past the rows, " << isa_name(isa);
          } else {
            ASSERT_NEAR(got, want[size_t(t * n_rows + r)], 1e-4 * std::sqrt(double(cols)))
                << isa_name(isa) << " t=" << t << " r=" << r;
          }
        }
      }
    }
  }
}

TEST(GemmEigen, DequantizePathOnEveryForcedIsaAgrees) {
  const int64_t rows = 96, cols = 256, n_tok = 9;
  const auto wf = gaussian(size_t(rows * cols), 3), x = gaussian(size_t(n_tok * cols), 4);
  for (TensorType type : {TensorType::F32, TensorType::F16, TensorType::Q4_0}) {
    const TypeTraits& tr = type_traits(type);
    std::vector<uint8_t> bytes(size_t(rows) * row_bytes(tr, cols));
    quantize_rows(tr, wf.data(), rows, cols, bytes.data(), "w");
    const Matrix m{type, rows, cols, bytes.data()};
    std::vector<float> base;
    for (CpuIsa isa : kAllIsas) {
      if (!isa_available(isa)) continue;
      MatmulOptions opt;
      opt.path = MatmulPath::Dequantize;
      opt.isa = isa;
      std::vector<float> y(size_t(n_tok * rows));
      matmul(m, x.data(), n_tok, y.data(), {}, opt);
      if (base.empty()) {
        base = y;
        continue;
      }
      for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], base[i], 1e-3) << tr.name << " " << isa_name(isa);
    }
  }
}

}  // namespace
}  // namespace qbench
