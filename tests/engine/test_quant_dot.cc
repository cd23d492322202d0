// Dot-product kernels (engine/kernels/quant_dot.h) and the matmul dispatch over them
// (engine/kernels/matmul.h): every ISA path against the scalar reference, the reference against
// a float oracle, the kernel path against the dequantize + Eigen path, on random shapes with
// ragged row counts and token counts 1, 3, 17, 64.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/half.h"
#include "engine/formats/int_quants.h"
#include "engine/formats/k_quants.h"
#include "engine/formats/legacy_quants.h"
#include "engine/formats/types.h"
#include "engine/formats/w8a8.h"
#include "engine/kernels/matmul.h"
#include "engine/kernels/quant_dot.h"
#include "engine/kernels/quant_gemm.h"

namespace qbench {
namespace {

constexpr double kFloatEps = 5.96e-8;  // 2^-24, unit roundoff of float

struct Problem {
  std::vector<uint8_t> packed;  // weights
  Matrix w;
  std::vector<float> x;  // activations [n_tokens x cols]
  int64_t n_tokens;
};

// Weights ~ N(0, 0.02^2) quantized with the format's reference quantizer (a stored float format
// for f32/f16/bf16); activations ~ N(0, 1) with a few outliers, as in real hidden states.
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
  for (size_t i = 0; i < p.x.size(); i += 97) p.x[i] *= 20.0f;
  p.n_tokens = n_tokens;
  return p;
}

std::vector<uint8_t> quantize_activations(const Problem& p, TensorType act) {
  const size_t a_row = activation_row_bytes(act, p.w.cols);
  std::vector<uint8_t> a(a_row * size_t(p.n_tokens));
  for (int64_t t = 0; t < p.n_tokens; ++t) {
    quantize_activation_row(act, p.x.data() + t * p.w.cols, a.data() + size_t(t) * a_row, p.w.cols);
  }
  return a;
}

// Calls the kernel directly over all rows, cycling through token tiles of 1..kMaxTokenTile (or
// a fixed tile when `tile` > 0), so every tile size is exercised.
std::vector<float> run_kernel(const Problem& p, const QuantDotKernel& k, int tile = 0) {
  const std::vector<uint8_t> a = quantize_activations(p, k.activation_type);
  const size_t a_row = activation_row_bytes(k.activation_type, p.w.cols);
  std::vector<float> y(size_t(p.n_tokens * p.w.rows), NAN);
  int next = 0;
  for (int64_t t0 = 0; t0 < p.n_tokens;) {
    const int want = tile > 0 ? tile : (next++ % kMaxTokenTile) + 1;
    const int nt = int(std::min<int64_t>(want, p.n_tokens - t0));
    for (int64_t r = 0; r < p.w.rows; ++r) {
      k.dot(p.w.cols, p.w.row(r), a.data() + size_t(t0) * a_row, a_row, nt, y.data() + t0 * p.w.rows + r,
            size_t(p.w.rows));
    }
    t0 += nt;
  }
  return y;
}

bool is_k_quant(TensorType t) { return type_traits(t).block_size == 256; }
// Kernels on FP32 activations (f32/f16/bf16, nf4, fp8): float sums, used for decode only.
bool is_float(TensorType t) { return find_quant_dot(t, CpuIsa::Scalar)->activation_type == TensorType::F32; }

// Bound on float rounding relative to sum |w||a|. A block's float update rounds a few times
// (relative 2^-24 each) and the running sum over n/block blocks adds one rounding per block;
// the k-quants split a block into d*S1 - dmin*S2, whose parts can each be several times the
// block's |w||a| (the minimum cancels most of the scaled quants), hence the factor 16.
double rounding_bound(TensorType t, int64_t cols) {
  const int64_t bs = type_traits(t).block_size;
  // W8A8 on Q8_T: one exact integer sum per row, then float(isum) and two products.
  if (find_quant_dot(t, CpuIsa::Scalar)->activation_type == TensorType::Q8_T) return 4.0 * (1 + 4) * kFloatEps;
  // One float update per weight block, and at least one per 32-value activation block.
  const double n_updates = double(cols / std::min<int64_t>(bs, is_k_quant(t) ? bs : 32) + 4);
  if (is_float(t)) return 2.0 * double(cols + 4) * kFloatEps;
  return (is_k_quant(t) ? 16.0 : 4.0) * n_updates * kFloatEps;
}

// Q8_1 stores s = fp16(d * sum q) with the unrounded d, and the kernels apply the minimum of
// q4_1/q5_1 weights as m * s (ggml's semantics), while the dequantized activations are
// fp16(d) * q: the two differ by at most 2^-10 |sum q| d per block (two fp16 roundings).
// Returns sum over blocks of |m| * that bound for one weight row and activation row.
double q8_1_sum_slack(const uint8_t* wrow, const uint8_t* arow, int64_t cols, size_t w_block_bytes) {
  double slack = 0;
  for (int64_t b = 0; b < cols / 32; ++b) {
    BlockQ8_1 q;
    std::memcpy(&q, arow + b * sizeof q, sizeof q);
    uint16_t m;
    std::memcpy(&m, wrow + b * int64_t(w_block_bytes) + 2, 2);  // q4_1 / q5_1: fp16 d, then fp16 m
    int sum = 0;
    for (int j = 0; j < 32; ++j) sum += q.qs[j];
    slack += std::fabs(double(fp16_to_fp32(m))) * std::abs(sum) * double(fp16_to_fp32(q.d)) * 1.001 / 1024;
  }
  return slack;
}

// What the kernels compute, exactly: dequantized weights times the dequantized activation
// quants, summed in double; `mag` = sum |w| |a| scales the float-rounding bound (plus, for Q8_1,
// the slack of its stored sums in the same units, so that eps * mag covers it).
void oracle(const Problem& p, TensorType act, std::vector<double>* y, std::vector<double>* mag) {
  const int64_t cols = p.w.cols;
  std::vector<float> wrow(size_t(cols), 0.0f), arow(size_t(cols), 0.0f);
  const std::vector<uint8_t> a = quantize_activations(p, act);
  const size_t a_row = activation_row_bytes(act, cols);
  y->assign(size_t(p.n_tokens * p.w.rows), 0.0);
  mag->assign(y->size(), 0.0);
  for (int64_t t = 0; t < p.n_tokens; ++t) {
    dequantize_activation_row(act, a.data() + size_t(t) * a_row, arow.data(), cols);
    for (int64_t r = 0; r < p.w.rows; ++r) {
      p.w.traits().dequantize_row(p.w.row(r), wrow.data(), cols);
      double s = 0, m = 0;
      for (int64_t i = 0; i < cols; ++i) {
        s += double(wrow[size_t(i)]) * arow[size_t(i)];
        m += std::fabs(double(wrow[size_t(i)]) * arow[size_t(i)]);
      }
      if (act == TensorType::Q8_1) {
        m += q8_1_sum_slack(p.w.row(r), a.data() + size_t(t) * a_row, cols, p.w.traits().bytes_per_block) /
             rounding_bound(p.w.type, cols);
      }
      (*y)[size_t(t * p.w.rows + r)] = s;
      (*mag)[size_t(t * p.w.rows + r)] = m;
    }
  }
}

struct Shape {
  int64_t rows, cols, n_tokens;
};

std::vector<Shape> shapes_for(TensorType t) {
  const int64_t bs = type_traits(t).block_size;
  const int64_t b = std::max<int64_t>(bs, 32);  // whole activation blocks (qbench's row formats have bs < 32)
  std::vector<Shape> s = {{1, b, 1},  {3, 3 * b, 3},   {17, 5 * b, 17}, {33, 2 * b, 64},
                          {5, 17 * b, 3}, {130, b, 1}, {2, bs == 256 ? 16 * b : 129 * b, 17}};
  // Any row length (float kernels, W8A8 on per-token activations): ragged tails of the SIMD loops.
  if (activation_block_size(find_quant_dot(t, CpuIsa::Scalar)->activation_type) == 1 && bs == 1) {
    for (int64_t cols : {1, 7, 33, 172, 1000}) s.push_back({9, cols, 3});
  }
  return s;
}

class KernelsTest : public ::testing::TestWithParam<TensorType> {};

TEST_P(KernelsTest, ScalarReferenceMatchesFloatOracle) {
  const TensorType type = GetParam();
  const QuantDotKernel* ref = find_quant_dot(type, CpuIsa::Scalar);
  ASSERT_NE(ref, nullptr);
  uint32_t seed = 1;
  for (const Shape& s : shapes_for(type)) {
    SCOPED_TRACE("rows " + std::to_string(s.rows) + " cols " + std::to_string(s.cols) + " tokens " +
                 std::to_string(s.n_tokens));
    const Problem p = make_problem(type, s.rows, s.cols, s.n_tokens, seed++);
    std::vector<double> exact, mag;
    oracle(p, ref->activation_type, &exact, &mag);
    const std::vector<float> y = run_kernel(p, *ref);
    const double eps = rounding_bound(type, s.cols);
    for (size_t i = 0; i < y.size(); ++i) {
      ASSERT_NEAR(y[i], exact[i], eps * mag[i] + 1e-30) << "output " << i;
    }
  }
}

TEST_P(KernelsTest, EveryPathMatchesScalarReference) {
  const TensorType type = GetParam();
  const QuantDotKernel* ref = find_quant_dot(type, CpuIsa::Scalar);
  ASSERT_NE(ref, nullptr);
  int paths_checked = 0;
  uint32_t seed = 100;
  for (const Shape& s : shapes_for(type)) {
    SCOPED_TRACE("rows " + std::to_string(s.rows) + " cols " + std::to_string(s.cols) + " tokens " +
                 std::to_string(s.n_tokens));
    const Problem p = make_problem(type, s.rows, s.cols, s.n_tokens, seed++);
    std::vector<double> exact, mag;
    oracle(p, ref->activation_type, &exact, &mag);
    const std::vector<float> y_ref = run_kernel(p, *ref);
    const double eps = rounding_bound(type, s.cols);
    for (CpuIsa isa : {CpuIsa::Avx2, CpuIsa::Avx512}) {
      const QuantDotKernel* k = find_quant_dot(type, isa);
      if (!isa_available(isa)) {
        EXPECT_EQ(k, nullptr);
        continue;
      }
      ASSERT_NE(k, nullptr) << isa_name(isa);
      EXPECT_EQ(k->activation_type, ref->activation_type);
      const std::vector<float> y = run_kernel(p, *k);
      for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_NEAR(y[i], y_ref[i], 2 * eps * mag[i] + 1e-30) << isa_name(isa) << ", output " << i;
        ASSERT_NEAR(y[i], exact[i], eps * mag[i] + 1e-30) << isa_name(isa) << " vs oracle, output " << i;
      }
      // A token's result does not depend on the tile it was computed in.
      EXPECT_EQ(run_kernel(p, *k, 1), y) << isa_name(isa);
      ++paths_checked;
    }
    EXPECT_EQ(run_kernel(p, *ref, 1), y_ref);
  }
  if (isa_available(CpuIsa::Avx2)) {
    EXPECT_GT(paths_checked, 0);
  }
}

