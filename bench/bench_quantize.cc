// Quantization throughput per scheme: MB/s of F32 input for a 2048 x 2048 matrix.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "quantizers/registry.h"

namespace {

const std::vector<float>& weights() {
  static const std::vector<float> w = [] {
    std::mt19937 rng(1);
    std::normal_distribution<float> d(0.0f, 0.02f);
    std::vector<float> v(2048 * 2048);
    for (float& x : v) x = d(rng);
    return v;
  }();
  return w;
}

void BM_Quantize(benchmark::State& state, const char* spec_text) {
  const auto spec = qbench::quant::parse_scheme(spec_text);
  const qbench::quant::WeightView w{"bench", 2048, 2048, weights().data()};
  for (auto _ : state) benchmark::DoNotOptimize(qbench::quant::quantize_tensor(w, spec));
  state.SetBytesProcessed(int64_t(state.iterations()) * 2048 * 2048 * 4);
}

}  // namespace

#define QB_BENCH(name, spec) BENCHMARK_CAPTURE(BM_Quantize, name, spec)->Unit(benchmark::kMillisecond)->UseRealTime()
QB_BENCH(fp16, "fp16");
QB_BENCH(q8_0, "q8_0");
QB_BENCH(q4_0, "q4_0");
QB_BENCH(q4_K, "q4_K");
QB_BENCH(q6_K, "q6_K");
QB_BENCH(int8_channel, "int8");
QB_BENCH(int4_g128, "rtn:int4");
QB_BENCH(int4_g128_asym, "rtn:int4,sym=false");
QB_BENCH(int4_g128_mse, "rtn:int4,clip=mse");
QB_BENCH(int3_g32, "rtn:int3,group=32");
QB_BENCH(nf4, "nf4");
QB_BENCH(fp8, "fp8");
BENCHMARK_MAIN();
