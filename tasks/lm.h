// The three requests a model answers, as lm-evaluation-harness names them:
//   loglikelihood(context, continuation)  -> log P(continuation | context), and whether the
//                                            continuation is the greedy one;
//   loglikelihood_rolling(text)           -> log P(text), every token scored once;
//   generate_until(context, stops, n)     -> greedy text until a stop string or n tokens.
// Task kinds (tasks/task.h) are built only on these, so any model or quantized variant that
// answers them can be evaluated.
//
// Tokenization follows lm-eval's _encode_pair: trailing spaces of the context move to the
// continuation, the whole string is tokenized once, and the continuation tokens are the ones
// after the context's own tokens. Inputs longer than the context window keep their last
// n_ctx tokens (left truncation), as lm-eval does; each result says how many tokens were cut, so
// evaluation can report the items it truncated instead of scoring them silently on less.
// The window must hold at least 2 tokens (one to condition on, one to score).
//
// Every request builds its own Forward, so one LanguageModel may serve many threads at once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model/model.h"

namespace qbench {

// How control-token text in a request ("<|eot_id|>", "</s>") is tokenized: as plain text (the
// default, as llama-perplexity reads text), or as the tokens themselves (a chat template's
// rendering: llama.cpp tokenizes a formatted chat so, and Hugging Face tokenizers always do).
enum class SpecialText { Plain, Parse };

struct Loglikelihood {
  double logprob = 0.0;    // sum over continuation tokens of log p (natural log)
  bool greedy = true;      // every continuation token was the argmax
  int64_t n_tokens = 0;    // continuation tokens scored
  int64_t truncated = 0;   // tokens cut from the left to fit the window (context, then continuation)
  int64_t unscored = 0;    // continuation tokens among them (not in n_tokens)
};

struct RollingLoglikelihood {
  double logprob = 0.0;
  int64_t n_tokens = 0;
};

struct Generation {
  std::string text;  // cut before the first stop string
  int64_t n_tokens = 0;
  int64_t truncated = 0;  // prompt tokens cut from the left to leave room for max_tokens
};

class LanguageModel {
 public:
  // n_ctx: window in tokens (0: the model's training context). Throws qbench::Error when the
  // window is shorter than 2 tokens.
  explicit LanguageModel(const Model& model, int64_t n_ctx = 0);

  Loglikelihood loglikelihood(const std::string& context, const std::string& continuation,
                              SpecialText special = SpecialText::Plain) const;
  // Log-likelihoods of several continuations of one context (multiple choice).
  std::vector<Loglikelihood> loglikelihoods(const std::string& context, const std::vector<std::string>& continuations,
                                            SpecialText special = SpecialText::Plain) const;
  RollingLoglikelihood loglikelihood_rolling(const std::string& text) const;
  Generation generate_until(const std::string& context, const std::vector<std::string>& stops, int64_t max_tokens,
                            SpecialText special = SpecialText::Plain) const;

  const Model& model() const { return model_; }
  int64_t n_ctx() const { return n_ctx_; }

 private:
  const Model& model_;
  const Tokenizer& tok_;
  int64_t n_ctx_;
};

}  // namespace qbench