// The kernel path of matmul() against the dequantize + Eigen path, which is exact in the
// activations. Their difference is the activation quantization error, bounded per output by
// sum_i |w_i| |x_i - a_i| (a = dequantized quantized activations), plus float rounding.
TEST_P(KernelsTest, MatmulMatchesDequantizePathWithinActivationError) {
  const TensorType type = GetParam();
  uint32_t seed = 500;
  for (const Shape& s : shapes_for(type)) {
    SCOPED_TRACE("rows " + std::to_string(s.rows) + " cols " + std::to_string(s.cols) + " tokens " +
                 std::to_string(s.n_tokens));
    const Problem p = make_problem(type, s.rows, s.cols, s.n_tokens, seed++);
    const int64_t cols = p.w.cols, rows = p.w.rows;
    MatmulOptions deq_opt;
    deq_opt.path = MatmulPath::Dequantize;
    std::vector<float> y_deq(size_t(s.n_tokens * rows));
    matmul(p.w, p.x.data(), s.n_tokens, y_deq.data(), {}, deq_opt);
    for (CpuIsa isa : kAllIsas) {
      if (!isa_available(isa)) continue;
      MatmulOptions opt;
      opt.isa = isa;
      const QuantDotKernel* k = select_kernel(p.w, s.n_tokens, opt);
      if (type == TensorType::F32 || (is_float(type) && s.n_tokens > kFloatKernelMaxTokens)) {
        EXPECT_EQ(k, nullptr);
        continue;
      }
      ASSERT_NE(k, nullptr);
      std::vector<uint8_t> scratch(matmul_scratch_bytes(p.w, s.n_tokens, opt));
      std::vector<float> y(y_deq.size(), NAN);
      matmul(p.w, p.x.data(), s.n_tokens, y.data(), scratch, opt);
      // Bound per output.
      const std::vector<uint8_t> a = quantize_activations(p, k->activation_type);
      const size_t a_row = activation_row_bytes(k->activation_type, cols);
      std::vector<float> arow(size_t(cols), 0.0f), wrow(size_t(cols), 0.0f);
      double worst = 0;
      for (int64_t t = 0; t < s.n_tokens; ++t) {
        dequantize_activation_row(k->activation_type, a.data() + size_t(t) * a_row, arow.data(), cols);
        const float* xt = p.x.data() + t * cols;
        for (int64_t r = 0; r < rows; ++r) {
          p.w.traits().dequantize_row(p.w.row(r), wrow.data(), cols);
          double act_err = 0, mag = 0;
          for (int64_t i = 0; i < cols; ++i) {
            act_err += std::fabs(double(wrow[size_t(i)])) * std::fabs(double(xt[i]) - arow[size_t(i)]);
            mag += std::fabs(double(wrow[size_t(i)]) * xt[i]);
          }
          const double bound = act_err + 2 * rounding_bound(type, cols) * mag + 1e-30;
          const double diff = std::fabs(double(y[size_t(t * rows + r)]) - y_deq[size_t(t * rows + r)]);
          ASSERT_LE(diff, bound) << isa_name(isa) << " token " << t << " row " << r;
          worst = std::max(worst, diff / bound);
        }
      }
    }
  }
}

