#include "engine/model/hf_writer.h"

#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/half.h"
#include "engine/core/mapped_file.h"
#include "engine/kernels/matmul.h"
#include "engine/model/arch.h"

namespace qbench {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using safetensors::DType;

// Converts `n` floats to `dtype`, appending to `out`.
void append_values(const float* x, int64_t n, DType dtype, std::vector<uint8_t>& out) {
  const size_t at = out.size();
  out.resize(at + size_t(n) * safetensors::dtype_size(dtype));
  uint8_t* dst = out.data() + at;
  for (int64_t i = 0; i < n; ++i) {
    if (dtype == DType::F32) {
      std::memcpy(dst + 4 * i, &x[i], 4);
    } else {
      const uint16_t h = dtype == DType::F16 ? fp32_to_fp16(x[i]) : fp32_to_bf16(x[i]);
      std::memcpy(dst + 2 * i, &h, 2);
    }
  }
}

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

}  // namespace

void write_hf_folder(const Model& m, const std::string& dir_path, const HfWriteOptions& opt) {
  const ModelConfig& c = m.config;
  const fs::path dir(dir_path);
  if (opt.dtype != DType::F32 && opt.dtype != DType::F16 && opt.dtype != DType::BF16) {
    throw Error(std::string("dtype ") + safetensors::dtype_name(opt.dtype) + " cannot hold model weights (f32, f16, bf16)");
  }
  const Architecture* arch = find_architecture_gguf(c.arch);
  if (arch == nullptr) throw Error(m.path + ": architecture '" + c.arch + "' has no Hugging Face form");
  if (!m.rope_freqs.empty()) {
    throw Error(m.path + ": rope frequency factors (rope_freqs.weight) cannot be written as a config.json rope_scaling");
  }
  if (m.tokenizer.empty()) throw Error(m.path + ": the model has no tokenizer to write as tokenizer.json");
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) throw Error(dir_path + ": exists and is not a folder");
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (name == "config.json" || name.ends_with(".safetensors") || name == "model.safetensors.index.json") {
        throw Error(dir_path + ": already holds a model (" + name + "); choose an empty or new folder");
      }
    }
  } else if (!fs::create_directories(dir, ec) || ec) {
    throw Error(dir_path + ": cannot create the folder (" + ec.message() + ")");
  }

  // Tensors in Transformers' order: embedding, layers, final norm, lm_head.
  std::vector<Tensor> tensors;
  std::vector<float> row;
  auto add_matrix = [&](const std::string& name, const Matrix& w, bool rotary) {
    Tensor t{name, {w.rows, w.cols}, {}};
    t.bytes.reserve(size_t(w.rows * w.cols) * safetensors::dtype_size(opt.dtype));
    row.resize(size_t(w.cols));
    for (int64_t r = 0; r < w.rows; ++r) {
      matrix_row(w, rotary ? gguf_row_of_hf_row(r, c.head_dim()) : r, row.data());
      append_values(row.data(), w.cols, opt.dtype, t.bytes);
    }
    tensors.push_back(std::move(t));
  };
  auto add_vector = [&](const std::string& name, const std::vector<float>& v) {
    Tensor t{name, {int64_t(v.size())}, {}};
    append_values(v.data(), int64_t(v.size()), opt.dtype, t.bytes);
    tensors.push_back(std::move(t));
  };
  add_matrix(std::string(kHfTokEmbd), m.tok_embd, false);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const LayerWeights& L = m.layers[i];
    for (const LayerTensor& t : layer_tensors()) {
      if (t.matrix) {
        add_matrix(t.hf_name(int64_t(i)), L.*t.matrix, t.rotary && arch->hf_permuted_qk);
      } else if (t.bias && !arch->qkv_bias) {
        if (!(L.*t.vector).empty()) {
          throw Error(m.path + ": " + t.gguf_name(int64_t(i)) + ": " + c.arch + " has no q/k/v biases in Hugging Face form");
        }
      } else {
        const std::vector<float>& v = L.*t.vector;
        if (v.empty()) throw Error(m.path + ": missing " + t.gguf_name(int64_t(i)) + ", which the Hugging Face form requires");
        add_vector(t.hf_name(int64_t(i)), v);
      }
    }
  }
  add_vector(std::string(kHfOutputNorm), m.output_norm);
  if (!m.tied_output) add_matrix(std::string(kHfOutput), m.output, false);

  // Shards of at most max_shard_bytes (a larger tensor gets a shard of its own).
  std::vector<std::vector<Tensor*>> shards(1);
  size_t in_shard = 0, total = 0;
  for (Tensor& t : tensors) {
    total += t.bytes.size();
    if (opt.max_shard_bytes > 0 && in_shard > 0 && in_shard + t.bytes.size() > opt.max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(&t);
    in_shard += t.bytes.size();
  }
  const char* dtype_name = opt.dtype == DType::F32 ? "float32" : opt.dtype == DType::F16 ? "float16" : "bfloat16";
  if (opt.max_shard_bytes == 0) {
    safetensors::Writer w;
    w.set_metadata("format", "pt");
    for (Tensor* t : shards[0]) w.add_tensor(t->name, opt.dtype, t->shape, std::move(t->bytes));
    w.write((dir / "model.safetensors").string());
  } else {
    json weight_map = json::object();
    char name[64];
    for (size_t s = 0; s < shards.size(); ++s) {
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
      safetensors::Writer w;
      w.set_metadata("format", "pt");
      for (Tensor* t : shards[s]) {
        w.add_tensor(t->name, opt.dtype, t->shape, std::move(t->bytes));
        weight_map[t->name] = name;
      }
      w.write((dir / name).string());
    }
    const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_file_atomic((dir / "model.safetensors.index.json").string(), index.dump(2) + "\n");
  }

  json config = {
      {"architectures", {std::string(arch->hf_classes.front())}},
      {"model_type", c.arch == "qwen2" ? "qwen2" : "llama"},
      {"hidden_act", "silu"},
      {"vocab_size", c.n_vocab},
      {"hidden_size", c.n_embd},
      {"intermediate_size", c.n_ff},
      {"num_hidden_layers", c.n_layer},
      {"num_attention_heads", c.n_head},
      {"num_key_value_heads", c.n_head_kv},
      {"max_position_embeddings", c.n_ctx_train},
      {"rms_norm_eps", c.rms_eps},
      {"rope_theta", c.rope_freq_base},
      {"tie_word_embeddings", m.tied_output},
      {"torch_dtype", dtype_name},
      {"bos_token_id", m.tokenizer.bos()},
      {"eos_token_id", m.tokenizer.eos()},
  };
  if (c.rope_freq_scale != 1.0f) config["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 1.0 / c.rope_freq_scale}};
  if (arch->qkv_bias) config["attention_bias"] = true;
  if (c.n_rot != c.head_dim()) throw Error(m.path + ": partial rotary dimensions cannot be written as config.json");
  write_file_atomic((dir / "config.json").string(), config.dump(2) + "\n");
  write_file_atomic((dir / "tokenizer.json").string(), hf_tokenizer_json(m.tokenizer));
  write_file_atomic((dir / "tokenizer_config.json").string(), hf_tokenizer_config_json(m.tokenizer, m.chat_template));
}

}  // namespace qbench
