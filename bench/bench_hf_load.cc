// Peak resident memory (RSS) of loading a Hugging Face folder and of running a forward pass on
// it, for a synthetic BF16 folder with TinyLlama-1.1B's dimensions (harness/run/shapes.h; random
// weights, a placeholder 32000-token vocabulary). Weights stay memory-mapped: the peak should be
// about the folder's bytes plus the copied q/k projections (the rotary permutation) plus
// activations — far below the F32 copy (twice the folder) a converting loader would need.
//
// Each measurement runs in a fresh child process (this program re-executed with --child), so
// the parent's own allocations do not count; ru_maxrss of the child is the peak. The folder is
// written once to $QBENCH_BENCH_DIR/hf-tinyllama-1.1b-bf16 (default /tmp) and reused.
// Run: build/bench/bench_hf_load
#include <benchmark/benchmark.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/model/forward.h"
#include "engine/model/hf_writer.h"
#include "harness/run/shapes.h"

namespace {

namespace fs = std::filesystem;

std::string folder() {
  const char* root = std::getenv("QBENCH_BENCH_DIR");
  return (fs::path(root && *root ? root : "/tmp") / "hf-tinyllama-1.1b-bf16").string();
}

double folder_bytes(const std::string& dir) {
  double n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += double(e.file_size());
  return n;
}

// Child: writes the folder.
int write_folder(const std::string& dir) {
  std::fprintf(stderr, "writing the synthetic 1.1B BF16 folder %s (once)...\n", dir.c_str());
  const auto& shape = qbench::run::find_shape("tinyllama-1.1b");
  qbench::Model m = qbench::run::build_random_model(shape, 1, /*share_layer_weights=*/true);
  std::vector<std::string> pieces;
  for (int64_t i = 259; i < shape.config.n_vocab; ++i) pieces.push_back("tok" + std::to_string(i));
  m.tokenizer = qbench::Tokenizer::byte_fallback(pieces);
  m.path = "tinyllama-1.1b (random)";
  const std::string tmp = dir + ".partial";
  fs::remove_all(tmp);
  qbench::write_hf_folder(m, tmp, {qbench::safetensors::DType::BF16, 0});
  fs::rename(tmp, dir);
  return 0;
}

// Runs this program with `args` in a child process; returns its peak RSS in KiB, or -1.
// (A child's ru_maxrss includes what it inherited at fork: the parent itself stays small, which
// is why even writing the folder happens in a child.)
double run_child(const std::vector<std::string>& args) {
  const pid_t pid = fork();
  if (pid == 0) {
    std::vector<char*> argv = {const_cast<char*>("bench_hf_load")};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  int status = 0;
  rusage ru{};
  if (pid < 0 || wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
  return double(ru.ru_maxrss);
}

// Child: load (mode 0: then read every weight byte once) or load and evaluate 128 tokens
// (mode 1), then exit.
int child(const std::string& dir, int mode) {
  const qbench::Model m = qbench::load_model(dir);
  if (mode == 0) {
    uint64_t sum = 0;
    for (const auto& [name, w] : m.linear_weights()) {
      for (size_t i = 0; i < w->bytes(); i += 4096) sum += w->data[i];
    }
    for (size_t i = 0; i < m.tok_embd.bytes(); i += 4096) sum += m.tok_embd.data[i];
    return sum == 1 ? 3 : 0;  // keeps the loop
  }
  qbench::Forward fw(m, 128);
  std::vector<int32_t> ids(128);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(1 + (i * 7919) % 31999);
  std::vector<float> logits;
  fw.eval(ids, logits, 0);
  return 0;
}

void BM_PeakRss(benchmark::State& state) {
  const std::string dir = folder();
  if (!fs::exists(fs::path(dir) / "config.json") && run_child({"--write", dir}) < 0) {
    state.SkipWithError("writing the synthetic folder failed");
    return;
  }
  const int mode = int(state.range(0));
  double peak_kb = 0;
  for (auto _ : state) {
    peak_kb = run_child({"--child", dir, mode ? "1" : "0"});
    if (peak_kb < 0) {
      state.SkipWithError("the child process failed");
      return;
    }
  }
  const double mib = 1024.0 * 1024.0;
  state.counters["peak_rss_MiB"] = peak_kb * 1024.0 / mib;
  state.counters["folder_MiB"] = folder_bytes(dir) / mib;
  state.counters["f32_copy_MiB"] = 2 * folder_bytes(dir) / mib;
  state.counters["peak_over_folder"] = peak_kb * 1024.0 / folder_bytes(dir);
}

BENCHMARK(BM_PeakRss)->Arg(0)->ArgName("load_and_read")->Iterations(1)->Unit(benchmark::kSecond);
BENCHMARK(BM_PeakRss)->Arg(1)->ArgName("forward_128")->Iterations(1)->Unit(benchmark::kSecond);

}  // namespace

int main(int argc, char** argv) {
  if ((argc == 4 && std::strcmp(argv[1], "--child") == 0) || (argc == 3 && std::strcmp(argv[1], "--write") == 0)) {
    try {
      return argc == 3 ? write_folder(argv[2]) : child(argv[2], std::atoi(argv[3]));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "qbench: %s\n", e.what());
      return 2;
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