TEST_P(KernelsTest, MatmulSameBitsForAnyThreadCount) {
  const TensorType type = GetParam();
  const Problem p = make_problem(type, 300, 4 * std::max<int64_t>(64, type_traits(type).block_size), 17, 7);
  for (int64_t n_tokens : {int64_t(1), int64_t(17)}) {
    std::vector<float> one(size_t(n_tokens * p.w.rows)), two(one.size());
    {
      tbb::global_control c(tbb::global_control::max_allowed_parallelism, 1);
      matmul(p.w, p.x.data(), n_tokens, one.data());
    }
    {
      tbb::global_control c(tbb::global_control::max_allowed_parallelism, 2);
      matmul(p.w, p.x.data(), n_tokens, two.data());
    }
    EXPECT_EQ(one, two) << n_tokens << " tokens";
  }
}

// matmul() of the first n_tokens activation rows of p with `opt`, through caller scratch.
std::vector<float> run_matmul(const Problem& p, int64_t n_tokens, const MatmulOptions& opt) {
  std::vector<uint8_t> scratch(matmul_scratch_bytes(p.w, n_tokens, opt));
  std::vector<float> y(size_t(n_tokens * p.w.rows), NAN);
  matmul(p.w, p.x.data(), n_tokens, y.data(), scratch, opt);
  return y;
}

