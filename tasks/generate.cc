#include "tasks/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "engine/core/error.h"
#include "engine/model/forward.h"

namespace qbench {
int32_t sample_token(const float* logits, int64_t n_vocab, const GenerateOptions& opt, Rng& rng) {
  if (opt.temperature <= 0.0f) {
    return int32_t(std::max_element(logits, logits + n_vocab) - logits);
  }
  std::vector<int32_t> idx(static_cast<size_t>(n_vocab));
  std::iota(idx.begin(), idx.end(), 0);
  int64_t k = opt.top_k > 0 ? std::min(opt.top_k, n_vocab) : n_vocab;
  auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  if (k < n_vocab) {
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), by_logit);
    idx.resize(size_t(k));
  } else {
    std::sort(idx.begin(), idx.end(), by_logit);
  }
  const double mx = logits[idx[0]];
  std::vector<double> p(idx.size());
  double sum = 0.0;
  for (size_t i = 0; i < idx.size(); ++i) {
    p[i] = std::exp((double(logits[idx[i]]) - mx) / double(opt.temperature));
    sum += p[i];
  }
  const double u = rng.uniform() * sum;
  double acc = 0.0;
  for (size_t i = 0; i < idx.size(); ++i) {
    acc += p[i];
    if (u < acc) return idx[i];
  }
  return idx.back();
}

GenerateResult generate(const Model& model, const std::vector<int32_t>& prompt,
                        const GenerateOptions& opt, const TokenFn& on_token) {
  const Tokenizer& tok = model.require_tokenizer();
  if (prompt.empty()) throw Error("the prompt is empty (no tokens)");
  int64_t n_ctx = opt.n_ctx > 0 ? opt.n_ctx
                                : std::min<int64_t>(int64_t(prompt.size()) + opt.max_tokens, model.config.n_ctx_train);
  n_ctx = std::max<int64_t>(n_ctx, int64_t(prompt.size()));
  if (int64_t(prompt.size()) > n_ctx) {
    throw Error("the prompt has " + std::to_string(prompt.size()) + " tokens, more than the context of " +
                std::to_string(n_ctx));
  }
  Forward fwd(model, n_ctx);
  GenerateResult r;
  std::vector<float> logits;
  Rng rng(opt.seed);
  auto t0 = std::chrono::steady_clock::now();
  fwd.eval_last(prompt, logits);
  auto t1 = std::chrono::steady_clock::now();
  r.prompt_seconds = std::chrono::duration<double>(t1 - t0).count();
  r.stop_reason = "length";
  std::string text;
  while (int64_t(r.tokens.size()) < opt.max_tokens) {
    const int32_t next = sample_token(logits.data(), model.config.n_vocab, opt, rng);
    if (opt.stop_at_eos && tok.is_eog(next)) {  // EOS or end of turn (llama.cpp's EOG set)
      r.stop_reason = "eos";
      break;
    }
    r.tokens.push_back(next);
    const std::string piece = tok.decode_token(next);
    text += piece;
    if (on_token) on_token(next, piece);
    size_t cut = std::string::npos;
    for (const auto& s : opt.stop) {
      if (!s.empty()) cut = std::min(cut, text.find(s));
    }
    if (cut != std::string::npos) {
      text.resize(cut);
      r.stop_reason = "stop";
      break;
    }
    if (int64_t(r.tokens.size()) >= opt.max_tokens) break;
    if (fwd.n_past() >= n_ctx) {
      r.stop_reason = "context";
      break;
    }
    const int32_t one[1] = {next};
    fwd.eval_last(one, logits);
  }
  r.gen_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  r.text = std::move(text);
  return r;
}

}  // namespace qbench
