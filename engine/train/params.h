// FP32 parameters of a Llama model under training.
//
// All parameters live in one flat buffer (`values`), tensor after tensor in the order of
// `tensors` (token embedding, then per layer attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up,
// w_down, then output_norm and, unless tied to the embedding, output). Gradients and optimizer
// moments use the same layout, so AdamW, clipping and checkpoints work on flat arrays.
// Matrices are row-major [rows = out features x cols = in features], as the inference engine's.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/model/config.h"

namespace qbench::train {

enum class ParamKind { Embedding, Norm, Linear };

struct ParamTensor {
  std::string name;  // GGUF tensor name, e.g. "blk.0.attn_q.weight"
  ParamKind kind;
  int64_t rows = 0, cols = 0;  // a norm is 1 x n_embd
  size_t offset = 0;           // into the flat buffer, in floats
  size_t size() const { return size_t(rows * cols); }
};

struct LayerSlots {
  int attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down;  // indices into tensors
};

// Throws qbench::Error when the dimensions are not a valid Llama model for training
// (positive sizes, heads dividing n_embd and n_head_kv dividing n_head, even n_rot <= head size,
// arch "llama" with normal RoPE pairing).
void check_train_config(const ModelConfig& config);

class TrainParams {
 public:
  TrainParams() = default;
  // Lays out the tensors of `config`; values are zero until init_params().
  TrainParams(const ModelConfig& config, bool tied_output);

  const ModelConfig& config() const { return config_; }
  bool tied_output() const { return tied_; }
  const std::vector<ParamTensor>& tensors() const { return tensors_; }
  const LayerSlots& layer(int64_t l) const { return layers_[size_t(l)]; }
  int tok_embd() const { return tok_embd_; }
  int output_norm() const { return output_norm_; }
  // The output projection's slot: the embedding's when tied.
  int output() const { return tied_ ? tok_embd_ : output_; }
  size_t size() const { return values.size(); }

  float* data(int slot) { return values.data() + tensors_[size_t(slot)].offset; }
  const float* data(int slot) const { return values.data() + tensors_[size_t(slot)].offset; }
  const ParamTensor& tensor(int slot) const { return tensors_[size_t(slot)]; }

  std::vector<float> values;  // all parameters, flat (see the file comment)

 private:
  int add(std::string name, ParamKind kind, int64_t rows, int64_t cols);

  ModelConfig config_;
  bool tied_ = false;
  std::vector<ParamTensor> tensors_;
  std::vector<LayerSlots> layers_;
  int tok_embd_ = -1, output_norm_ = -1, output_ = -1;
};

// GPT-2 style initialisation: matrices and embedding normal(0, std), the residual output
// projections (wo, w_down) with std / sqrt(2 * n_layer), norms ones. Each tensor draws from its
// own stream derived from (seed, tensor index), so the result is independent of threading.
void init_params(TrainParams& params, uint64_t seed, double std = 0.02);

}  // namespace qbench::train