// The prefill GEMM kernels (quant_gemm.h) of q4_0, q8_0, q4_K and every integer format, reached through
// matmul() from kGemmMinTokens tokens on: against the float oracle and the scalar row kernel, on ragged row and token counts, with
// q8_0 weights at -128 (ggml never writes it, other quantizers may); a token's result is the
// same bits whatever the number of tokens and its place in a tile. One token takes the decode
// kernel (gemv, q4_0) where the ISA has one.
TEST(KernelsGemm, MatchesOracleAndScalarReferenceForAnyTokenCount) {
  int checked = 0;
  std::vector<TensorType> types = {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K};
  for (uint32_t t = uint32_t(TensorType::INT_FIRST); t <= uint32_t(TensorType::INT_LAST); ++t) types.push_back(TensorType(t));
  for (TensorType type : types) {
    const bool is_int = type >= TensorType::INT_FIRST || type == TensorType::Q4_K;  // whole 256-value rows
    SCOPED_TRACE(std::string(type_traits(type).name));
    const QuantDotKernel* ref = find_quant_dot(type, CpuIsa::Scalar);
    for (CpuIsa isa : kAllIsas) {
      const QuantGemmKernel* g = find_quant_gemm(type, isa);
      if (isa == CpuIsa::Avx512 && isa_available(isa)) {
        EXPECT_NE(g, nullptr);
      }
      if (g == nullptr) continue;
      uint32_t seed = 900;
      const std::vector<Shape> shapes = is_int ? std::vector<Shape>{{5, 256, 16}, {37, 512, 17}}
                                               : std::vector<Shape>{{1, 32, 8}, {5, 96, 16}, {16, 256, 17}, {37, 64, 40}, {70, 160, 33}};
      for (const Shape& s : shapes) {
        SCOPED_TRACE("rows " + std::to_string(s.rows) + " cols " + std::to_string(s.cols) + " tokens " +
                     std::to_string(s.n_tokens));
        Problem p = make_problem(type, s.rows, s.cols, s.n_tokens, seed++);
        if (type == TensorType::Q8_0) {
          for (size_t i = 2; i < p.packed.size(); i += 34 * 3 + 5) p.packed[i] = 0x80;  // -128 in some blocks
        }
        std::vector<double> exact, mag;
        oracle(p, ref->activation_type, &exact, &mag);
        const std::vector<float> y_ref = run_kernel(p, *ref);
        MatmulOptions opt;
        opt.isa = isa;
        auto run = [&](int64_t n_tokens) { return run_matmul(p, n_tokens, opt); };
        const std::vector<float> y = run(s.n_tokens);
        const double eps = rounding_bound(type, s.cols);
        for (size_t i = 0; i < y.size(); ++i) {
          ASSERT_NEAR(y[i], exact[i], eps * mag[i] + 1e-30) << "output " << i;
          ASSERT_NEAR(y[i], y_ref[i], 2 * eps * mag[i] + 1e-30) << "output " << i;
        }
        const std::vector<float> head = run(kGemmMinTokens);
        EXPECT_TRUE(std::equal(head.begin(), head.end(), y.begin())) << "first tokens alone";
        // One token: the decode kernel (gemv) on whole chunks of 16 rows, the row kernel on the rest.
        const std::vector<float> one = run(1);
        for (size_t i = 0; i < one.size(); ++i) {
          ASSERT_NEAR(one[i], exact[i], eps * mag[i] + 1e-30) << "one token, row " << i;
          ASSERT_NEAR(one[i], y_ref[i], 2 * eps * mag[i] + 1e-30) << "one token, row " << i;
        }
        ++checked;
      }
    }
  }
  if (isa_available(CpuIsa::Avx512)) {
    EXPECT_EQ(checked, 10 + 2 + 2 * kIntFormatCount);
  }
}

// The f16 / bf16 / nf4 / fp8 prefill GEMM (quant_gemm.h) through matmul(): against the float oracle,
// the same bits as one FMA per column over the reference dequantizer's weights, and a token's
// result the same bits whatever the number of tokens.
TEST(KernelsGemm, FloatGemmMatchesOracleForAnyTokenCount) {
  int checked = 0;
  for (TensorType type : {TensorType::F16, TensorType::BF16, TensorType::NF4, TensorType::FP8_E4M3}) {
    SCOPED_TRACE(std::string(type_traits(type).name));
    for (CpuIsa isa : kAllIsas) {
      if (find_float_gemm(type, isa) == nullptr) {
        EXPECT_FALSE(isa == CpuIsa::Avx512 && isa_available(isa));
        continue;
      }
      MatmulOptions opt;
      opt.isa = isa;
      uint32_t seed = 950;
      const bool blocked = type == TensorType::NF4;  // blocks of 64
      for (const Shape& s : blocked ? std::vector<Shape>{{9, 64, 16}, {37, 192, 40}}
                                    : std::vector<Shape>{{1, 16, 8}, {9, 40, 16}, {16, 256, 17}, {37, 70, 40}}) {
        SCOPED_TRACE("rows " + std::to_string(s.rows) + " cols " + std::to_string(s.cols) + " tokens " +
                     std::to_string(s.n_tokens));
        const Problem p = make_problem(type, s.rows, s.cols, s.n_tokens, seed++);
        EXPECT_EQ(matmul_path_name(p.w, s.n_tokens, opt), isa_name(isa));
        std::vector<double> exact, mag;
        oracle(p, TensorType::F32, &exact, &mag);
        auto run = [&](int64_t n_tokens) { return run_matmul(p, n_tokens, opt); };
        const std::vector<float> y = run(s.n_tokens);
        const double eps = rounding_bound(type, s.cols);
        for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], exact[i], eps * mag[i] + 1e-30) << "output " << i;
        // Bit for bit: one FMA per column in column order over the reference dequantizer's
        // weights (the kernel decodes nf4 / fp8 in registers; the values must be the same).
        std::vector<float> wrow(size_t(s.cols));
        for (int64_t r = 0; r < s.rows; ++r) {
          p.w.traits().dequantize_row(p.w.row(r), wrow.data(), s.cols);
          for (int64_t t = 0; t < s.n_tokens; ++t) {
            float acc = 0.0f;
            for (int64_t k = 0; k < s.cols; ++k) acc = std::fma(wrow[size_t(k)], p.x[size_t(t * s.cols + k)], acc);
            ASSERT_EQ(y[size_t(t * s.rows + r)], acc) << "token " << t << " row " << r;
          }
        }
        const std::vector<float> head = run(kGemmMinTokens);
        EXPECT_TRUE(std::equal(head.begin(), head.end(), y.begin())) << "first tokens alone";
        ++checked;
      }
    }
  }
  if (isa_available(CpuIsa::Avx512)) {
    EXPECT_EQ(checked, 4 + 4 + 2 + 4);
  }
}

