// Quantized dot-product kernels (engine/kernels/quant_dot.h): every ISA path against the scalar
// reference, the reference against an exact oracle, on random shapes with ragged row counts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "engine/formats/types.h"
#include "engine/kernels/matmul.h"
#include "engine/kernels/quant_dot.h"

namespace qbench {
namespace {

struct Problem {
  std::vector<uint8_t> packed;  // weights
  Matrix w;
  std::vector<float> x;         // activations [n_tokens x cols]
  int64_t n_tokens;
};

Problem make_problem(TensorType type, int64_t rows, int64_t cols, int64_t n_tokens, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> wf(size_t(rows * cols));
  for (float& v : wf) v = 0.02f * dist(rng);
  Problem p;
  const TypeTraits& t = type_traits(type);
  p.packed.resize(row_bytes(t, cols) * size_t(rows));
  quantize_rows(t, wf.data(), rows, cols, p.packed.data(), "test weights");
  p.w = Matrix{type, rows, cols, p.packed.data()};
  p.x.resize(size_t(n_tokens * cols));
  for (float& v : p.x) v = dist(rng);
  p.n_tokens = n_tokens;
  return p;
}

std::vector<float> run(const Problem& p, const QuantDotKernel& k) {
  const TypeTraits& at = type_traits(k.activation_type);
  std::vector<uint8_t> scratch(row_bytes(at, p.w.cols) * size_t(p.n_tokens));
  std::vector<float> y(size_t(p.n_tokens * p.w.rows));
  matmul_quant_dot(p.w, p.x.data(), p.n_tokens, y.data(), scratch, k);
  return y;
}

// Exact value of what the kernels compute: dequantized weights times dequantized quantized
// activations, summed in double; plus sum |w||a| to scale the float-rounding bound.
void oracle(const Problem& p, TensorType act, std::vector<double>* y, std::vector<double>* mag) {
  const TypeTraits& wt = p.w.traits();
  const TypeTraits& at = type_traits(act);
  const int64_t cols = p.w.cols;
  std::vector<float> wrow(static_cast<size_t>(cols)), arow(static_cast<size_t>(cols));
  std::vector<uint8_t> abuf(row_bytes(at, cols));
  y->assign(size_t(p.n_tokens * p.w.rows), 0.0);
  mag->assign(y->size(), 0.0);
  for (int64_t t = 0; t < p.n_tokens; ++t) {
    at.quantize_row(p.x.data() + t * cols, abuf.data(), cols);
    at.dequantize_row(abuf.data(), arow.data(), cols);
    for (int64_t r = 0; r < p.w.rows; ++r) {
      wt.dequantize_row(p.w.row(r), wrow.data(), cols);
      double s = 0, m = 0;
      for (int64_t i = 0; i < cols; ++i) {
        s += double(wrow[size_t(i)]) * arow[size_t(i)];
        m += std::fabs(double(wrow[size_t(i)]) * arow[size_t(i)]);
      }
      (*y)[size_t(t * p.w.rows + r)] = s;
      (*mag)[size_t(t * p.w.rows + r)] = m;
    }
  }
}

class FormatsQuantDotTest : public ::testing::TestWithParam<TensorType> {};

TEST_P(FormatsQuantDotTest, EveryPathMatchesReference) {
  const TensorType type = GetParam();
  const QuantDotKernel* ref = find_quant_dot(type, CpuIsa::Scalar);
  ASSERT_NE(ref, nullptr);
  int paths_checked = 0;
  uint32_t seed = 1;
  for (int64_t cols : {32, 64, 96, 160, 4128}) {
    for (int64_t rows : {1, 3, 17, 33, 130}) {
      for (int64_t n_tokens : {1, 2, 7}) {
        SCOPED_TRACE("rows " + std::to_string(rows) + " cols " + std::to_string(cols) + " tokens " +
                     std::to_string(n_tokens));
        const Problem p = make_problem(type, rows, cols, n_tokens, seed++);
        std::vector<double> exact, mag;
        oracle(p, ref->activation_type, &exact, &mag);
        const std::vector<float> y_ref = run(p, *ref);
        // Block sums are exact integers; only the float accumulation over blocks rounds.
        const double eps = 4 * double(cols / 32 + 2) * 6e-8;
        for (size_t i = 0; i < y_ref.size(); ++i) {
          ASSERT_NEAR(y_ref[i], exact[i], eps * mag[i] + 1e-30) << "scalar, output " << i;
        }
        for (CpuIsa isa : {CpuIsa::Avx2, CpuIsa::Avx512}) {
          const QuantDotKernel* k = find_quant_dot(type, isa);
          if (k == nullptr) continue;
          const std::vector<float> y = run(p, *k);
          for (size_t i = 0; i < y.size(); ++i) {
            ASSERT_NEAR(y[i], y_ref[i], 2 * eps * mag[i] + 1e-30) << isa_name(isa) << ", output " << i;
          }
          ++paths_checked;
        }
      }
    }
  }
  if (isa_available(CpuIsa::Avx2)) {
    EXPECT_GT(paths_checked, 0);
  }
  std::printf("[          ] %s: %d SIMD comparisons; default path %s\n",
              std::string(type_traits(type).name).c_str(), paths_checked,
              std::string(isa_name(default_isa())).c_str());
}

TEST_P(FormatsQuantDotTest, CloseToDequantizedMatmul) {
  // Quantizing activations to 8 bits costs about 0.5% relative error on the outputs.
  const Problem p = make_problem(GetParam(), 64, 512, 3, 99);
  const std::vector<float> y = run(p, *find_quant_dot(GetParam(), default_isa()));
  std::vector<float> y_deq(y.size());
  matmul(p.w, p.x.data(), p.n_tokens, y_deq.data());
  double err = 0, ref = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    err += (double(y[i]) - y_deq[i]) * (double(y[i]) - y_deq[i]);
    ref += double(y_deq[i]) * y_deq[i];
  }
  EXPECT_LT(std::sqrt(err / ref), 0.02);
  EXPECT_GT(std::sqrt(err / ref), 0.0);  // activations really were quantized
}

INSTANTIATE_TEST_SUITE_P(Formats, FormatsQuantDotTest, ::testing::Values(TensorType::Q4_0, TensorType::Q8_0),
                         [](const auto& info) { return std::string(type_traits(info.param).name); });

TEST(FormatsQuantDot, DefaultIsaFollowsEnvironment) {
  const char* force = std::getenv("QBENCH_FORCE_SCALAR");
  if (force != nullptr && std::string(force) == "1") {
    EXPECT_EQ(default_isa(), CpuIsa::Scalar);
  } else if (isa_available(CpuIsa::Avx512)) {
    EXPECT_EQ(default_isa(), CpuIsa::Avx512);
  } else if (isa_available(CpuIsa::Avx2)) {
    EXPECT_EQ(default_isa(), CpuIsa::Avx2);
  } else {
    EXPECT_EQ(default_isa(), CpuIsa::Scalar);
  }
}

TEST(FormatsQuantDot, ForceScalarInChildProcess) {
  if (std::getenv("QBENCH_FORCE_SCALAR") != nullptr) GTEST_SKIP() << "already forced";
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const std::string cmd = "QBENCH_FORCE_SCALAR=1 '" + self +
                          "' --gtest_filter=FormatsQuantDot.DefaultIsaFollowsEnvironment > /dev/null 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
}

TEST(FormatsQuantDot, NoKernelForOtherTypes) {
  EXPECT_EQ(find_quant_dot(TensorType::F32, CpuIsa::Scalar), nullptr);
  EXPECT_EQ(find_quant_dot(TensorType::Q4_K, CpuIsa::Scalar), nullptr);
}

}  // namespace
}  // namespace qbench
