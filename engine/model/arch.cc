#include "engine/model/arch.h"

#include "engine/core/error.h"

namespace qbench {
namespace {

using LW = LayerWeights;

constexpr LayerTensor matrix(std::string_view gguf, std::string_view hf, Matrix LW::*m, Dim rows, Dim cols,
                             LinearInput in, bool rotary = false) {
  LayerTensor t{gguf, hf};
  t.matrix = m;
  t.rows = rows;
  t.cols = cols;
  t.input = in;
  t.rotary = rotary;
  return t;
}
constexpr LayerTensor vector(std::string_view gguf, std::string_view hf, std::vector<float> LW::*v, Dim n,
                             bool bias = false) {
  LayerTensor t{gguf, hf};
  t.vector = v;
  t.rows = n;
  t.bias = bias;
  return t;
}

const LayerTensor kLayerTensors[] = {
    vector("blk.{}.attn_norm.weight", "model.layers.{}.input_layernorm.weight", &LW::attn_norm, Dim::Embd),
    matrix("blk.{}.attn_q.weight", "model.layers.{}.self_attn.q_proj.weight", &LW::wq, Dim::Embd, Dim::Embd,
           LinearInput::AttnIn, true),
    vector("blk.{}.attn_q.bias", "model.layers.{}.self_attn.q_proj.bias", &LW::bq, Dim::Embd, true),
    matrix("blk.{}.attn_k.weight", "model.layers.{}.self_attn.k_proj.weight", &LW::wk, Dim::EmbdKv, Dim::Embd,
           LinearInput::AttnIn, true),
    vector("blk.{}.attn_k.bias", "model.layers.{}.self_attn.k_proj.bias", &LW::bk, Dim::EmbdKv, true),
    matrix("blk.{}.attn_v.weight", "model.layers.{}.self_attn.v_proj.weight", &LW::wv, Dim::EmbdKv, Dim::Embd,
           LinearInput::AttnIn),
    vector("blk.{}.attn_v.bias", "model.layers.{}.self_attn.v_proj.bias", &LW::bv, Dim::EmbdKv, true),
    matrix("blk.{}.attn_output.weight", "model.layers.{}.self_attn.o_proj.weight", &LW::wo, Dim::Embd, Dim::Embd,
           LinearInput::AttnOut),
    vector("blk.{}.ffn_norm.weight", "model.layers.{}.post_attention_layernorm.weight", &LW::ffn_norm, Dim::Embd),
    matrix("blk.{}.ffn_gate.weight", "model.layers.{}.mlp.gate_proj.weight", &LW::w_gate, Dim::Ff, Dim::Embd,
           LinearInput::FfnIn),
    matrix("blk.{}.ffn_up.weight", "model.layers.{}.mlp.up_proj.weight", &LW::w_up, Dim::Ff, Dim::Embd,
           LinearInput::FfnIn),
    matrix("blk.{}.ffn_down.weight", "model.layers.{}.mlp.down_proj.weight", &LW::w_down, Dim::Embd, Dim::Ff,
           LinearInput::FfnDown),
};

const Architecture kArchitectures[] = {
    // Llama 1/2/3.x, TinyLlama, SmolLM, Mistral 7B: llama.cpp runs them all as "llama".
    {"llama", {"LlamaForCausalLM", "MistralForCausalLM"}, RopeType::Normal, true, false, false},
    // Qwen2 / Qwen2.5: NeoX rope on the checkpoint's own row order, q/k/v biases.
    {"qwen2", {"Qwen2ForCausalLM"}, RopeType::Neox, false, true, false},
};

std::string fill(std::string_view pattern, int64_t layer) {
  std::string s(pattern);
  const size_t at = s.find("{}");
  QB_ASSERT(at != std::string::npos);
  return s.replace(at, 2, std::to_string(layer));
}

}  // namespace

int64_t dim_size(const ModelConfig& c, Dim d) {
  switch (d) {
    case Dim::Embd: return c.n_embd;
    case Dim::EmbdKv: return c.n_embd_kv();
    case Dim::Ff: return c.n_ff;
  }
  return 0;
}

std::string LayerTensor::gguf_name(int64_t layer) const { return fill(gguf, layer); }
std::string LayerTensor::hf_name(int64_t layer) const { return fill(hf, layer); }

std::span<const LayerTensor> layer_tensors() { return kLayerTensors; }
std::span<const Architecture> architectures() { return kArchitectures; }

const Architecture* find_architecture_gguf(std::string_view gguf_arch) {
  for (const auto& a : kArchitectures) {
    if (a.gguf_arch == gguf_arch) return &a;
  }
  return nullptr;
}

const Architecture* find_architecture_hf(std::string_view hf_class) {
  for (const auto& a : kArchitectures) {
    for (auto c : a.hf_classes) {
      if (c == hf_class) return &a;
    }
  }
  return nullptr;
}

std::string known_architectures_gguf() {
  std::string s;
  for (const auto& a : kArchitectures) s += (s.empty() ? "" : ", ") + std::string(a.gguf_arch);
  return s;
}

std::string known_architectures_hf() {
  std::string s;
  for (const auto& a : kArchitectures) {
    for (auto c : a.hf_classes) s += (s.empty() ? "" : ", ") + std::string(c);
  }
  return s;
}

int64_t hf_row_of_gguf_row(int64_t r, int64_t head_dim) {
  const int64_t h = r / head_dim, k = r % head_dim, half = head_dim / 2;
  return h * head_dim + (k % 2) * half + k / 2;
}

int64_t gguf_row_of_hf_row(int64_t r, int64_t head_dim) {
  const int64_t h = r / head_dim, k = r % head_dim, half = head_dim / 2;
  return h * head_dim + 2 * (k % half) + k / half;
}

}  // namespace qbench