// The f16 / bf16 decode kernel (find_float_gemv): called directly on 16-row chunks and through
// matmul() with one token (whole chunks on it, the rest of the rows on the row kernel), it gives
// the row kernel's bits, on row lengths with and without a tail past the last 32 values.
TEST(KernelsGemm, FloatGemvSameBitsAsRowKernel) {
  int checked = 0;
  for (TensorType type : {TensorType::F16, TensorType::BF16}) {
    SCOPED_TRACE(std::string(type_traits(type).name));
    for (CpuIsa isa : kAllIsas) {
      const GemvFn gemv = find_float_gemv(type, isa);
      if (gemv == nullptr) {
        EXPECT_FALSE(isa == CpuIsa::Avx512 && isa_available(isa));
        continue;
      }
      const QuantDotKernel* k = find_quant_dot(type, isa);
      ASSERT_NE(k, nullptr);
      MatmulOptions opt;
      opt.isa = isa;
      uint32_t seed = 970;
      for (const Shape& s : std::vector<Shape>{{16, 7, 1}, {16, 32, 1}, {37, 70, 1}, {70, 2048, 1}, {33, 1000, 1}}) {
        SCOPED_TRACE("rows " + std::to_string(s.rows) + " cols " + std::to_string(s.cols));
        const Problem p = make_problem(type, s.rows, s.cols, 1, seed++);
        const std::vector<float> y_row = run_kernel(p, *k);
        std::vector<float> y(size_t(s.rows), NAN);
        for (int64_t r0 = 0; r0 + kGemmMaxRows <= s.rows; r0 += kGemmMaxRows) {
          gemv(s.cols, p.w.row(r0), p.w.row_bytes(), reinterpret_cast<const uint8_t*>(p.x.data()), y.data() + r0);
        }
        const int64_t whole = s.rows / kGemmMaxRows * kGemmMaxRows;
        ASSERT_GT(whole, 0);
        for (int64_t r = 0; r < whole; ++r) ASSERT_EQ(y[size_t(r)], y_row[size_t(r)]) << "gemv, row " << r;
        EXPECT_EQ(run_matmul(p, 1, opt), y_row) << "matmul, one token";
        ++checked;
      }
    }
  }
  if (isa_available(CpuIsa::Avx512)) {
    EXPECT_EQ(checked, 2 * 5);
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, KernelsTest, ::testing::ValuesIn(quant_dot_weight_types()),
                         [](const auto& info) { return std::string(type_traits(info.param).name); });

TEST(KernelsTable, SameFormatsOnEveryPath) {
  for (CpuIsa isa : kAllIsas) {
    if (!isa_available(isa)) continue;
    for (TensorType t : quant_dot_weight_types()) {
      const QuantDotKernel* k = find_quant_dot(t, isa);
      ASSERT_NE(k, nullptr) << type_traits(t).name << " on " << isa_name(isa);
      EXPECT_EQ(k->weight_type, t);
      EXPECT_EQ(k->activation_type, find_quant_dot(t, CpuIsa::Scalar)->activation_type);
    }
  }
  // llama.cpp's partner formats.
  EXPECT_EQ(find_quant_dot(TensorType::Q4_0, CpuIsa::Scalar)->activation_type, TensorType::Q8_0);
  EXPECT_EQ(find_quant_dot(TensorType::Q5_1, CpuIsa::Scalar)->activation_type, TensorType::Q8_1);
  EXPECT_EQ(find_quant_dot(TensorType::Q3_K, CpuIsa::Scalar)->activation_type, TensorType::Q8_K);
  // qbench's own formats: integer ones on Q8_0 activations, code books on FP32.
  EXPECT_EQ(find_quant_dot(TensorType::INT_FIRST, CpuIsa::Scalar)->activation_type, TensorType::Q8_0);
  EXPECT_EQ(find_quant_dot(TensorType::INT_LAST, CpuIsa::Scalar)->activation_type, TensorType::Q8_0);
  EXPECT_EQ(find_quant_dot(TensorType::NF4, CpuIsa::Scalar)->activation_type, TensorType::F32);
  // SmoothQuant's W8A8: per-channel int8 weights on per-token int8 activations.
  EXPECT_EQ(find_quant_dot(TensorType::W8A8_INT8, CpuIsa::Scalar)->activation_type, TensorType::Q8_T);
  // No kernel: the dequantize fallback.
  EXPECT_EQ(find_quant_dot(TensorType::Q8_K, CpuIsa::Scalar), nullptr);
  EXPECT_EQ(find_quant_dot(TensorType::IQ4_NL, CpuIsa::Scalar), nullptr);
}

// W8A8's integer sum is exact and its float part the same two roundings on every path: scalar,
// AVX2 and AVX-512 give the same bits, on row lengths around the SIMD steps (32, 64, 128) and on
// a long row of extreme quants (127 * 127 per value, close to the int32 limit).
TEST(KernelsW8A8, EveryPathGivesTheSameBits) {
  const QuantDotKernel* ref = find_quant_dot(TensorType::W8A8_INT8, CpuIsa::Scalar);
  ASSERT_NE(ref, nullptr);
  for (int64_t cols : {1, 31, 32, 63, 64, 65, 127, 128, 129, 191, 300, 4096}) {
    const Problem p = make_problem(TensorType::W8A8_INT8, 5, cols, 9, uint32_t(cols));
    const std::vector<float> y_ref = run_kernel(p, *ref);
    for (CpuIsa isa : {CpuIsa::Avx2, CpuIsa::Avx512}) {
      if (!isa_available(isa)) continue;
      EXPECT_EQ(run_kernel(p, *find_quant_dot(TensorType::W8A8_INT8, isa)), y_ref) << isa_name(isa) << " " << cols;
    }
  }
  const int64_t n = 130000;  // n * 127^2 = 2.1e9 < 2^31
  ASSERT_LE(n, kW8A8MaxCols);
  std::vector<float> ones(size_t(n), 1.0f), minus(size_t(n), -1.0f);
  std::vector<uint8_t> w(size_t(kW8A8RowHeaderBytes + n)), a(activation_row_bytes(TensorType::Q8_T, n));
  quantize_row_w8a8_int8(ones.data(), w.data(), n);
  quantize_activation_row(TensorType::Q8_T, minus.data(), a.data(), n);
  const float d = 1.0f / 127.0f;
  const float want = float(-n * 127 * 127) * (d * d);
  for (CpuIsa isa : kAllIsas) {
    if (!isa_available(isa)) continue;
    EXPECT_EQ(vec_dot(*find_quant_dot(TensorType::W8A8_INT8, isa), n, w.data(), a.data()), want) << isa_name(isa);
  }
}

// ggml's x86 activation quantizer (quantize_row_q8_0 / quantize_row_q8_1 of
// ggml-cpu/arch/x86/quants.c, the from_float of its CPU backend on every AVX/AVX2/AVX-512 build)
// written out plainly, one 32-value block: d = max|x| / 127 stored as fp16, id = 127 / max|x|,
// q = x * id rounded to the nearest integer, halfway cases to even (_mm256_round_ps with
// _MM_ROUND_NEAREST; std::nearbyint in the default rounding mode). Q8_1 adds s = fp16(d * sum q).
// Interposing on libggml-cpu's quantize_row_q8_0 / q8_1 in llama-perplexity showed this rule
// reproducing every byte over 12 chunks of stories260K-{Q8_0,Q4_0,Q4_1,Q5_0,Q5_1}.gguf and
// kquant-test-{Q4_0,Q5_1}.gguf (about 6 million values each), while quantize_row_q8_0_ref differed
// in 5 bytes of the Q8_0 run (docs/kernels.md, "Agreement with llama.cpp").
BlockQ8_1 ggml_x86_q8_block(const float* x) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  BlockQ8_1 b{};
  b.d = fp32_to_fp16(d);
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    b.qs[j] = int8_t(std::nearbyint(x[j] * id));
    sum += b.qs[j];
  }
  b.s = fp32_to_fp16(d * float(sum));
  return b;
}

