// Training throughput (tokens/s, i.e. predicted positions per second) of one optimizer step:
// forward, backward, clipping and AdamW, for the default model's size class.
//   bench_train --benchmark_min_time=10   (QBENCH_THREADS sets the TBB thread count, default 2)
#include <benchmark/benchmark.h>
#include <tbb/global_control.h>

#include <cstdlib>
#include <memory>

#include "engine/train/trainer.h"

namespace {

using qbench::train::Batch;
using qbench::train::Trainer;
using qbench::train::TrainerConfig;

void BM_TrainStep(benchmark::State& state) {
  TrainerConfig cfg;
  cfg.model.n_vocab = 100;
  cfg.model.n_embd = state.range(0);
  cfg.model.n_layer = 4;
  cfg.model.n_head = state.range(1);
  cfg.model.n_head_kv = state.range(1);
  cfg.model.n_ff = 3 * state.range(0);
  cfg.model.n_ctx_train = 64;
  cfg.model.n_rot = cfg.model.head_dim();
  cfg.batch_size = 32;
  cfg.seq_len = 64;
  cfg.total_steps = 1000000;
  Trainer trainer(cfg);
  Batch batch;
  batch.resize(cfg.batch_size, cfg.seq_len);
  for (size_t i = 0; i < batch.tokens.size(); ++i) batch.tokens[i] = int32_t(trainer.rng().below(100));
  for (auto _ : state) {
    benchmark::DoNotOptimize(trainer.train_step(batch));
  }
  state.counters["tokens/s"] =
      benchmark::Counter(double(batch.n_tokens()) * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["params"] = double(trainer.params().size());
}
BENCHMARK(BM_TrainStep)->Args({256, 4})->Args({256, 8})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  const char* env = std::getenv("QBENCH_THREADS");
  const int threads = env ? std::atoi(env) : 2;
  tbb::global_control limit(tbb::global_control::max_allowed_parallelism, size_t(threads > 0 ? threads : 2));
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
