#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <cmath>
#include <numeric>

#include "engine/core/error.h"
#include "engine/model/forward.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

namespace qbench {
namespace {

float max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float scale = 0.0f, diff = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, std::fabs(a[i]));
    diff = std::max(diff, std::fabs(a[i] - b[i]));
  }
  return diff / std::max(scale, 1e-30f);
}

std::vector<int32_t> some_tokens(int64_t n, int64_t vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = int32_t((i * 37 + 11) % vocab);
  t[0] = 1;
  return t;
}

// Prefill of n tokens and n single-token decodes must give the same logits (max difference
// relative to the largest logit below 1e-4).
void expect_prefill_matches_decode(const Model& m, int64_t n) {
  const auto toks = some_tokens(n, m.config.n_vocab);
  Forward a(m, n), b(m, n);
  std::vector<float> all, one, stepwise;
  a.eval(toks, all, 0);
  for (int64_t i = 0; i < n; ++i) {
    b.eval(std::span<const int32_t>(&toks[size_t(i)], 1), one, 0);
    stepwise.insert(stepwise.end(), one.begin(), one.end());
  }
  EXPECT_LT(max_rel_diff(all, stepwise), 1e-4f);
  EXPECT_EQ(a.n_past(), n);
}

TEST(Forward, PrefillMatchesDecodeOnStories260K) {
  QBENCH_SHARED_FILE(path, "models/stories260K.gguf");
  expect_prefill_matches_decode(load_model(path), 100);
}

TEST(Forward, PrefillMatchesDecodeOnTinyModelsOfEveryVariant) {
  const std::string dir = test::temp_dir("forward-variants");
  test::TinySpec s;
  expect_prefill_matches_decode(load_model(test::write_tiny_model(dir + "/a.gguf", s)), 40);
  s.tied = true;
  s.n_head_kv = 4;  // multi-head attention, tied output
  expect_prefill_matches_decode(load_model(test::write_tiny_model(dir + "/b.gguf", s)), 40);
}

TEST(Forward, GgufAndLlama2cFormsGiveTheSameLogits) {
  QBENCH_SHARED_FILE(gguf, "models/stories260K.gguf");
  QBENCH_SHARED_FILE(bin, "models/stories260K.bin");
  QBENCH_SHARED_FILE(tok, "models/tok512.bin");
  const Model a = load_model(gguf), b = load_model(bin, tok);
  EXPECT_TRUE(b.tied_output);
  EXPECT_FALSE(a.tied_output);
  const auto toks = some_tokens(64, 512);
  Forward fa(a, 64), fb(b, 64);
  std::vector<float> la, lb;
  fa.eval(toks, la, 0);
  fb.eval(toks, lb, 0);
  EXPECT_EQ(la, lb);  // same weights, same arithmetic: bit-identical
}

TEST(Forward, ResultDoesNotDependOnThreadCountOrBatchSplitting) {
  QBENCH_SHARED_FILE(path, "models/stories260K.gguf");
  const Model m = load_model(path);
  const int64_t n = kMaxBatch + 88;  // forces two batches
  const auto toks = some_tokens(n, 512);
  std::vector<float> one_thread, two_threads;
  {
    tbb::global_control c(tbb::global_control::max_allowed_parallelism, 1);
    Forward f(m, n);
    f.eval(toks, one_thread, n - 8);
  }
  {
    tbb::global_control c(tbb::global_control::max_allowed_parallelism, 2);
    Forward f(m, n);
    f.eval(toks, two_threads, n - 8);
  }
  EXPECT_EQ(one_thread, two_threads);
  ASSERT_EQ(one_thread.size(), size_t(8 * 512));
  // Splitting the same tokens into two evals continues from the KV cache.
  Forward f(m, n);
  std::vector<float> first, second;
  f.eval(std::span<const int32_t>(toks.data(), 300), first, 299);
  f.eval(std::span<const int32_t>(toks.data() + 300, size_t(n - 300)), second, n - 300 - 8);
  EXPECT_LT(max_rel_diff(second, one_thread), 1e-4f);
}

TEST(Forward, GreedyGenerationReproducesThePublishedStories260KSample) {
  QBENCH_SHARED_FILE(path, "models/stories260K.gguf");
  const Model m = load_model(path);
  Forward f(m, 64);
  std::vector<int32_t> toks = {1};
  std::vector<float> logits;
  f.eval_last(toks, logits);
  for (int i = 0; i < 30; ++i) {
    const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    toks.push_back(next);
    f.eval_last(std::span<const int32_t>(&toks.back(), 1), logits);
  }
  const std::string text = m.tokenizer.decode(toks);
  const std::string expected = " Once upon a time, there was a little girl named Lily. She loved to";
  EXPECT_EQ(text.substr(0, expected.size()), expected);
}

TEST(Forward, RejectsTokensOutsideTheVocabularyAndContextOverflow) {
  const std::string dir = test::temp_dir("forward-errors");
  const Model m = load_model(test::write_tiny_model(dir + "/m.gguf"));
  Forward f(m, 4);
  std::vector<float> logits;
  const std::vector<int32_t> bad = {1, 99999};
  EXPECT_THROW(f.eval(bad, logits, 0), Error);
  const std::vector<int32_t> five = {1, 2, 3, 4, 5};
  EXPECT_THROW(f.eval(five, logits, 0), Error);
}

}  // namespace
}  // namespace qbench
