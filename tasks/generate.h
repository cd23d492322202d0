// Text generation: the "generate_until" request kind. Greedy by default (argmax, lowest token id
// on ties); with temperature > 0, samples from softmax(logits / T) restricted to the top-k.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/core/rng.h"
#include "engine/model/model.h"

namespace qbench {

struct GenerateOptions {
  int64_t max_tokens = 64;
  float temperature = 0.0f;  // <= 0: greedy
  int64_t top_k = 0;         // 0: whole vocabulary
  uint64_t seed = 42;
  bool stop_at_eos = true;
  std::vector<std::string> stop;  // stop strings: generation ends once the text contains one
  int64_t n_ctx = 0;              // 0: prompt + max_tokens, capped at the model's context
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated tokens only
  std::string text;             // their text, cut before the first stop string
  std::string stop_reason;      // "eos", "stop", "length", "context"
  double prompt_seconds = 0.0, gen_seconds = 0.0;
};

// Called with each new token and its text piece (for streaming output).
using TokenFn = std::function<void(int32_t, const std::string&)>;

// Throws qbench::Error when the prompt does not fit in the context.
GenerateResult generate(const Model& model, const std::vector<int32_t>& prompt,
                        const GenerateOptions& opt, const TokenFn& on_token = {});

// Index of the chosen token given the options (greedy, or sampled with `rng`).
int32_t sample_token(const float* logits, int64_t n_vocab, const GenerateOptions& opt, Rng& rng);

}  // namespace qbench