// Random blocks, an all-zero block, a block of tiny values, and the two places where the x86
// rule and quantize_row_q8_0_ref part: halfway values (to even, not away from zero) and the
// multiplier (127 / max instead of 1 / (max / 127)).
std::vector<float> activation_rounding_cases() {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> x(32 * 64);
  for (float& v : x) v = dist(rng);
  // Block 1: max 127 so that id = 1 and x * id = x: halfway values of both signs.
  for (int j = 0; j < 32; ++j) x[32 + j] = (j == 0 ? 127.0f : float(j - 16) + 0.5f);
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // all zero
  for (int j = 0; j < 32; ++j) x[96 + j] = 1e-30f * float(j + 1);  // tiny
  // Block 4: max = 0x3f806349 (1.00302994) and x = max / 2, exactly 63.5 steps: in float,
  // x * (127 / max) = 63.4999962 (-> 63) but x * (1 / (max / 127)) = 63.5000038 (-> 64).
  uint32_t bits = 0x3f806349u;
  float amax;
  std::memcpy(&amax, &bits, 4);
  for (int j = 0; j < 32; ++j) x[128 + j] = 0.25f * float(j % 4);
  x[128] = amax;
  x[129] = amax / 2.0f;
  x[130] = -amax / 2.0f;
  return x;
}

TEST(KernelsActivations, Q8_0SameBytesAsGgmlX86) {
  const std::vector<float> x = activation_rounding_cases();
  const size_t nb = x.size() / 32;
  std::vector<uint8_t> a(activation_row_bytes(TensorType::Q8_0, int64_t(x.size())));
  quantize_activation_row(TensorType::Q8_0, x.data(), a.data(), int64_t(x.size()));
  // The ggml blocks, then each block's d widened to fp32, then the quants contiguously.
  const size_t blocks = nb * sizeof(BlockQ8_0);
  ASSERT_EQ(a.size(), blocks + nb * sizeof(float) + x.size());
  for (size_t b = 0; b < nb; ++b) {
    const BlockQ8_1 want = ggml_x86_q8_block(x.data() + 32 * b);
    BlockQ8_0 got;
    std::memcpy(&got, a.data() + b * sizeof got, sizeof got);
    EXPECT_EQ(got.d, want.d) << b;
    EXPECT_EQ(std::memcmp(got.qs, want.qs, 32), 0) << b;
    float d;
    std::memcpy(&d, a.data() + blocks + 4 * b, 4);
    EXPECT_EQ(d, fp16_to_fp32(got.d)) << b;
    EXPECT_EQ(std::memcmp(a.data() + blocks + nb * 4 + 32 * b, got.qs, 32), 0) << b;
  }
  BlockQ8_0 b1, b4;
  std::memcpy(&b1, a.data() + 1 * sizeof b1, sizeof b1);
  std::memcpy(&b4, a.data() + 4 * sizeof b4, sizeof b4);
  EXPECT_EQ(b1.qs[1], -14);  // -14.5 -> -14 (even)
  EXPECT_EQ(b1.qs[2], -14);  // -13.5 -> -14
  EXPECT_EQ(b1.qs[16], 0);   // 0.5 -> 0
  EXPECT_EQ(b1.qs[31], 16);  // 15.5 -> 16
  EXPECT_EQ(b4.qs[1], 63);
  EXPECT_EQ(b4.qs[2], -63);
  // ggml's scalar reference rounds these differently: the rule above is not quantize_row_q8_0_ref.
  std::vector<uint8_t> ref(blocks);
  quantize_row_q8_0_ref(x.data(), ref.data(), int64_t(x.size()));
  BlockQ8_0 r1, r4;
  std::memcpy(&r1, ref.data() + 1 * sizeof r1, sizeof r1);
  std::memcpy(&r4, ref.data() + 4 * sizeof r4, sizeof r4);
  EXPECT_EQ(r1.qs[1], -15);
  EXPECT_EQ(r1.qs[31], 16);
  EXPECT_EQ(r4.qs[1], 64);
  EXPECT_EQ(r4.qs[2], -64);
  // Elsewhere (no halfway value, no multiplier flip) the two agree.
  EXPECT_EQ(std::memcmp(a.data(), ref.data(), sizeof(BlockQ8_0)), 0);
  EXPECT_EQ(std::memcmp(a.data() + 2 * sizeof(BlockQ8_0), ref.data() + 2 * sizeof(BlockQ8_0), 2 * sizeof(BlockQ8_0)), 0);
}

