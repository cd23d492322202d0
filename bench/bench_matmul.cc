// Matrix-product throughput per weight format: decode (1 token, GEMV) and prefill (128 tokens,
// GEMM) at Llama-like shapes. Counters: weight bytes streamed per second (GB/s) and FLOP/s.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "engine/core/half.h"
#include "engine/kernels/matmul.h"

namespace qbench {
namespace {

struct Packed {
  std::vector<uint8_t> bytes;
  Matrix m;
};

Packed make_matrix(TensorType type, int64_t rows, int64_t cols) {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  Packed p;
  const auto& tr = type_traits(type);
  p.bytes.resize(size_t(rows) * row_bytes(tr, cols));
  for (int64_t i = 0; i < rows * cols; ++i) {
    const float v = dist(rng);
    if (type == TensorType::F32) {
      std::memcpy(p.bytes.data() + 4 * i, &v, 4);
    } else {
      const uint16_t h = type == TensorType::F16 ? fp32_to_fp16(v) : fp32_to_bf16(v);
      std::memcpy(p.bytes.data() + 2 * i, &h, 2);
    }
  }
  p.m = Matrix{type, rows, cols, p.bytes.data()};
  return p;
}

void BM_Matmul(benchmark::State& state, TensorType type) {
  const int64_t rows = state.range(0), cols = state.range(1), n_tokens = state.range(2);
  const Packed w = make_matrix(type, rows, cols);
  std::vector<float> x(size_t(n_tokens * cols), 0.5f), y(size_t(n_tokens * rows));
  for (auto _ : state) {
    matmul(w.m, x.data(), n_tokens, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  const double iters = double(state.iterations());
  state.counters["weight_GB/s"] = benchmark::Counter(double(w.m.bytes()) * iters / 1e9, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(rows * cols * n_tokens) * iters / 1e9, benchmark::Counter::kIsRate);
}

#define QBENCH_MATMUL_SHAPES                                                               \
  Args({2048, 2048, 1})->Args({5632, 2048, 1})->Args({2048, 2048, 128})->Args({5632, 2048, 128}) \
      ->Unit(benchmark::kMillisecond)->UseRealTime()

BENCHMARK_CAPTURE(BM_Matmul, f32, TensorType::F32)->QBENCH_MATMUL_SHAPES;
BENCHMARK_CAPTURE(BM_Matmul, f16, TensorType::F16)->QBENCH_MATMUL_SHAPES;
BENCHMARK_CAPTURE(BM_Matmul, bf16, TensorType::BF16)->QBENCH_MATMUL_SHAPES;

}  // namespace
}  // namespace qbench

BENCHMARK_MAIN();
