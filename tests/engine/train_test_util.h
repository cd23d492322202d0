// Shared by the training tests (test_train.cc, test_fake_quant.cc): small Llama configurations
// and random batches.
#pragma once

#include <cstdint>

#include "engine/model/config.h"
#include "engine/train/model_step.h"
#include "engine/train/rng.h"

namespace qbench::train_test {

using train::Batch;
using train::Rng;

// 2 layers, 4 heads (2 KV heads), a vocabulary of 11 and a context of 16, with the given widths.
inline ModelConfig small_llama(int64_t n_embd, int64_t n_ff, int64_t n_rot) {
  ModelConfig c;
  c.arch = "llama";
  c.n_vocab = 11;
  c.n_embd = n_embd;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.n_ff = n_ff;
  c.n_ctx_train = 16;
  c.n_rot = n_rot;
  return c;
}

// Uniform token ids below V; with partial_mask about a third of the positions get weight 0.
inline Batch random_batch(Rng& rng, int64_t n_seq, int64_t T, int64_t V, bool partial_mask = false) {
  Batch b;
  b.resize(n_seq, T);
  for (auto& t : b.tokens) t = int32_t(rng.below(uint64_t(V)));
  if (partial_mask) {
    for (auto& m : b.loss_mask) m = rng.below(3) == 0 ? 0.0f : 1.0f;
  }
  return b;
}

}  // namespace qbench::train_test