// Q8_1 is Q8_0 plus s = d * sum(q): same scale, same quants.
TEST(KernelsActivations, Q8_1SameBytesAsGgmlX86) {
  std::vector<float> x = activation_rounding_cases();
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  for (size_t i = 32 * 8; i < x.size(); ++i) x[i] = dist(rng);
  const int64_t n = int64_t(x.size());
  const size_t nb = x.size() / 32;
  std::vector<uint8_t> a0(activation_row_bytes(TensorType::Q8_0, n));
  std::vector<uint8_t> a1(activation_row_bytes(TensorType::Q8_1, n));
  ASSERT_EQ(a1.size(), nb * (sizeof(BlockQ8_1) + 8) + x.size());
  quantize_activation_row(TensorType::Q8_0, x.data(), a0.data(), n);
  quantize_activation_row(TensorType::Q8_1, x.data(), a1.data(), n);
  const uint8_t* scales = a1.data() + nb * sizeof(BlockQ8_1);
  for (size_t b = 0; b < nb; ++b) {
    const BlockQ8_1 want = ggml_x86_q8_block(x.data() + 32 * b);
    BlockQ8_0 q0;
    BlockQ8_1 q1;
    std::memcpy(&q0, a0.data() + b * sizeof q0, sizeof q0);
    std::memcpy(&q1, a1.data() + b * sizeof q1, sizeof q1);
    EXPECT_EQ(q1.d, want.d) << b;
    EXPECT_EQ(q1.s, want.s) << b;
    EXPECT_EQ(std::memcmp(q1.qs, want.qs, 32), 0) << b;
    EXPECT_EQ(q0.d, q1.d) << b;
    EXPECT_EQ(std::memcmp(q0.qs, q1.qs, 32), 0) << b;
    float d, s;
    std::memcpy(&d, scales + 4 * b, 4);
    std::memcpy(&s, scales + 4 * (nb + b), 4);
    EXPECT_EQ(d, fp16_to_fp32(q1.d)) << b;
    EXPECT_EQ(s, fp16_to_fp32(q1.s)) << b;
    EXPECT_EQ(std::memcmp(scales + 8 * nb + 32 * b, q1.qs, 32), 0) << b;
  }
}

// Q8_T (per-token int8): one fp32 scale d = max|x| / 127 for the whole row, quants
// round_half_away(x / d) in [-127, 127]; any row length; an all-zero row is d = 0 and zeros. Every
// value is within d / 2 of d * q.
TEST(KernelsActivations, Q8_TPerTokenScale) {
  auto quantize = [](const std::vector<float>& x) {
    std::vector<uint8_t> a(activation_row_bytes(TensorType::Q8_T, int64_t(x.size())));
    EXPECT_EQ(a.size(), 4 + x.size());
    quantize_activation_row(TensorType::Q8_T, x.data(), a.data(), int64_t(x.size()));
    return a;
  };
  auto scale = [](const std::vector<uint8_t>& a) {
    float d;
    std::memcpy(&d, a.data(), 4);
    return d;
  };
  auto quant = [](const std::vector<uint8_t>& a, size_t i) { return int(int8_t(a[4 + i])); };
  EXPECT_EQ(activation_block_size(TensorType::Q8_T), 1);
  // max 127: d = 1, so x / d = x and halfway values show the rounding (away from zero).
  std::vector<float> x = {127.0f, -14.5f, 15.5f, 0.5f, -0.5f, 0.49f, -127.0f, 3.0f, -2.5f};
  std::vector<uint8_t> a = quantize(x);
  EXPECT_EQ(scale(a), 1.0f);
  const int want[] = {127, -15, 16, 1, -1, 0, -127, 3, -3};
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(quant(a, i), want[i]) << i;
  // All zero.
  a = quantize(std::vector<float>(5, 0.0f));
  EXPECT_EQ(scale(a), 0.0f);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(quant(a, i), 0);
  // Random rows of ragged lengths: the scale, the range, the rounding bound, the dequantizer.
  std::mt19937 rng(6);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  for (size_t n : {1u, 7u, 33u, 172u, 1000u}) {
    x.resize(n);
    for (float& v : x) v = dist(rng);
    x[n / 2] *= 30.0f;  // an outlier sets the scale of the whole token
    a = quantize(x);
    float amax = 0;
    for (float v : x) amax = std::max(amax, std::fabs(v));
    const float d = scale(a);
    EXPECT_EQ(d, amax / 127.0f);
    std::vector<float> back(n);
    dequantize_activation_row(TensorType::Q8_T, a.data(), back.data(), int64_t(n));
    for (size_t i = 0; i < n; ++i) {
      ASSERT_LE(std::abs(quant(a, i)), 127);
      EXPECT_EQ(back[i], d * float(quant(a, i)));
      EXPECT_LE(std::fabs(x[i] - back[i]), 0.5f * d * (1 + 1e-5f)) << n << " " << i;
    }
  }
}

