// Tokenizer throughput (MB/s of UTF-8 input) on wikitext-2's test text, for SentencePiece (llama
// SPM vocabulary) and byte-level BPE (GPT-2 GGUF, Llama 3 and Qwen2 tokenizer.json). Needs
// $QBENCH_SHARED (datasets/wikitext2/wiki.test.raw and tokenizers/); a missing file skips that
// benchmark. Run: QBENCH_SHARED=/work/shared build/bench/bench_tokenizer
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "engine/core/mapped_file.h"
#include "engine/tokenizer/tokenizer.h"

namespace {

std::string shared(const std::string& rel) {
  const char* root = std::getenv("QBENCH_SHARED");
  if (root == nullptr || *root == '\0') return {};
  const auto p = std::filesystem::path(root) / rel;
  return std::filesystem::exists(p) ? p.string() : std::string();
}

void BM_Encode(benchmark::State& state, const std::string& vocab_rel) {
  const std::string text_path = shared("datasets/wikitext2/wiki.test.raw");
  const std::string vocab = shared(vocab_rel);
  if (text_path.empty() || vocab.empty()) {
    state.SkipWithError(("set QBENCH_SHARED: missing wiki.test.raw or " + vocab_rel).c_str());
    return;
  }
  const std::string text = qbench::read_file(text_path);
  const qbench::Tokenizer tok = qbench::Tokenizer::from_file(vocab);
  size_t n_tokens = 0;
  for (auto _ : state) {
    const auto ids = tok.encode(text, false);
    n_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
  state.counters["tokens"] = double(n_tokens);
  state.counters["bytes"] = double(text.size());
}

BENCHMARK_CAPTURE(BM_Encode, spm_llama, std::string("tokenizers/llama.cpp/ggml-vocab-llama-spm.gguf"))
    ->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Encode, bpe_gpt2, std::string("tokenizers/llama.cpp/ggml-vocab-gpt-2.gguf"))
    ->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Encode, bpe_llama3, std::string("tokenizers/hf/llama3/tokenizer.json"))
    ->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK_CAPTURE(BM_Encode, bpe_qwen2, std::string("tokenizers/hf/qwen2/tokenizer.json"))
    ->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
