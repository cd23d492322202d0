// KL divergence of a model Q against a reference model P on the same text, as llama.cpp's
// --kl-divergence reports it (PROTOCOLS.md), on the positions llama-perplexity scores (the
// second half of each chunk of n_ctx tokens, BOS first).
//
// The reference is computed once and kept compact: per scored position, the top-K reference
// log-probabilities with their token ids, the log of the remaining ("tail") mass, and the
// reference log-probability of the actual next token. KL is computed over the K+1 bins
// {top-K tokens, everything else}: by the log-sum inequality this never exceeds the full-vocabulary
// KL, and the gap is at most the reference's tail mass times the spread of log(p/q) over the
// tail tokens, so it vanishes where the reference is peaked (tested against the exact KL).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/model/model.h"
#include "tasks/perplexity.h"

namespace qbench {

struct ReferenceLogits {
  int64_t n_ctx = 0;
  int64_t n_chunks = 0;
  int64_t top_k = 0;
  int64_t n_positions = 0;
  std::vector<int32_t> top_ids;     // [position][top_k], most likely first
  std::vector<float> top_logp;      // [position][top_k]
  std::vector<float> tail_logp;     // [position]: log(1 - sum of top-K probabilities)
  std::vector<float> target_logp;   // [position]: log p(actual next token)

  size_t bytes() const;
};

// Runs the reference model over the chunks. Same errors as llama_perplexity.
ReferenceLogits compute_reference_logits(const Model& reference, const std::vector<int32_t>& tokens,
                                         const PerplexityOptions& opt, int64_t top_k = 64);

struct KlResult {
  int64_t n_positions = 0;
  // KL(P || Q) per position, nats
  double kld_mean = 0.0, kld_stderr = 0.0, kld_max = 0.0;
  double kld_p99_9 = 0.0, kld_p99 = 0.0, kld_p95 = 0.0, kld_p90 = 0.0, kld_median = 0.0;
  double kld_p10 = 0.0, kld_p5 = 0.0, kld_p1 = 0.0, kld_p0_1 = 0.0;
  // share of positions where P's and Q's most likely tokens agree, with its binomial stderr
  double same_top = 0.0, same_top_stderr = 0.0;
  // perplexities on these positions and ln(PPL(Q)/PPL(P)) with a paired (covariance-aware) error
  double ppl_q = 0.0, ppl_q_stderr = 0.0, ppl_ref = 0.0;
  double ln_ppl_ratio = 0.0, ln_ppl_ratio_stderr = 0.0;
  // Δp = p_Q(next token) - p_P(next token)
  double delta_p_mean = 0.0, delta_p_stderr = 0.0, delta_p_rms = 0.0;
  std::vector<float> kld;  // per position, in order (for paired comparisons)
};

// Q must share the reference's vocabulary; throws qbench::Error otherwise.
KlResult kl_divergence(const Model& q, const ReferenceLogits& ref, const std::vector<int32_t>& tokens,
                       const PerplexityOptions& opt);

}  // namespace qbench
