// Per-input-channel scales folded into a model, exactly in FP (internal to quantizers/; shared by
// AWQ and SmoothQuant). For an input x read by linears W_k, and scales s_j > 0:
//   W_k[:, j] *= s_j for every linear reading x, and the producer of x is divided by s:
//     attn_q/k/v   <- attn_norm weight (RMSNorm: x = g * n(h), so g_j / s_j gives x_j / s_j)
//     attn_output  <- rows of attn_v (and its bias): the attention output is a convex combination
//                     of v rows per head, so row j of v scaled by 1/s_j scales column j of the
//                     input of attn_output. Only without GQA (n_head_kv == n_head); with GQA one
//                     v row feeds several heads' columns and the site has no producer.
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
  bool can_fold() const { return norm != nullptr || prev != nullptr; }
};

// The four input sites of layer `layer` of `L`, in forward order: AttnIn, AttnOut, FfnIn, FfnDown.
std::vector<FoldSite> fold_sites(LayerWeights& L, int64_t layer);

// Consumers' columns times s, the producer divided by s (asserts can_fold() and sizes; the
// matrices must be owned F32, see mutable_f32).
void fold_input_scales(const FoldSite& site, std::span<const double> s);

}  // namespace qbench::quant
