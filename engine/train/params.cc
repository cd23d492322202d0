#include "engine/train/params.h"

#include <cmath>

#include "engine/core/error.h"
#include "engine/model/arch.h"
#include "engine/train/rng.h"

namespace qbench::train {

void check_train_config(const ModelConfig& c) {
  validate_config(c, "training config");
  if (c.arch != "llama" || c.rope_type != RopeType::Normal) {
    throw Error("training config: only arch 'llama' with normal RoPE pairing is trainable, got '" +
                c.arch + "'");
  }
}

int TrainParams::add(std::string name, ParamKind kind, int64_t rows, int64_t cols) {
  const size_t offset = tensors_.empty() ? 0 : tensors_.back().offset + tensors_.back().size();
  tensors_.push_back(ParamTensor{std::move(name), kind, rows, cols, offset});
  return int(tensors_.size()) - 1;
}

TrainParams::TrainParams(const ModelConfig& config, bool tied_output) : config_(config), tied_(tied_output) {
  check_train_config(config);
  const int64_t d = config.n_embd, dkv = config.n_embd_kv(), ff = config.n_ff;
  tok_embd_ = add(std::string(kGgufTokEmbd), ParamKind::Embedding, config.n_vocab, d);
  // Tensor names from the architecture table (engine/model/arch.h).
  auto matrix_name = [](Matrix LayerWeights::*m, int64_t l) {
    for (const LayerTensor& t : layer_tensors()) {
      if (t.matrix == m) return t.gguf_name(l);
    }
    QB_ASSERT(false);
    return std::string();
  };
  auto vector_name = [](std::vector<float> LayerWeights::*v, int64_t l) {
    for (const LayerTensor& t : layer_tensors()) {
      if (t.vector == v) return t.gguf_name(l);
    }
    QB_ASSERT(false);
    return std::string();
  };
  using LW = LayerWeights;
  for (int64_t l = 0; l < config.n_layer; ++l) {
    LayerSlots s;
    s.attn_norm = add(vector_name(&LW::attn_norm, l), ParamKind::Norm, 1, d);
    s.wq = add(matrix_name(&LW::wq, l), ParamKind::Linear, d, d);
    s.wk = add(matrix_name(&LW::wk, l), ParamKind::Linear, dkv, d);
    s.wv = add(matrix_name(&LW::wv, l), ParamKind::Linear, dkv, d);
    s.wo = add(matrix_name(&LW::wo, l), ParamKind::Linear, d, d);
    s.ffn_norm = add(vector_name(&LW::ffn_norm, l), ParamKind::Norm, 1, d);
    s.w_gate = add(matrix_name(&LW::w_gate, l), ParamKind::Linear, ff, d);
    s.w_up = add(matrix_name(&LW::w_up, l), ParamKind::Linear, ff, d);
    s.w_down = add(matrix_name(&LW::w_down, l), ParamKind::Linear, d, ff);
    layers_.push_back(s);
  }
  output_norm_ = add(std::string(kGgufOutputNorm), ParamKind::Norm, 1, d);
  if (!tied_) output_ = add(std::string(kGgufOutput), ParamKind::Linear, config.n_vocab, d);
  values.assign(tensors_.back().offset + tensors_.back().size(), 0.0f);
}

void init_params(TrainParams& params, uint64_t seed, double std) {
  const ModelConfig& c = params.config();
  const double residual_std = std / std::sqrt(2.0 * double(c.n_layer));
  std::vector<bool> is_residual_out(params.tensors().size(), false);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    is_residual_out[size_t(params.layer(l).wo)] = true;
    is_residual_out[size_t(params.layer(l).w_down)] = true;
  }
  for (size_t i = 0; i < params.tensors().size(); ++i) {
    const ParamTensor& t = params.tensors()[i];
    float* p = params.values.data() + t.offset;
    if (t.kind == ParamKind::Norm) {
      std::fill(p, p + t.size(), 1.0f);
      continue;
    }
    Rng rng = Rng::derived(seed, i);
    const double s = is_residual_out[i] ? residual_std : std;
    for (size_t j = 0; j < t.size(); ++j) p[j] = float(s * rng.normal());
  }
}

}  // namespace qbench::train
