// Matrix-product throughput per weight format: decode (1 token, GEMV) and prefill (128 tokens,
// GEMM) at Llama-like shapes (2048 x 2048: attention; 5632 x 2048: FFN of a 1B model), on the
// packed-format kernel path (engine/kernels/matmul.h, the CPU's default ISA) and on the
// dequantize + Eigen reference path. f32/dequant is the F32 Eigen baseline.
// Counters: weight_GB/s = packed weight bytes streamed per second (one pass per product),
// GFLOP/s = 2 * rows * cols * tokens per second. The label names the path actually taken.
// Threads: TBB's default (all cores); run with e.g. `taskset -c 0,1` to pin. BM_Kernel runs one
// kernel on one thread for every available ISA (scalar included), without the matmul around it.
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/formats/int_quants.h"
#include "engine/kernels/matmul.h"

namespace qbench {
namespace {

struct Packed {
  std::vector<uint8_t> bytes;
  Matrix m;
};

// Weights ~ N(0, 0.02^2) in `type` (reference quantizer), built once per (type, shape).
const Packed& weights(TensorType type, int64_t rows, int64_t cols) {
  static std::map<std::tuple<TensorType, int64_t, int64_t>, std::unique_ptr<Packed>> cache;
  auto& slot = cache[{type, rows, cols}];
  if (!slot) {
    std::mt19937 rng(1);
    std::normal_distribution<float> dist(0.0f, 0.02f);
    std::vector<float> f(size_t(rows * cols));
    for (float& v : f) v = dist(rng);
    slot = std::make_unique<Packed>();
    const TypeTraits& tr = type_traits(type);
    slot->bytes.resize(size_t(rows) * row_bytes(tr, cols));
    quantize_rows(tr, f.data(), rows, cols, slot->bytes.data(), "bench weights");
    slot->m = Matrix{type, rows, cols, slot->bytes.data()};
  }
  return *slot;
}

void BM_Matmul(benchmark::State& state, TensorType type, MatmulPath path) {
  const int64_t rows = state.range(0), cols = state.range(1), n_tokens = state.range(2);
  const Packed& w = weights(type, rows, cols);
  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(size_t(n_tokens * cols)), y(size_t(n_tokens * rows));
  for (float& v : x) v = dist(rng);
  MatmulOptions opt;
  opt.path = path;
  std::vector<uint8_t> scratch(matmul_scratch_bytes(w.m, n_tokens, opt));
  for (auto _ : state) {
    matmul(w.m, x.data(), n_tokens, y.data(), scratch, opt);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double iters = double(state.iterations());
  state.counters["weight_GB/s"] = benchmark::Counter(double(w.m.bytes()) * iters / 1e9, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(rows * cols * n_tokens) * iters / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(matmul_path_name(w.m, n_tokens, opt)));
}

// One kernel on one thread (no TBB, activations quantized outside the loop): the kernel's own
// throughput, for `tokens` = 1 (decode) or kMaxTokenTile (a full prefill tile).
void BM_Kernel(benchmark::State& state, TensorType type, CpuIsa isa) {
  const int64_t rows = state.range(0), cols = state.range(1), n_tokens = state.range(2);
  const Packed& w = weights(type, rows, cols);
  const QuantDotKernel* k = find_quant_dot(type, isa);
  if (k == nullptr) {
    state.SkipWithError("no kernel on this CPU");
    return;
  }
  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(size_t(n_tokens * cols)), y(size_t(n_tokens * rows));
  for (float& v : x) v = dist(rng);
  const size_t a_row = activation_row_bytes(k->activation_type, cols);
  std::vector<uint8_t> a(a_row * size_t(n_tokens));
  for (int64_t t = 0; t < n_tokens; ++t) quantize_activation_row(k->activation_type, x.data() + t * cols, a.data() + size_t(t) * a_row, cols);
  for (auto _ : state) {
    for (int64_t r = 0; r < rows; ++r) k->dot(cols, w.m.row(r), a.data(), a_row, int(n_tokens), y.data() + r, size_t(rows));
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double iters = double(state.iterations());
  state.counters["weight_GB/s"] = benchmark::Counter(double(w.m.bytes()) * iters / 1e9, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(rows * cols * n_tokens) * iters / 1e9, benchmark::Counter::kIsRate);
}

void register_all() {
  const TensorType types[] = {TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q8_0,
                              TensorType::Q5_1, TensorType::Q5_0, TensorType::Q4_1, TensorType::Q4_0,
                              TensorType::Q6_K, TensorType::Q5_K, TensorType::Q4_K, TensorType::Q3_K,
                              TensorType::Q2_K,
                              // qbench's own formats of the default experiments: int8 per channel,
                              // int4 group 128 (both kinds), an odd width (scalar unpacking), nf4, fp8
                              int_format_type(IntFormat{8, true, 0}), int_format_type(IntFormat{4, true, 128}),
                              int_format_type(IntFormat{4, false, 128}), int_format_type(IntFormat{3, true, 32}),
                              TensorType::NF4, TensorType::FP8_E4M3,
                              // W8A8 (w8a8 / smoothquant): int8 per channel on per-token int8 activations
                              TensorType::W8A8_INT8};
  for (TensorType t : types) {
    for (MatmulPath path : {MatmulPath::Kernels, MatmulPath::Dequantize}) {
      const std::string name = "BM_Matmul/" + std::string(type_traits(t).name) +
                               (path == MatmulPath::Kernels ? "/kernel" : "/dequant");
      benchmark::RegisterBenchmark(name.c_str(), BM_Matmul, t, path)
          ->Args({2048, 2048, 1})
          ->Args({5632, 2048, 1})
          ->Args({2048, 2048, 128})
          ->Args({5632, 2048, 128})
          ->ArgNames({"rows", "cols", "tokens"})
          ->Unit(benchmark::kMillisecond)
          ->MinTime(0.3)
          ->UseRealTime();
    }
    for (CpuIsa isa : kAllIsas) {
      if (!isa_available(isa) || find_quant_dot(t, isa) == nullptr) continue;
      const std::string name = "BM_Kernel/" + std::string(type_traits(t).name) + "/" + std::string(isa_name(isa));
      benchmark::RegisterBenchmark(name.c_str(), BM_Kernel, t, isa)
          ->Args({2048, 2048, 1})
          ->Args({2048, 2048, kMaxTokenTile})
          ->ArgNames({"rows", "cols", "tokens"})
          ->Unit(benchmark::kMicrosecond)
          ->MinTime(0.2)
          ->UseRealTime();
    }
  }
}

}  // namespace
}  // namespace qbench

int main(int argc, char** argv) {
  qbench::register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("kernel_isa", std::string(qbench::active_isa()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