TEST(KernelsActivations, Q8_KBlockSums) {
  std::mt19937 rng(4);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(512);
  for (float& v : x) v = dist(rng);
  std::vector<uint8_t> a(activation_row_bytes(TensorType::Q8_K, 512));
  quantize_activation_row(TensorType::Q8_K, x.data(), a.data(), 512);
  for (int b = 0; b < 2; ++b) {
    BlockQ8_K q;
    std::memcpy(&q, a.data() + b * sizeof q, sizeof q);
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += q.qs[16 * g + j];
      EXPECT_EQ(q.bsums[g], sum);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Path selection and the environment.

TEST(KernelsDispatch, DefaultIsaFollowsEnvironment) {
  const char* forced = std::getenv("QBENCH_FORCE_ISA");
  const char* scalar = std::getenv("QBENCH_FORCE_SCALAR");
  if (forced != nullptr && *forced != '\0') {
    EXPECT_EQ(active_isa(), std::string(forced));
  } else if (scalar != nullptr && std::string(scalar) == "1") {
    EXPECT_EQ(default_isa(), CpuIsa::Scalar);
  } else if (isa_available(CpuIsa::Avx512)) {
    EXPECT_EQ(default_isa(), CpuIsa::Avx512);
  } else if (isa_available(CpuIsa::Avx2)) {
    EXPECT_EQ(default_isa(), CpuIsa::Avx2);
  } else {
    EXPECT_EQ(default_isa(), CpuIsa::Scalar);
  }
  EXPECT_EQ(active_isa(), isa_name(default_isa()));
  const Problem p = make_problem(TensorType::Q4_K, 4, 256, 1, 1);
  EXPECT_EQ(matmul_path_name(p.w, 1, {}), active_isa());
  MatmulOptions deq;
  deq.path = MatmulPath::Dequantize;
  EXPECT_EQ(matmul_path_name(p.w, 1, deq), "dequant");
}

TEST(KernelsDispatch, BadForcedIsaIsAnError) {
  const char* forced = std::getenv("QBENCH_FORCE_ISA");
  if (forced == nullptr || std::string(forced) != "avx9") GTEST_SKIP() << "run by ForcedIsaInChildProcesses";
  EXPECT_THROW(default_isa(), Error);
}

std::string self_exe() { return std::filesystem::read_symlink("/proc/self/exe").string(); }

int run_child(const std::string& env, const std::string& filter) {
  const std::string cmd = "env -u QBENCH_FORCE_ISA -u QBENCH_FORCE_SCALAR " + env + " '" + self_exe() +
                          "' --gtest_filter=" + filter + " > /dev/null 2>&1";
  return std::system(cmd.c_str());
}

TEST(KernelsDispatch, ForcedIsaInChildProcesses) {
  if (std::getenv("QBENCH_FORCE_ISA") != nullptr || std::getenv("QBENCH_FORCE_SCALAR") != nullptr) {
    GTEST_SKIP() << "already forced";
  }
  EXPECT_EQ(run_child("QBENCH_FORCE_SCALAR=1", "KernelsDispatch.DefaultIsaFollowsEnvironment"), 0);
  int forced = 0;
  for (CpuIsa isa : kAllIsas) {
    if (!isa_available(isa)) continue;
    EXPECT_EQ(run_child("QBENCH_FORCE_ISA=" + std::string(isa_name(isa)),
                        "KernelsDispatch.DefaultIsaFollowsEnvironment"),
              0)
        << isa_name(isa);
    ++forced;
  }
  EXPECT_GE(forced, 1);
  EXPECT_EQ(run_child("QBENCH_FORCE_ISA=avx9", "KernelsDispatch.BadForcedIsaIsAnError"), 0);
}

TEST(KernelsDispatch, FloatKernelsOnlyForDecode) {
  const Problem p = make_problem(TensorType::F16, 8, 64, 1, 1);
  EXPECT_NE(select_kernel(p.w, 1, {}), nullptr);
  EXPECT_NE(select_kernel(p.w, kFloatKernelMaxTokens, {}), nullptr);
  EXPECT_EQ(select_kernel(p.w, kFloatKernelMaxTokens + 1, {}), nullptr);
  EXPECT_EQ(matmul_scratch_bytes(p.w, 1, {}), 0u);
  const Problem f = make_problem(TensorType::F32, 8, 64, 1, 1);
  EXPECT_EQ(select_kernel(f.w, 1, {}), nullptr);  // Eigen in place
  const Problem q = make_problem(TensorType::Q4_0, 8, 64, 1, 1);
  EXPECT_EQ(matmul_scratch_bytes(q.w, 5, {}), 5 * activation_row_bytes(TensorType::Q8_0, 64));
}

TEST(KernelsDispatch, RaggedRowsOfPerRowFormatsUseTheDequantizePath) {
  const TensorType int4_row = int_format_type(IntFormat{4, true, 0});
  EXPECT_NE(select_kernel(make_problem(int4_row, 4, 64, 1, 1).w, 1, {}), nullptr);
  const Problem ragged = make_problem(int4_row, 4, 40, 2, 1);  // 40 values: whole int4 blocks, not Q8_0 blocks
  EXPECT_EQ(select_kernel(ragged.w, 1, {}), nullptr);
  std::vector<float> y(8);
  matmul(ragged.w, ragged.x.data(), 2, y.data());  // runs, on the fallback
  for (float v : y) EXPECT_TRUE(std::isfinite(v));
}

}  // namespace
}  // namespace qbench
