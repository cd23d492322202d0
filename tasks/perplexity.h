// Token-level perplexity following llama.cpp's llama-perplexity exactly (PROTOCOLS.md):
//  - the whole text is tokenized once, with BOS prepended when the vocabulary says add_bos;
//  - n_chunk = n_tokens / n_ctx (the tail is dropped), optionally limited by max_chunks;
//  - chunk i is tokens [i*n_ctx, (i+1)*n_ctx) with its first token replaced by BOS (add_bos);
//  - the logits at positions n_ctx/2 .. n_ctx-2 score the next token (n_ctx/2 - 1 per chunk);
//  - nll = max + log(sum exp(logit - max)) - logit[target], summed in double;
//  - PPL = exp(sum/count), error = PPL * sqrt((sum2/count - mean^2) / (count - 1)).
// Chunks are independent (the KV cache starts empty for each) and run in parallel; per-chunk
// sums are combined in chunk order, so the result is identical for any thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "engine/model/model.h"

namespace qbench {

// Mergeable accumulator of per-token negative log-likelihoods (STYLE.md, convention 10).
struct NllStats {
  double sum = 0.0;
  double sum2 = 0.0;
  int64_t count = 0;

  void add(double nll) {
    sum += nll;
    sum2 += nll * nll;
    ++count;
  }
  void merge(const NllStats& o) {
    sum += o.sum;
    sum2 += o.sum2;
    count += o.count;
  }
  double mean() const { return count ? sum / double(count) : 0.0; }
  double ppl() const;
  double ppl_stderr() const;  // llama.cpp's formula
};

struct PerplexityOptions {
  int64_t n_ctx = 512;
  int64_t max_chunks = -1;  // < 0: all
  bool keep_token_nll = false;
  // Also score every position of each chunk (tokens 1 .. n_ctx-1 given the ones before) for
  // lm-eval-style word and byte perplexity from the same pass. Bytes and words are those of the
  // scored tokens' text (a chunk's first token, replaced by BOS, and the dropped tail are not
  // counted); qbench eval's rolling_loglik tasks follow lm-eval's document windows exactly.
  bool rolling = false;
};

// Position (within a chunk) of the first logits row a ChunkFn receives.
inline int64_t first_logit_position(const PerplexityOptions& o) { return o.rolling ? 0 : o.n_ctx / 2; }

struct PerplexityResult {
  int64_t n_ctx = 0;
  int64_t n_text_tokens = 0;  // including the leading BOS when added
  int64_t n_chunks = 0;
  NllStats stats;
  double ppl = 0.0, ppl_stderr = 0.0;
  double seconds = 0.0;
  double tokens_per_second = 0.0;  // evaluated tokens (n_chunks * n_ctx) per second
  std::vector<float> token_nll;    // per scored token, chunk order (when keep_token_nll)
  // With opt.rolling: every position of every chunk.
  NllStats rolling;
  int64_t rolling_bytes = 0, rolling_words = 0;
  double word_perplexity = 0.0, byte_perplexity = 0.0, bits_per_byte = 0.0;
};

// Progress callback: chunks done, chunks total.
using ProgressFn = std::function<void(int64_t, int64_t)>;

// Evaluates the chunks of the protocol above in parallel and calls
// fn(chunk, logits, chunk_tokens) for each, possibly concurrently: `logits` holds the rows of
// positions first_logit_position(opt) .. n_ctx-2 (each predicting chunk_tokens[pos + 1]),
// `chunk_tokens` the chunk with BOS first. Returns the number of chunks. The checks of llama_perplexity apply.
using ChunkFn = std::function<void(int64_t, const float*, const std::vector<int32_t>&)>;
int64_t for_each_scored_chunk(const Model& model, const std::vector<int32_t>& tokens,
                              const PerplexityOptions& opt, const ChunkFn& fn, const ProgressFn& progress = {});
// Scored positions per chunk: n_ctx - 1 - n_ctx/2.
inline int64_t scored_per_chunk(int64_t n_ctx) { return n_ctx - 1 - n_ctx / 2; }

// Throws qbench::Error when the text is shorter than 2 * n_ctx tokens (llama.cpp's requirement)
// or n_ctx is not in [8, the model's context length * 4].
PerplexityResult llama_perplexity(const Model& model, const std::vector<int32_t>& tokens,
                                  const PerplexityOptions& opt, const ProgressFn& progress = {});

}  // namespace qbench
