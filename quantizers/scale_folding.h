// Per-input-channel scales folded into a model, exactly in FP (internal to quantizers/; shared by
// AWQ and SmoothQuant). For an input x read by linears W_k, and scales s_j > 0:
//   W_k[:, j] *= s_j for every linear reading x, and the producer of x is divided by s:
//     attn_q/k/v   <- attn_norm weight (RMSNorm: x = g * n(h), so g_j / s_j gives x_j / s_j)
//     attn_output  <- rows of attn_v (and its bias): the attention output is a convex combination
//                     of v rows per head, so row j of v scaled by 1/s_j scales column j of the
//                     input of attn_output. Per column only without GQA (n_head_kv == n_head);
//                     with GQA one v row feeds the same column of several heads, so the site has
//                     no per-column producer, only a shared one (fold_input_scales_shared: one
//                     scale per v row, equal for the columns that read it).
//     ffn_gate/up  <- ffn_norm weight
//     ffn_down     <- rows of ffn_up: the input of ffn_down is silu(gate) * up, linear in up's
//                     output channel j.
// The product W diag(s) diag(s)^-1 x is unchanged up to float rounding of the rescaled values.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/model/forward.h"
#include "engine/model/model.h"

namespace qbench::quant {

struct FoldLinear {
  Matrix* m;         // an owned F32 matrix of a working copy (calibration.h: f32_working_copy)
  std::string name;  // GGUF name without ".weight", e.g. "blk.0.attn_q"
};

struct FoldSite {
  LinearInput input;
  std::vector<FoldLinear> linears;  // every linear reading the input
  std::vector<float>* norm = nullptr;            // producer: a norm weight ...
  Matrix* prev = nullptr;                        // ... or the rows of a linear
  std::vector<float>* prev_bias = nullptr;       //     (and its bias, when present)
  std::string no_producer;  // why a site has no producer (empty when it has one)
  // GQA's attn_output input: column j reads row prev_row_of[j] of shared_prev (attn_v): head
  // h = j / head_dim reads kv head h / (n_head / n_head_kv). Set only when prev is not.
  Matrix* shared_prev = nullptr;
  std::vector<float>* shared_prev_bias = nullptr;
  std::vector<int64_t> prev_row_of = {};
  bool can_fold() const { return norm != nullptr || prev != nullptr; }
  bool can_fold_shared() const { return shared_prev != nullptr; }
};

// The four input sites of layer `layer` of `L` (a layer of a model with config `c`), in forward
// order: AttnIn, AttnOut, FfnIn, FfnDown.
std::vector<FoldSite> fold_sites(const ModelConfig& c, LayerWeights& L, int64_t layer);

// Consumers' columns times s, the producer divided by s (asserts can_fold() and sizes; the
// matrices must be owned F32, see mutable_f32).
void fold_input_scales(const FoldSite& site, std::span<const double> s);
// The same through a shared producer (asserts can_fold_shared() and that columns reading one
// row of it have equal scales): consumers' columns times s, row r of shared_prev divided by the
// scale of its columns.
void fold_input_scales_shared(const FoldSite& site, std::span<const double> s);

}  // namespace qbench::quant
