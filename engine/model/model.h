// A loaded Llama-family model: configuration, weights (read-only, shared between the model and
// its quantized variants), and tokenizer.
//
// Every 2-D weight is a `Matrix` in one storage format: `rows` output features, each a row of
// `cols` input features packed in `type` (ggml's layout: ne[0] = cols). The bytes live in
// `Model::storage` — the file mapping for a GGUF, owned buffers for a llama2.c checkpoint or a
// quantized variant — so copying a Model copies views, not weights.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/formats/types.h"
#include "engine/kernels/kernel_options.h"
#include "engine/model/config.h"
#include "engine/tokenizer/tokenizer.h"

namespace qbench {

struct Matrix {
  TensorType type = TensorType::F32;
  int64_t rows = 0;  // output features
  int64_t cols = 0;  // input features (row length)
  const uint8_t* data = nullptr;

  const TypeTraits& traits() const { return type_traits(type); }
  size_t row_bytes() const { return qbench::row_bytes(traits(), cols); }
  size_t bytes() const { return size_t(rows) * row_bytes(); }
  const uint8_t* row(int64_t r) const { return data + size_t(r) * row_bytes(); }
  bool empty() const { return data == nullptr; }
};

struct LayerWeights {
  std::vector<float> attn_norm;  // n_embd
  Matrix wq, wk, wv, wo;         // [n_embd x n_embd], [n_embd_kv x n_embd] x2, [n_embd x n_embd]
  std::vector<float> bq, bk, bv; // optional attention biases (empty when absent)
  std::vector<float> ffn_norm;   // n_embd
  Matrix w_gate, w_up, w_down;   // [n_ff x n_embd] x2, [n_embd x n_ff]
};

// The KV cache's storage types, as llama.cpp's -ctk / -ctv: f32 (the default), f16, bf16, q8_0,
// q4_0, q4_1, q5_0, q5_1, iq4_nl (kv_cache_type_allowed). Keys and values are quantized per head
// as they are appended; attention reads the stored form (engine/model/forward.h).
//
// Rotation, as llama.cpp does by default (its attention rotation, LLAMA_ATTN_ROT_DISABLE=1 turns
// it off): when the key type is quantized and the head size is a multiple of 64, queries and keys
// (after RoPE) pass through a normalized Walsh-Hadamard transform of n values, block by block,
// n the largest power of two (at least 64) dividing the head size; when the value type is
// quantized and the head size a multiple of 64, values are rotated in blocks of 64 before they
// are stored and the attention output is rotated back (the transform is its own inverse). q.k is
// unchanged in exact arithmetic; the rotation spreads outliers across the block before rounding.
struct KvCacheTypes {
  TensorType k = TensorType::F32;
  TensorType v = TensorType::F32;
  bool rotate = true;  // llama.cpp's rule above; false: never (",rot=off")
  bool is_f32() const { return k == TensorType::F32 && v == TensorType::F32; }
  bool operator==(const KvCacheTypes&) const = default;
};
// The block sizes of the rotations `kv` implies for head size `head_dim` (0: none).
int64_t kv_key_rotation(const KvCacheTypes& kv, int64_t head_dim);
int64_t kv_value_rotation(const KvCacheTypes& kv, int64_t head_dim);
// Whether `t` may store a KV cache (the types llama.cpp's -ctk / -ctv accept on the CPU).
bool kv_cache_type_allowed(TensorType t);
// "q8_0" (both the same) or "q8_0/q4_0" (keys/values), then ",rot=off" when the rotation is off.
std::string kv_cache_name(const KvCacheTypes& kv);
// Parses "TYPE" or "TYPE_K/TYPE_V" (type names as ggml prints them), optionally followed by
// ",rot=off" (or ",rot=auto", the default); throws qbench::Error with a one-line message naming
// the allowed types otherwise.
KvCacheTypes parse_kv_cache(std::string_view text);

struct Model {
  ModelConfig config;
  Matrix tok_embd;  // [n_vocab x n_embd]; rows are looked up, not multiplied
  std::vector<LayerWeights> layers;
  std::vector<float> output_norm;
  Matrix output;  // [n_vocab x n_embd]; same bytes as tok_embd when tied
  bool tied_output = false;
  // Per-frequency divisors of the rotary angles (n_rot / 2 values: GGUF rope_freqs.weight, which
  // llama.cpp's converter computes from Llama 3.1's rope_scaling); empty when there are none.
  std::vector<float> rope_freqs;
  Tokenizer tokenizer;  // empty for a llama2.c checkpoint loaded without --tokenizer
  std::string path;     // the file it came from
  std::string format;   // "gguf", "hf" (a Hugging Face folder) or "llama2c"
  std::string chat_template;  // tokenizer.chat_template of a GGUF (Jinja text), or empty
  std::vector<std::shared_ptr<const void>> storage;  // keeps the weight bytes alive
  // How the forward pass multiplies by the matrices (engine/kernels/matmul.h): the packed-format
  // kernels by default; a copy of the model may choose the dequantize reference path or an ISA.
  MatmulOptions matmul;
  // How the KV cache stores keys and values (engine/model/forward.h): F32 by default.
  KvCacheTypes kv_cache;

  // Every linear weight of the model with its GGUF tensor name, in file order (layers first).
  std::vector<std::pair<std::string, const Matrix*>> linear_weights() const;
  int64_t n_params() const;
  size_t weight_bytes() const;  // bytes of all matrices and norms as stored (tied output counted once)
  // Throws qbench::Error when the model has no tokenizer (llama2.c without --tokenizer).
  const Tokenizer& require_tokenizer() const;
};

// The first weight of `m` (matrices in file order, then norms and biases) holding a NaN or an
// infinity, as "blk.0.attn_q.weight row 3, column 5 (nan)"; empty when every weight is finite.
// Dequantizes every row: meant for explaining a failure, not for the hot path.
std::string find_nonfinite_weight(const Model& m);

// Loads a model: a Hugging Face folder (a directory: engine/model/hf_model.h), a GGUF file (by
// its magic) or a llama2.c checkpoint (any other file).
// `tokenizer_path` (llama2.c's tokenizer.bin) is required for tokenization of a llama2.c model
// and, if given for a GGUF, replaces the GGUF's own vocabulary. Throws qbench::Error naming the
// file and the problem on any bad input.
Model load_model(const std::string& path, const std::string& tokenizer_path = {});

}  // namespace qbench
