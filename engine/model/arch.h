// The one description of the architectures qbench runs: how each is named in GGUF
// (`general.architecture`) and in a Hugging Face config.json (`architectures[0]`), its rotary
// layout, its optional parts, and the name of every tensor in both file forms. The GGUF and
// Hugging Face loaders, the GGUF and Hugging Face writers, Model::linear_weights (which the
// quantizers, calibration, the llama.cpp mixes and `bench` iterate) and calibration's
// name -> input mapping all read it.
//
// Adding an architecture: one `Architecture` entry, plus whatever is genuinely new in the
// forward pass (engine/model/forward.cc) — e.g. Gemma's (1 + w) RMSNorm and embedding scale, or
// Phi-3's fused qkv (a new LayerTensor role the loaders split into wq/wk/wv). docs/architecture.md
// says what each step touches.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/model/config.h"
#include "engine/model/forward.h"
#include "engine/model/model.h"

namespace qbench {

// Size of a tensor dimension in terms of the configuration.
enum class Dim { Embd, EmbdKv, Ff };
int64_t dim_size(const ModelConfig& c, Dim d);

// One per-layer tensor: its GGUF name ("blk.{}.attn_q.weight"), its Hugging Face name
// ("model.layers.{}.self_attn.q_proj.weight"; "{}" is the layer index) and where it lives in
// LayerWeights: a matrix [rows x cols] or a vector [rows] (norm weights, biases).
struct LayerTensor {
  std::string_view gguf;
  std::string_view hf;
  Matrix LayerWeights::*matrix = nullptr;
  std::vector<float> LayerWeights::*vector = nullptr;
  Dim rows = Dim::Embd;
  Dim cols = Dim::Embd;                // matrices only
  LinearInput input = LinearInput::AttnIn;  // matrices: the activation they read
  bool bias = false;                   // a q/k/v bias: present only when Architecture::qkv_bias
  bool rotary = false;                 // q or k: rows in the rotary layout (see hf_permuted_qk)

  std::string gguf_name(int64_t layer) const;
  std::string hf_name(int64_t layer) const;
};

// The per-layer tensors, in the order llama.cpp's converter writes them.
std::span<const LayerTensor> layer_tensors();

// Whole-model tensors.
inline constexpr std::string_view kGgufTokEmbd = "token_embd.weight";
inline constexpr std::string_view kGgufOutputNorm = "output_norm.weight";
inline constexpr std::string_view kGgufOutput = "output.weight";
inline constexpr std::string_view kGgufRopeFreqs = "rope_freqs.weight";  // Llama 3.1 rope factors
inline constexpr std::string_view kHfTokEmbd = "model.embed_tokens.weight";
inline constexpr std::string_view kHfOutputNorm = "model.norm.weight";
inline constexpr std::string_view kHfOutput = "lm_head.weight";

struct Architecture {
  std::string_view gguf_arch;                   // general.architecture
  std::vector<std::string_view> hf_classes;     // config.json "architectures"
  RopeType rope = RopeType::Normal;
  // Hugging Face checkpoints keep each q/k head as two halves rotated against each other
  // (rotate_half, llama.cpp's NeoX layout); llama.cpp's converter interleaves the rows
  // (permute() in convert_hf_to_gguf.py) for architectures it runs with the normal rope. The
  // Hugging Face loader applies that permutation, the Hugging Face writer its inverse, so a
  // Model always holds GGUF's layout.
  bool hf_permuted_qk = false;
  bool qkv_bias = false;  // q/k/v projections have biases (Qwen2)
  bool tied_default = false;  // config.json's tie_word_embeddings when absent
};

std::span<const Architecture> architectures();
// nullptr when unknown.
const Architecture* find_architecture_gguf(std::string_view gguf_arch);
const Architecture* find_architecture_hf(std::string_view hf_class);
// "llama, qwen2" / "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM": for error messages.
std::string known_architectures_gguf();
std::string known_architectures_hf();

// Row `r` of a rotary matrix (q or k) in GGUF's layout comes from this row of the Hugging Face
// tensor: within each head of `head_dim` rows, GGUF row 2i + j is HF row j * head_dim/2 + i.
int64_t hf_row_of_gguf_row(int64_t r, int64_t head_dim);
// The inverse: row `r` of the Hugging Face tensor is this row in GGUF's layout.
int64_t gguf_row_of_hf_row(int64_t r, int64_t head_dim);

}  // namespace qbench
