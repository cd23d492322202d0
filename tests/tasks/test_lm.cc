#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "engine/core/error.h"
#include "tasks/kl.h"
#include "tasks/lm.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

namespace qbench {
namespace {

std::vector<std::vector<float>> random_table(int64_t V, uint32_t seed, float sd = 2.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<std::vector<float>> t(static_cast<size_t>(V), std::vector<float>(static_cast<size_t>(V)));
  for (auto& row : t) for (auto& x : row) x = d(rng);
  return t;
}

double log_softmax(const std::vector<float>& row, int32_t i) {
  double mx = row[0];
  for (float x : row) mx = std::max(mx, double(x));
  double s = 0;
  for (float x : row) s += std::exp(double(x) - mx);
  return double(row[size_t(i)]) - mx - std::log(s);
}

class BigramModel : public ::testing::Test {
 protected:
  void SetUp() override {
    table_ = random_table(300, 11);
    model_ = load_model(test::write_bigram_model(test::temp_dir("bigram") + "/m.gguf", table_));
  }
  // Hand computation: sum of log p(next | prev) over the continuation's tokens.
  double expected(const std::vector<int32_t>& all, size_t n_context) const {
    double s = 0;
    for (size_t i = n_context; i < all.size(); ++i) s += log_softmax(table_[size_t(all[i - 1])], all[i]);
    return s;
  }
  std::vector<std::vector<float>> table_;
  Model model_;
};

TEST_F(BigramModel, LoglikelihoodIsTheHandComputedSum) {
  const LanguageModel lm(model_);
  const Tokenizer& tok = model_.tokenizer;
  for (const auto& [ctx, cont] : std::vector<std::pair<std::string, std::string>>{
           {"the ant", " and the hen"}, {"hat", "s"}, {"Question: 2+2=", " 4"}, {"a ", "net"}}) {
    const Loglikelihood r = lm.loglikelihood(ctx, cont);
    // lm-eval's split: trailing spaces move to the continuation; continuation = whole minus context
    std::string c = ctx, k = cont;
    while (!c.empty() && c.back() == ' ') {
      k.insert(k.begin(), ' ');
      c.pop_back();
    }
    const auto whole = tok.encode(c + k, true), context = tok.encode(c, true);
    ASSERT_EQ(std::vector<int32_t>(whole.begin(), whole.begin() + std::ptrdiff_t(context.size())), context) << ctx;
    EXPECT_EQ(r.n_tokens, int64_t(whole.size() - context.size())) << ctx;
    EXPECT_NEAR(r.logprob, expected(whole, context.size()), 1e-3) << ctx << "|" << cont;
  }
}

// A chat template's markers ("</s>", "<s>" between Llama 2 turns) become their tokens with
// SpecialText::Parse, and stay text (one token per byte here) by default.
TEST_F(BigramModel, SpecialTextIsParsedOnlyWhenAsked) {
  const LanguageModel lm(model_);
  const Tokenizer& tok = model_.tokenizer;
  const Loglikelihood plain = lm.loglikelihood("hat", "</s>"), parsed = lm.loglikelihood("hat", "</s>", SpecialText::Parse);
  EXPECT_GT(plain.n_tokens, 1);
  EXPECT_EQ(parsed.n_tokens, 1);
  const auto ctx = tok.encode("hat", true);
  std::vector<int32_t> all = ctx;
  all.push_back(tok.eos());
  EXPECT_NEAR(parsed.logprob, expected(all, ctx.size()), 1e-3);
  // Text without markers reads the same either way.
  EXPECT_EQ(lm.loglikelihood("the ant", " and the hen", SpecialText::Parse).logprob,
            lm.loglikelihood("the ant", " and the hen").logprob);
}

TEST(BigramGreedy, GreedyFlagAndGenerationFollowTheArgmax) {
  // Digits have no token of their own in the tiny vocabulary, so they stay byte tokens and
  // re-tokenizing generated digits gives back the generated tokens.
  auto table = random_table(300, 11);
  const Tokenizer tok = test::tiny_tokenizer(300);
  const int32_t last = tok.encode("the", true).back();
  auto digit = [](char c) { return int32_t(3 + c); };
  table[size_t(last)][size_t(digit('1'))] = 50;
  table[size_t(digit('1'))][size_t(digit('2'))] = 50;
  table[size_t(digit('2'))][size_t(digit('3'))] = 50;
  table[size_t(digit('3'))][size_t(digit('1'))] = 50;
  const Model m = load_model(test::write_bigram_model(test::temp_dir("bigram-greedy") + "/m.gguf", table));
  const LanguageModel lm(m);
  EXPECT_EQ(lm.generate_until("the", {}, 5).text, "12312");
  EXPECT_EQ(lm.generate_until("the", {"3"}, 5).text, "12");  // cut before the stop string
  EXPECT_TRUE(lm.loglikelihood("the", "12312").greedy);
  EXPECT_FALSE(lm.loglikelihood("the", "12313").greedy);
  EXPECT_NEAR(lm.loglikelihood("the", "12312").logprob, 0.0, 1e-3);  // each step p ~ 1
}

TEST_F(BigramModel, RollingLoglikelihoodScoresEveryTokenOnce) {
  const std::string text = "the ant and the hen eat at ten in the sun and then the ant hates the heat";
  const auto toks = model_.tokenizer.encode(text, false);
  std::vector<int32_t> with_bos = {model_.tokenizer.bos()};
  with_bos.insert(with_bos.end(), toks.begin(), toks.end());
  for (int64_t n_ctx : {8, 16, 1000}) {
    const LanguageModel lm(model_, n_ctx);
    const RollingLoglikelihood r = lm.loglikelihood_rolling(text);
    EXPECT_EQ(r.n_tokens, int64_t(toks.size()));
    EXPECT_NEAR(r.logprob, expected(with_bos, 1), 1e-3) << n_ctx;  // a bigram needs 1 token of context
  }
}

// A window of 1 token has nothing to condition on: an error at construction, never an abort in
// the forward pass (and no endless rolling loop with a step of 0).
TEST_F(BigramModel, ContextShorterThanTwoTokensIsAnError) {
  EXPECT_THROW(LanguageModel(model_, 1), Error);
  const LanguageModel lm(model_, 2);
  EXPECT_EQ(lm.loglikelihood("the ant", " and").n_tokens, 1);
  EXPECT_GT(lm.loglikelihood_rolling("the ant and the hen").n_tokens, 0);
  test::TinySpec s;
  s.n_ctx = 1;  // a model whose context_length is 1, evaluated at its own context
  const Model one = load_model(test::write_tiny_model(test::temp_dir("lm-ctx1") + "/m.gguf", s));
  try {
    LanguageModel bad(one);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("context length is 1"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(LanguageModel(one, 8));
}

// Left truncation is lm-eval's rule, but each result says how many tokens it cut and how many
// continuation tokens went unscored, so evaluation can report it.
TEST_F(BigramModel, TruncationIsCounted) {
  const std::string context = "the ant and the hen eat at ten in the sun";
  const std::string cont = " and then the ant";
  const LanguageModel wide(model_, 1000);
  const Loglikelihood full = wide.loglikelihood(context, cont);
  EXPECT_EQ(full.truncated, 0);
  EXPECT_EQ(full.unscored, 0);
  const LanguageModel narrow(model_, 3);
  const Loglikelihood cut = narrow.loglikelihood(context, cont);
  EXPECT_GT(cut.truncated, 0);
  EXPECT_EQ(cut.n_tokens, 2);
  EXPECT_EQ(cut.unscored, full.n_tokens - 2);
  const Generation g = narrow.generate_until(context, {}, 2);
  EXPECT_GT(g.truncated, 0);
  EXPECT_EQ(wide.generate_until(context, {}, 2).truncated, 0);
}

TEST(KlDivergence, ZeroAgainstItselfAndExactForFullTopK) {
  const std::string dir = test::temp_dir("kl");
  const Model p = load_model(test::write_bigram_model(dir + "/p.gguf", random_table(300, 1, 4.0f)));
  auto table_q = random_table(300, 1, 4.0f);
  std::mt19937 rng(9);
  std::normal_distribution<float> noise(0.0f, 0.3f);
  for (auto& row : table_q) for (auto& x : row) x += noise(rng);
  const Model q = load_model(test::write_bigram_model(dir + "/q.gguf", table_q));
  std::vector<int32_t> tokens(400);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t(3 + (i * 31) % 290);
  PerplexityOptions opt;
  opt.n_ctx = 32;
  const auto ref_full = compute_reference_logits(p, tokens, opt, 300);
  const auto ref_top = compute_reference_logits(p, tokens, opt, 64);
  const KlResult self = kl_divergence(p, ref_top, tokens, opt);
  EXPECT_LT(self.kld_max, 1e-5);
  EXPECT_EQ(self.same_top, 1.0);
  EXPECT_NEAR(self.ln_ppl_ratio, 0.0, 1e-6);

  const KlResult exact = kl_divergence(q, ref_full, tokens, opt);
  const KlResult approx = kl_divergence(q, ref_top, tokens, opt);
  // Exact KL by hand at the first scored position: chunk 0, position 16 predicts token 17.
  const int32_t t = tokens[16];
  double kl = 0;
  const auto tp = random_table(300, 1, 4.0f);
  for (int32_t v = 0; v < 300; ++v) {
    const double lp = log_softmax(tp[size_t(t)], v), lq = log_softmax(table_q[size_t(t)], v);
    kl += std::exp(lp) * (lp - lq);
  }
  EXPECT_NEAR(exact.kld[0], kl, 1e-4);
  EXPECT_GT(exact.kld_mean, 0.01);
  // Top-K never exceeds the exact KL, and the gap is at most the tail mass times the spread of
  // log(p/q) over the tail (here |noise| < 1.5 per logit, so a spread under 3).
  for (size_t i = 0; i < exact.kld.size(); ++i) {
    EXPECT_LE(approx.kld[i], exact.kld[i] + 1e-5);
    EXPECT_LE(exact.kld[i] - approx.kld[i], 3.0 * std::exp(ref_top.tail_logp[i]) + 1e-5);
  }
  // PPL(Q) on the scored positions is llama-perplexity's (up to float storage of log p).
  EXPECT_NEAR(exact.ppl_q, llama_perplexity(q, tokens, opt).ppl, 1e-6 * exact.ppl_q);
  EXPECT_LE(exact.kld_median, exact.kld_p90);
  EXPECT_LE(exact.kld_p90, exact.kld_max);
}

}  // namespace
}  // namespace qbench

namespace qbench {
namespace {

TEST(Perplexity, RollingStatisticsScoreEveryPositionOfEachChunk) {
  const auto table = random_table(300, 5);
  const Model m = load_model(test::write_bigram_model(test::temp_dir("rolling") + "/m.gguf", table));
  std::vector<int32_t> tokens(200);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t(3 + (i * 17) % 290);
  PerplexityOptions opt;
  opt.n_ctx = 32;
  opt.rolling = true;
  const PerplexityResult r = llama_perplexity(m, tokens, opt);
  double expected = 0;
  for (int64_t c = 0; c < r.n_chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * 32, tokens.begin() + (c + 1) * 32);
    chunk[0] = 1;  // BOS
    for (size_t p = 0; p + 1 < chunk.size(); ++p) expected -= log_softmax(table[size_t(chunk[p])], chunk[p + 1]);
  }
  EXPECT_EQ(r.rolling.count, r.n_chunks * 31);
  EXPECT_NEAR(r.rolling.sum, expected, 1e-6 * std::fabs(expected));
  EXPECT_GT(r.rolling_bytes, 0);
  EXPECT_NEAR(r.bits_per_byte, r.rolling.sum / (double(r.rolling_bytes) * std::log(2.0)), 1e-12);
  // The token-level numbers are unchanged by also scoring the rest.
  opt.rolling = false;
  EXPECT_EQ(llama_perplexity(m, tokens, opt).stats.sum, r.stats.sum);
}

}  // namespace
}  // namespace qbench
