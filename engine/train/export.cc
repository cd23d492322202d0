#include "engine/train/export.h"

#include <span>

#include "engine/core/error.h"
#include "engine/io/gguf.h"
#include "engine/kernels/matmul.h"

namespace qbench::train {

void export_gguf(const TrainParams& params, const Tokenizer& tokenizer, const std::string& name,
                 const std::string& path) {
  const ModelConfig& c = params.config();
  if (tokenizer.n_tokens() != c.n_vocab) {
    throw Error(path + ": cannot export: the tokenizer has " + std::to_string(tokenizer.n_tokens()) +
                " tokens but the model's vocabulary is " + std::to_string(c.n_vocab));
  }
  using gguf::Value;
  gguf::Writer w;
  w.set("general.architecture", Value::str("llama"));
  w.set("general.name", Value::str(name));
  w.set("llama.vocab_size", Value::u32(uint32_t(c.n_vocab)));
  w.set("llama.context_length", Value::u32(uint32_t(c.n_ctx_train)));
  w.set("llama.embedding_length", Value::u32(uint32_t(c.n_embd)));
  w.set("llama.feed_forward_length", Value::u32(uint32_t(c.n_ff)));
  w.set("llama.block_count", Value::u32(uint32_t(c.n_layer)));
  w.set("llama.attention.head_count", Value::u32(uint32_t(c.n_head)));
  w.set("llama.attention.head_count_kv", Value::u32(uint32_t(c.n_head_kv)));
  w.set("llama.rope.dimension_count", Value::u32(uint32_t(c.n_rot)));
  w.set("llama.rope.freq_base", Value::f32(c.rope_freq_base));
  w.set("llama.attention.layer_norm_rms_epsilon", Value::f32(c.rms_eps));
  tokenizer.write_gguf(w);
  for (const ParamTensor& t : params.tensors()) {
    const float* p = params.values.data() + t.offset;
    const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(p), t.size() * sizeof(float));
    std::vector<int64_t> dims = t.kind == ParamKind::Norm ? std::vector<int64_t>{t.cols}
                                                          : std::vector<int64_t>{t.cols, t.rows};
    w.add_tensor(t.name, std::move(dims), TensorType::F32, bytes);
  }
  w.write(path);
}

void import_params(TrainParams& params, const Model& m, const std::string& path) {
  std::vector<std::pair<std::string, const Matrix*>> matrices = m.linear_weights();
  matrices.emplace_back("token_embd.weight", &m.tok_embd);
  std::vector<std::pair<std::string, const std::vector<float>*>> vectors = {{"output_norm.weight", &m.output_norm}};
  for (size_t l = 0; l < m.layers.size(); ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    vectors.emplace_back(p + "attn_norm.weight", &m.layers[l].attn_norm);
    vectors.emplace_back(p + "ffn_norm.weight", &m.layers[l].ffn_norm);
  }
  for (size_t s = 0; s < params.tensors().size(); ++s) {
    const ParamTensor& pt = params.tensor(int(s));
    float* dst = params.data(int(s));
    bool found = false;
    for (const auto& [name, w] : matrices) {
      if (name != pt.name) continue;
      if (w->rows != pt.rows || w->cols != pt.cols) throw Error(path + ": tensor '" + name + "' has another shape than the recipe's");
      for (int64_t r = 0; r < pt.rows; ++r) matrix_row(*w, r, dst + r * pt.cols);
      found = true;
    }
    for (const auto& [name, v] : vectors) {
      if (name != pt.name) continue;
      if (int64_t(v->size()) != pt.rows * pt.cols) throw Error(path + ": tensor '" + name + "' has another shape than the recipe's");
      std::copy(v->begin(), v->end(), dst);
      found = true;
    }
    if (!found) throw Error(path + ": no tensor '" + pt.name + "'");
  }
}

}  // namespace qbench::train
