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

// The message of the qbench::Error that f throws, or "" when it throws none.
template <typename F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
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

// A low-precision KV cache (llama.cpp's -ctk / -ctv types) on a tiny model with 32-wide heads:
// the cache holds each type's bytes (n_layer x n_ctx x n_head_kv rows of row_bytes(type, 32)),
// prefill and single-token decodes agree (both attend over the stored keys and values; see the
// tolerance below), and the
// logits move away from the f32 cache's by an amount that grows as the type gets coarser. The
// values themselves are checked against llama.cpp's (HfCli.KvCacheTypesAgreeWithLlamaPerplexity).
TEST(Forward, LowPrecisionKvCache) {
  const std::string dir = test::temp_dir("forward-kv");
  test::TinySpec s;
  s.n_embd = 64;
  s.n_head = 2;
  s.n_head_kv = 1;  // head size 32, grouped-query attention
  Model m = load_model(test::write_tiny_model(dir + "/m.gguf", s));
  const int64_t n = 40;
  const auto toks = some_tokens(n, m.config.n_vocab);
  std::vector<float> ref;
  Forward(m, n).eval(toks, ref, 0);
  float q8_diff = 0, q4_diff = 0;
  for (const char* name : {"f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl", "q8_0/q4_0", "f32/q4_0"}) {
    SCOPED_TRACE(name);
    m.kv_cache = parse_kv_cache(name);
    Forward f(m, n);
    const size_t rows = size_t(s.n_layer * n * s.n_head_kv);
    EXPECT_EQ(f.kv_cache_bytes(), rows * (row_bytes(type_traits(m.kv_cache.k), 32) + row_bytes(type_traits(m.kv_cache.v), 32)));
    std::vector<float> all, one, stepwise;
    f.eval(toks, all, 0);
    Forward g(m, n);
    for (int64_t i = 0; i < n; ++i) {
      g.eval(std::span<const int32_t>(&toks[size_t(i)], 1), one, 0);
      stepwise.insert(stepwise.end(), one.begin(), one.end());
    }
    // The keys and values of prefill (a GEMM) and of decode (a GEMV) differ in the last bits,
    // which can round to another 4- or 5-bit code of the stored key: up to 1.8% of the largest
    // logit on this model (q4_0). 8 and 16 bits keep the float tolerance.
    const bool coarse = type_traits(m.kv_cache.k).block_size == 32 && m.kv_cache.k != TensorType::Q8_0;
    EXPECT_LT(max_rel_diff(all, stepwise), coarse ? 3e-2f : 1e-3f);
    const float diff = max_rel_diff(all, ref);
    EXPECT_GT(diff, 0.0f) << "the cache type changed nothing";
    if (std::string(name) == "q8_0") q8_diff = diff;
    if (std::string(name) == "q4_0") q4_diff = diff;
  }
  EXPECT_LT(q8_diff, q4_diff);
  EXPECT_EQ(kv_cache_name(parse_kv_cache("q8_0/q4_0")), "q8_0/q4_0");
  EXPECT_EQ(kv_cache_name(parse_kv_cache("q5_1")), "q5_1");
}

// The rotation against an explicit Sylvester Hadamard matrix (H_1 = [1], H_2n = [[H, H], [H, -H]],
// divided by sqrt(n)) in double: each block of n values is H x; applied twice it gives x back.
TEST(Forward, HadamardBlocksAreTheNormalizedSylvesterTransform) {
  for (int64_t n : {1, 2, 64, 128}) {
    SCOPED_TRACE(n);
    std::vector<std::vector<double>> h = {{1.0}};
    while (int64_t(h.size()) < n) {
      const size_t m = h.size();
      std::vector<std::vector<double>> g(2 * m, std::vector<double>(2 * m));
      for (size_t i = 0; i < m; ++i) {
        for (size_t j = 0; j < m; ++j) {
          g[i][j] = g[i][j + m] = g[i + m][j] = h[i][j];
          g[i + m][j + m] = -h[i][j];
        }
      }
      h = std::move(g);
    }
    std::vector<float> x(size_t(3 * n));
    for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::sin(0.7 * double(i) + 0.3)) * (i % 5 == 0 ? 8.0f : 1.0f);
    std::vector<float> y = x;
    hadamard_blocks(y.data(), int64_t(y.size()), n);
    for (int64_t b = 0; b < 3; ++b) {
      for (int64_t i = 0; i < n; ++i) {
        double ref = 0, mag = 0;
        for (int64_t j = 0; j < n; ++j) {
          ref += h[size_t(i)][size_t(j)] * x[size_t(b * n + j)];
          mag += std::fabs(x[size_t(b * n + j)]);
        }
        ref /= std::sqrt(double(n));
        ASSERT_NEAR(y[size_t(b * n + i)], ref, 1e-6 * mag) << "block " << b << " value " << i;
      }
    }
    hadamard_blocks(y.data(), int64_t(y.size()), n);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], x[i], 1e-5 * (1 + std::fabs(x[i])));
  }
  // llama.cpp's rule for the block sizes: keys the largest power of two >= 64 dividing the head
  // size, values 64, both only for quantized types and head sizes that are multiples of 64.
  const KvCacheTypes q4 = parse_kv_cache("q4_0");
  EXPECT_EQ(kv_key_rotation(q4, 64), 64);
  EXPECT_EQ(kv_key_rotation(q4, 128), 128);
  EXPECT_EQ(kv_key_rotation(q4, 192), 64);
  EXPECT_EQ(kv_key_rotation(q4, 256), 256);
  EXPECT_EQ(kv_value_rotation(q4, 256), 64);
  EXPECT_EQ(kv_key_rotation(q4, 32), 0);
  EXPECT_EQ(kv_key_rotation(parse_kv_cache("f16"), 128), 0);
  EXPECT_EQ(kv_key_rotation(parse_kv_cache("f32/q8_0"), 128), 0);
  EXPECT_EQ(kv_value_rotation(parse_kv_cache("f32/q8_0"), 128), 64);
  EXPECT_EQ(kv_key_rotation(parse_kv_cache("q4_0,rot=off"), 128), 0);
  EXPECT_EQ(kv_cache_name(parse_kv_cache("q8_0/q4_0,rot=off")), "q8_0/q4_0,rot=off");
  EXPECT_NE(message_of([] { parse_kv_cache("q4_0,rot=on"); }).find("expected rot=off or rot=auto"), std::string::npos);
}

TEST(Forward, KvCacheTypesAreCheckedAsLlamaCppChecksThem) {
  const std::string dir = test::temp_dir("forward-kv-errors");
  Model m = load_model(test::write_tiny_model(dir + "/m.gguf"));  // head size 8
  m.kv_cache = parse_kv_cache("f16");
  EXPECT_NO_THROW(Forward(m, 4));
  m.kv_cache = parse_kv_cache("f32/q8_0");
  EXPECT_EQ(message_of([&] { Forward(m, 4); }),
            "KV cache value type q8_0: the head size 8 is not a multiple of its block size 32 (llama.cpp refuses this "
            "model with it too)");
  for (const char* bad : {"q4_K", "q9_0", "", "q8_0/", "f16/q2_K"}) {
    SCOPED_TRACE(bad);
    const std::string e = message_of([&] { parse_kv_cache(bad); });
    EXPECT_NE(e.find("expected one of f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl"), std::string::npos) << e;
  }
  m.kv_cache = {TensorType::Q4_K, TensorType::F32};
  EXPECT_NE(message_of([&] { Forward(m, 4); }).find("is not one llama.cpp's -ctk / -ctv accept"), std::string::npos);
}

}  // namespace
}  // namespace qbench
