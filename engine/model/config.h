// Hyper-parameters of a Llama-family model, as the GGUF metadata (`<arch>.*` keys) or a
// llama2.c header states them.
#pragma once

#include <cstdint>
#include <string>

namespace qbench {

// How rotary embeddings pair the dimensions of a head.
//  Normal (llama.cpp LLAMA_ROPE_TYPE_NORM, used by arch "llama"): pairs (2i, 2i+1).
//  Neox   (LLAMA_ROPE_TYPE_NEOX, used by e.g. "qwen2"): pairs (i, i + n_rot/2).
enum class RopeType { Normal, Neox };

struct ModelConfig {
  std::string arch = "llama";
  std::string name;
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int64_t n_ff = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t n_ctx_train = 0;
  int64_t n_rot = 0;  // rotary dimensions per head (<= head_dim)
  float rope_freq_base = 10000.0f;
  // Linear rope scaling (GGUF rope.scaling.type "linear", config.json rope_scaling "linear"):
  // positions are multiplied by this (1 / factor).
  float rope_freq_scale = 1.0f;
  float rms_eps = 1e-5f;
  RopeType rope_type = RopeType::Normal;

  int64_t head_dim() const { return n_embd / n_head; }
  int64_t n_embd_kv() const { return head_dim() * n_head_kv; }
};

// Throws qbench::Error ("<where>: <problem>") unless every size is positive and plausible and
// the heads, KV heads and rotary dimensions fit together.
void validate_config(const ModelConfig& c, const std::string& where);

}  // namespace qbench
