// Inference state of one sequence: the KV cache and scratch buffers. The Model's weights are
// read-only and may be shared by any number of Forward objects (one per concurrent sequence).
//
// eval() runs a batch of tokens at positions n_past() .. n_past()+n-1 (prefill when n > 1,
// decode when n == 1) with matrix-matrix products, appends their keys and values to the cache,
// and returns logits. Prefill of n tokens and n single-token decodes give the same logits up to
// float rounding (tested to 1e-4 relative).
//
// KV cache in low precision (Model::kv_cache, llama.cpp's -ctk / -ctv): each head's key and value
// rows are stored in the type as they are appended (q8_0 by ggml's x86 rule, as llama.cpp's CPU
// backend writes its cache; the other types by their reference quantizers), and attention reads
// the stored form as llama.cpp's flash attention does on the CPU: the query is converted to the
// key type's dot-product partner (Q8_0 / Q8_1 for the legacy types, f16 / bf16 rounding for f16 /
// bf16) and q.k is that format's kernel (iq4_nl, which has none: its dequantized keys against the
// query's Q8_0 values); value rows are dequantized to FP32 and accumulated. Quantized types need
// a head size that is a multiple of their block size (32), as llama.cpp requires.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "engine/model/model.h"

namespace qbench {

// The input activation of a group of linears, as seen by an ActivationObserver. Linears that
// share an input are observed once: AttnIn feeds attn_q/k/v (after attn_norm), AttnOut feeds
// attn_output (the attention heads' output), FfnIn feeds ffn_gate/up (after ffn_norm), FfnDown
// feeds ffn_down (silu(gate) * up), Output feeds output.weight (after output_norm; layer index
// n_layer).
enum class LinearInput { AttnIn, AttnOut, FfnIn, FfnDown, Output };
inline constexpr int kLinearInputCount = 5;

// Called before the matmul(s) reading `x`, row-major [n_tokens x cols] FP32, valid only during
// the call. Calibration (quantizers/calibration.h) accumulates statistics from it; the forward
// pass itself is unchanged by an observer.
using ActivationObserver =
    std::function<void(int64_t layer, LinearInput input, const float* x, int64_t n_tokens, int64_t cols)>;

class Forward {
 public:
  // n_ctx: capacity of the KV cache in tokens.
  Forward(const Model& model, int64_t n_ctx);

  // Evaluates `tokens` and writes logits for batch positions logits_from .. n-1 into `logits`
  // (resized to (n - logits_from) x n_vocab, row-major). Throws qbench::Error if the tokens do
  // not fit in the cache, a token id is out of range, or a logit is NaN or infinite (naming the
  // position and the first non-finite weight of the model, if any).
  void eval(std::span<const int32_t> tokens, std::vector<float>& logits, int64_t logits_from);
  // Logits of the last token only.
  void eval_last(std::span<const int32_t> tokens, std::vector<float>& logits) {
    eval(tokens, logits, int64_t(tokens.size()) - 1);
  }

  void reset() { n_past_ = 0; }
  // Observer of every linear's input (empty function: none). Not thread-safe with eval().
  void set_observer(ActivationObserver observer) { observer_ = std::move(observer); }
  int64_t n_past() const { return n_past_; }
  int64_t n_ctx() const { return n_ctx_; }
  // Bytes of the KV cache as allocated (n_ctx positions, every layer), in its storage types.
  size_t kv_cache_bytes() const { return k_cache_.size() + v_cache_.size(); }
  const Model& model() const { return model_; }

 private:
  void eval_batch(std::span<const int32_t> tokens, float* logits, int64_t logits_from);

  const Model& model_;
  int64_t n_ctx_;
  int64_t n_past_ = 0;
  ActivationObserver observer_;
  // [layer][pos][kv head] rows of head_dim values in model_.kv_cache.k / .v (F32: plain floats,
  // so [layer][pos][n_embd_kv]); k_row_ / v_row_ bytes per row.
  std::vector<uint8_t> k_cache_, v_cache_;
  size_t k_row_ = 0, v_row_ = 0;
  std::vector<float> rope_cos_, rope_sin_;  // [pos][n_rot/2]
  // Scratch, sized for the largest batch seen.
  std::vector<float> x_, xn_, q_, k_, v_, attn_, gate_, up_, ffn_;
  std::vector<uint8_t> matmul_scratch_;  // quantized activation rows (engine/kernels/matmul.h)
};

// The normalized Walsh-Hadamard transform of every block of n values of x (len a multiple of n,
// n a power of two), in place: each value scaled by 1/sqrt(n) first, then butterflies of span
// 1, 2, 4, ... (u, v) -> (u + v, u - v), in FP32, as ggml's fast Walsh-Hadamard routine computes
// llama.cpp's attention rotation (KvCacheTypes::rotate). Its own inverse up to rounding.
void hadamard_blocks(float* x, int64_t len, int64_t n);

// Largest number of tokens evaluated in one batch; longer inputs are split.
inline constexpr int64_t kMaxBatch = 512;

}  // namespace qbench
