#include "tasks/lm.h"

#include <algorithm>
#include <cmath>

#include "engine/core/error.h"
#include "engine/model/forward.h"
#include "tasks/generate.h"

namespace qbench {
namespace {

// log softmax(logits)[target] and whether target is the argmax (lowest id on ties).
std::pair<double, bool> token_logprob(const float* logits, int64_t n_vocab, int32_t target) {
  float mx = logits[0];
  int32_t arg = 0;
  for (int64_t i = 1; i < n_vocab; ++i) {
    if (logits[i] > mx) {
      mx = logits[i];
      arg = int32_t(i);
    }
  }
  double sum = 0.0;
  for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(double(logits[i] - mx));
  return {double(logits[target] - mx) - std::log(sum), arg == target};
}

struct Pair {
  std::vector<int32_t> context;       // with BOS first
  std::vector<int32_t> continuation;
};

Pair encode_pair(const Tokenizer& tok, std::string context, std::string continuation, SpecialText special) {
  // lm-eval: trailing spaces of the context belong to the continuation.
  const size_t keep = context.find_last_not_of(' ');
  const size_t n_trailing = keep == std::string::npos ? context.size() : context.size() - keep - 1;
  continuation = context.substr(context.size() - n_trailing) + continuation;
  context.resize(context.size() - n_trailing);
  Pair p;
  const bool parse = special == SpecialText::Parse;
  const std::vector<int32_t> whole = tok.encode(context + continuation, true, parse);
  p.context = tok.encode(context, true, parse);
  size_t common = 0;
  while (common < p.context.size() && common < whole.size() && p.context[common] == whole[common]) ++common;
  // Normally the context's tokens are a prefix of the whole; when a merge crosses the
  // boundary, the shared prefix is the context and the rest is the continuation.
  p.context.assign(whole.begin(), whole.begin() + std::ptrdiff_t(std::min(common, whole.size() - 1)));
  p.continuation.assign(whole.begin() + std::ptrdiff_t(p.context.size()), whole.end());
  return p;
}

}  // namespace

LanguageModel::LanguageModel(const Model& model, int64_t n_ctx)
    : model_(model), tok_(model.require_tokenizer()), n_ctx_(n_ctx > 0 ? n_ctx : model.config.n_ctx_train) {
  if (n_ctx_ < 2) {
    throw Error(n_ctx > 0 ? "evaluation context (--ctx) must be at least 2 tokens (one to condition on, one to score), got " +
                                std::to_string(n_ctx)
                          : model.path + ": the model's context length is " + std::to_string(n_ctx_) +
                                "; evaluation needs at least 2 tokens (give --ctx)");
  }
}

Loglikelihood LanguageModel::loglikelihood(const std::string& context, const std::string& continuation,
                                           SpecialText special) const {
  return loglikelihoods(context, {continuation}, special)[0];
}

std::vector<Loglikelihood> LanguageModel::loglikelihoods(const std::string& context,
                                                         const std::vector<std::string>& continuations,
                                                         SpecialText special) const {
  const int64_t V = model_.config.n_vocab;
  std::vector<Loglikelihood> out;
  out.reserve(continuations.size());
  std::vector<Pair> pairs;
  for (const auto& c : continuations) {
    if (c.empty()) throw Error("loglikelihood: empty continuation for context '" + context.substr(0, 60) + "'");
    pairs.push_back(encode_pair(tok_, context, c, special));
  }
  std::vector<float> logits;
  for (const Pair& p : pairs) {
    // Left-truncate to the window: keep the last n_ctx tokens of context + continuation,
    // scoring at most n_ctx - 1 continuation tokens.
    std::vector<int32_t> all = p.context;
    all.insert(all.end(), p.continuation.begin(), p.continuation.end());
    int64_t n_cont = int64_t(p.continuation.size());
    Loglikelihood r;
    if (int64_t(all.size()) > n_ctx_) {
      r.truncated = int64_t(all.size()) - n_ctx_;
      all.erase(all.begin(), all.end() - n_ctx_);
      r.unscored = n_cont - std::min<int64_t>(n_cont, n_ctx_ - 1);
      n_cont -= r.unscored;
    }
    const int64_t n = int64_t(all.size());
    Forward fwd(model_, n);
    // Logits at positions n - n_cont - 1 .. n - 2 predict the continuation tokens.
    fwd.eval(std::span<const int32_t>(all.data(), size_t(n - 1)), logits, n - n_cont - 1);
    for (int64_t i = 0; i < n_cont; ++i) {
      const auto [lp, greedy] = token_logprob(logits.data() + i * V, V, all[size_t(n - n_cont + i)]);
      r.logprob += lp;
      r.greedy = r.greedy && greedy;
    }
    r.n_tokens = n_cont;
    out.push_back(r);
  }
  return out;
}

RollingLoglikelihood LanguageModel::loglikelihood_rolling(const std::string& text) const {
  // lm-eval's get_rolling_token_windows with context_len 1: the first window is BOS + the first
  // n_ctx - 1 tokens; each later window predicts the next n_ctx - 1 tokens given the one token
  // before them. Every token of the text is predicted exactly once.
  const std::vector<int32_t> toks = tok_.encode(text, false);
  const int64_t V = model_.config.n_vocab;
  RollingLoglikelihood r;
  const int64_t step = n_ctx_ - 1;
  std::vector<float> logits;
  for (int64_t start = 0; start < int64_t(toks.size()); start += step) {
    const int64_t n_pred = std::min<int64_t>(step, int64_t(toks.size()) - start);
    std::vector<int32_t> window;
    window.push_back(start == 0 ? tok_.bos() : toks[size_t(start - 1)]);
    window.insert(window.end(), toks.begin() + start, toks.begin() + start + n_pred);
    Forward fwd(model_, int64_t(window.size()));
    fwd.eval(std::span<const int32_t>(window.data(), size_t(n_pred)), logits, 0);
    for (int64_t i = 0; i < n_pred; ++i) {
      r.logprob += token_logprob(logits.data() + i * V, V, window[size_t(i + 1)]).first;
    }
    r.n_tokens += n_pred;
  }
  return r;
}

Generation LanguageModel::generate_until(const std::string& context, const std::vector<std::string>& stops,
                                         int64_t max_tokens, SpecialText special) const {
  std::vector<int32_t> prompt = tok_.encode(context, true, special == SpecialText::Parse);
  int64_t truncated = 0;
  if (int64_t(prompt.size()) + max_tokens > n_ctx_) {  // keep the end of the prompt
    const int64_t keep = std::min<int64_t>(std::max<int64_t>(1, n_ctx_ - max_tokens), int64_t(prompt.size()));
    truncated = int64_t(prompt.size()) - keep;
    prompt.erase(prompt.begin(), prompt.end() - keep);
  }
  GenerateOptions opt;
  opt.max_tokens = max_tokens;
  opt.stop = stops;
  opt.n_ctx = std::min<int64_t>(n_ctx_, int64_t(prompt.size()) + max_tokens);
  const GenerateResult r = generate(model_, prompt, opt);
  return {r.text, int64_t(r.tokens.size()), truncated};
}

}  // namespace qbench
