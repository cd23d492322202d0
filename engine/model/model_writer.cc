#include "engine/model/model_writer.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <span>

#include "engine/core/error.h"
#include "engine/model/arch.h"

namespace qbench {
namespace {

struct TensorSource {
  std::vector<int64_t> dims;
  TensorType type;
  std::span<const uint8_t> bytes;
};

std::span<const uint8_t> float_bytes(const std::vector<float>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)};
}

}  // namespace

gguf::Writer model_gguf_writer(const Model& m) {
  const ModelConfig& c = m.config;
  std::vector<std::pair<std::string, TensorSource>> tensors;
  auto add_matrix = [&](const std::string& name, const Matrix& w) {
    tensors.push_back({name, {{w.cols, w.rows}, w.type, {w.data, w.bytes()}}});
  };
  auto add_vector = [&](const std::string& name, const std::vector<float>& v) {
    if (!v.empty()) tensors.push_back({name, {{int64_t(v.size())}, TensorType::F32, float_bytes(v)}});
  };
  add_matrix(std::string(kGgufTokEmbd), m.tok_embd);
  add_vector(std::string(kGgufOutputNorm), m.output_norm);
  if (!m.tied_output) add_matrix(std::string(kGgufOutput), m.output);
  add_vector(std::string(kGgufRopeFreqs), m.rope_freqs);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    for (const LayerTensor& t : layer_tensors()) {
      if (t.matrix) {
        add_matrix(t.gguf_name(int64_t(i)), m.layers[i].*t.matrix);
      } else {
        add_vector(t.gguf_name(int64_t(i)), m.layers[i].*t.vector);
      }
    }
  }

  gguf::Writer w;
  if (m.format == "gguf") {
    // Same metadata and tensor order as the source file.
    const auto src = gguf::File::open(m.path);
    for (const auto& [k, v] : src->metadata()) {
      if (k != "general.alignment") w.set(k, v);
    }
    std::map<std::string, size_t> order;
    for (size_t i = 0; i < src->tensors().size(); ++i) order[src->tensors()[i].name] = i;
    std::stable_sort(tensors.begin(), tensors.end(), [&](const auto& a, const auto& b) {
      const size_t ia = order.count(a.first) ? order[a.first] : order.size();
      const size_t ib = order.count(b.first) ? order[b.first] : order.size();
      return ia < ib;
    });
  } else {
    const std::string a = c.arch;
    w.set("general.architecture", gguf::Value::str(a));
    if (!c.name.empty()) w.set("general.name", gguf::Value::str(c.name));
    w.set(a + ".context_length", gguf::Value::u32(uint32_t(c.n_ctx_train)));
    w.set(a + ".embedding_length", gguf::Value::u32(uint32_t(c.n_embd)));
    w.set(a + ".feed_forward_length", gguf::Value::u32(uint32_t(c.n_ff)));
    w.set(a + ".block_count", gguf::Value::u32(uint32_t(c.n_layer)));
    w.set(a + ".attention.head_count", gguf::Value::u32(uint32_t(c.n_head)));
    w.set(a + ".attention.head_count_kv", gguf::Value::u32(uint32_t(c.n_head_kv)));
    w.set(a + ".rope.dimension_count", gguf::Value::u32(uint32_t(c.n_rot)));
    w.set(a + ".rope.freq_base", gguf::Value::f32(c.rope_freq_base));
    w.set(a + ".attention.layer_norm_rms_epsilon", gguf::Value::f32(c.rms_eps));
    if (c.rope_freq_scale != 1.0f) {
      w.set(a + ".rope.scaling.type", gguf::Value::str("linear"));
      w.set(a + ".rope.scaling.factor", gguf::Value::f32(1.0f / c.rope_freq_scale));
    }
    w.set(a + ".vocab_size", gguf::Value::u32(uint32_t(c.n_vocab)));
    if (m.tokenizer.empty()) {
      throw Error(m.path + ": a GGUF needs the tokenizer; pass --tokenizer for a llama2.c checkpoint");
    }
    m.tokenizer.write_gguf(w);
    if (!m.chat_template.empty()) w.set("tokenizer.chat_template", gguf::Value::str(m.chat_template));
  }
  for (const auto& [name, t] : tensors) w.add_tensor(name, t.dims, t.type, t.bytes);
  return w;
}

}  // namespace qbench
