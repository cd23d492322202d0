// Hugging Face model folders: config.json + safetensors (one file, or shards listed by
// model.safetensors.index.json) + tokenizer.json / tokenizer_config.json.
#include "engine/model/hf_model.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/io/safetensors.h"
#include "engine/model/arch.h"

namespace qbench {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json read_json(const fs::path& p) {
  const std::string text = read_file(p.string());
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(p.string() + ": not valid JSON (" + std::string(e.what()) + ")");
  }
}

// Typed access to config.json with one-line errors naming the key.
struct Config {
  const json& j;
  std::string path;

  const json* find(const char* key) const {
    const auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  int64_t integer(const char* key) const {
    const json* v = find(key);
    if (v == nullptr) throw Error(path + ": missing key '" + std::string(key) + "'");
    if (!v->is_number_integer()) throw Error(path + ": key '" + std::string(key) + "' is " + v->dump() + ", expected an integer");
    return v->get<int64_t>();
  }
  int64_t integer_or(const char* key, int64_t fallback) const { return find(key) ? integer(key) : fallback; }
  double number_or(const char* key, double fallback) const {
    const json* v = find(key);
    if (v == nullptr) return fallback;
    if (!v->is_number()) throw Error(path + ": key '" + std::string(key) + "' is " + v->dump() + ", expected a number");
    return v->get<double>();
  }
  bool boolean_or(const char* key, bool fallback) const {
    const json* v = find(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) throw Error(path + ": key '" + std::string(key) + "' is " + v->dump() + ", expected true or false");
    return v->get<bool>();
  }
  std::string string_or(const char* key, const std::string& fallback) const {
    const json* v = find(key);
    if (v == nullptr) return fallback;
    if (!v->is_string()) throw Error(path + ": key '" + std::string(key) + "' is " + v->dump() + ", expected a string");
    return v->get<std::string>();
  }
};

// Llama 3.1's rope_scaling as llama.cpp's converter turns it into rope_freqs.weight: per
// frequency, the divisor of the rotary angle (1 for short wavelengths, `factor` for long ones,
// a smooth blend between). Computed in float32 as the converter's torch code does.
std::vector<float> llama3_rope_freqs(const json& rs, const Config& cfg, float base, int64_t n_rot) {
  auto num = [&](const char* key, double fallback) {
    const auto it = rs.find(key);
    if (it == rs.end()) {
      if (fallback >= 0) return fallback;
      throw Error(cfg.path + ": rope_scaling of type llama3 lacks '" + std::string(key) + "'");
    }
    if (!it->is_number()) throw Error(cfg.path + ": rope_scaling." + std::string(key) + " is not a number");
    return it->get<double>();
  };
  const float factor = float(num("factor", -1)), low = float(num("low_freq_factor", 1.0)),
              high = float(num("high_freq_factor", 4.0)), old_ctx = float(num("original_max_position_embeddings", 8192));
  if (!(factor > 0) || !(low > 0) || !(high > low) || !(old_ctx > 0)) {
    throw Error(cfg.path + ": rope_scaling of type llama3 needs factor > 0 and high_freq_factor > low_freq_factor > 0");
  }
  const float low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
  std::vector<float> out;
  for (int64_t i = 0; i < n_rot; i += 2) {
    const float freq = 1.0f / std::pow(base, float(i) / float(n_rot));
    const float wavelen = float(2.0 * M_PI) / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(factor);
    } else {
      const float smooth = (old_ctx / wavelen - low) / (high - low);
      out.push_back(1.0f / ((1.0f - smooth) / factor + smooth));
    }
  }
  return out;
}

std::optional<TensorType> tensor_type(safetensors::DType d) {
  switch (d) {
    case safetensors::DType::F32: return TensorType::F32;
    case safetensors::DType::F16: return TensorType::F16;
    case safetensors::DType::BF16: return TensorType::BF16;
    default: return std::nullopt;
  }
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// The tensors of every shard by name.
class Weights {
 public:
  explicit Weights(const fs::path& dir) : dir_(dir) {
    const fs::path index = dir / "model.safetensors.index.json";
    const fs::path single = dir / "model.safetensors";
    if (fs::exists(index)) {
      const json j = read_json(index);
      const auto wm = j.find("weight_map");
      if (wm == j.end() || !wm->is_object()) throw Error(index.string() + ": missing object 'weight_map'");
      std::map<std::string, const safetensors::File*> shards;
      for (const auto& [name, file] : wm->items()) {
        if (!file.is_string()) throw Error(index.string() + ": weight_map entry '" + name + "' is not a file name");
        const std::string fname = file.get<std::string>();
        if (fname.empty() || fname.find('/') != std::string::npos || fname == "..") {
          throw Error(index.string() + ": weight_map entry '" + name + "' names '" + fname + "', not a file of the folder");
        }
        if (!shards.count(fname)) {
          const fs::path p = dir / fname;
          if (!fs::exists(p)) {
            throw Error(index.string() + ": shard '" + fname + "' (holding '" + name + "') is missing from the folder");
          }
          files_.push_back(safetensors::File::open(p.string()));
          shards[fname] = files_.back().get();
        }
        const safetensors::TensorInfo* t = shards[fname]->find(name);
        if (t == nullptr) throw Error(shards[fname]->path() + ": tensor '" + name + "', listed in the index, is not in this shard");
        by_name_[name] = {t, shards[fname]};
      }
      for (const auto& f : files_) {
        for (const auto& t : f->tensors()) {
          const auto it = by_name_.find(t.name);
          if (it == by_name_.end()) {
            throw Error(f->path() + ": tensor '" + t.name + "' is not listed in model.safetensors.index.json");
          }
          if (it->second.second != f.get()) {
            throw Error(f->path() + ": tensor '" + t.name + "' is also in " + it->second.second->path());
          }
        }
      }
    } else if (fs::exists(single)) {
      files_.push_back(safetensors::File::open(single.string()));
      for (const auto& t : files_.back()->tensors()) by_name_[t.name] = {&t, files_.back().get()};
    } else {
      throw Error(dir.string() + ": no model.safetensors or model.safetensors.index.json (qbench reads safetensors "
                                 "weights; PyTorch .bin checkpoints are not supported)");
    }
  }

  // The tensor `name` with exactly `shape`, in F32, F16 or BF16.
  const safetensors::TensorInfo& get(const std::string& name, const std::vector<int64_t>& shape) const {
    const auto it = by_name_.find(name);
    if (it == by_name_.end()) throw Error(dir_.string() + ": missing tensor '" + name + "'");
    used_.insert(name);
    const safetensors::TensorInfo& t = *it->second.first;
    const std::string& file = it->second.second->path();
    if (!tensor_type(t.dtype)) {
      throw Error(file + ": tensor '" + name + "' has dtype " + safetensors::dtype_name(t.dtype) +
                  " (qbench reads F32, F16 and BF16 checkpoints)");
    }
    if (t.shape != shape) {
      throw Error(file + ": tensor '" + name + "' has shape " + shape_str(t.shape) + ", but config.json implies " +
                  shape_str(shape));
    }
    return t;
  }
  bool has(const std::string& name) const { return by_name_.count(name) != 0; }

  // Tensors no part of the model read, apart from ones known to be redundant.
  void check_all_used() const {
    for (const auto& [name, t] : by_name_) {
      if (used_.count(name) || name.ends_with("rotary_emb.inv_freq")) continue;
      throw Error(t.second->path() + ": tensor '" + name + "' is not part of the architecture qbench runs (unsupported variant?)");
    }
  }

  void keep_alive(Model& m) const {
    for (const auto& f : files_) m.storage.push_back(f->mapping());
  }

 private:
  fs::path dir_;
  std::vector<std::unique_ptr<safetensors::File>> files_;
  std::map<std::string, std::pair<const safetensors::TensorInfo*, const safetensors::File*>> by_name_;
  mutable std::set<std::string> used_;
};

}  // namespace

bool is_hf_folder(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

Model load_hf_folder(const std::string& dir_path) {
  const fs::path dir(dir_path);
  const fs::path config_path = dir / "config.json";
  if (!fs::exists(config_path)) {
    throw Error(dir_path + ": is a directory without config.json (a Hugging Face model folder holds config.json, "
                           "safetensors weights and tokenizer.json)");
  }
  const json j = read_json(config_path);
  if (!j.is_object()) throw Error(config_path.string() + ": not a JSON object");
  const Config cfg{j, config_path.string()};

  const auto archs = j.find("architectures");
  if (archs == j.end() || !archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
    throw Error(cfg.path + ": missing key 'architectures'");
  }
  const std::string hf_class = (*archs)[0].get<std::string>();
  const Architecture* arch = find_architecture_hf(hf_class);
  if (arch == nullptr) {
    throw Error(cfg.path + ": architecture '" + hf_class + "' is not supported (qbench reads " +
                known_architectures_hf() + ")");
  }
  if (const json* q = cfg.find("quantization_config")) {
    const std::string method = q->is_object() ? q->value("quant_method", std::string("unknown")) : "unknown";
    throw Error(cfg.path + ": a quantized checkpoint (quantization_config, quant_method '" + method +
                "'); qbench reads unquantized F32/F16/BF16 weights and quantizes them itself");
  }
  if (const std::string act = cfg.string_or("hidden_act", "silu"); act != "silu") {
    throw Error(cfg.path + ": hidden_act '" + act + "' is not supported (SiLU-gated feed-forward only)");
  }
  if (cfg.boolean_or("attention_bias", false) && !arch->qkv_bias) {
    throw Error(cfg.path + ": attention_bias true is not supported for " + hf_class);
  }
  if (cfg.boolean_or("mlp_bias", false)) throw Error(cfg.path + ": mlp_bias true is not supported");
  if (cfg.number_or("partial_rotary_factor", 1.0) != 1.0) throw Error(cfg.path + ": partial_rotary_factor is not supported");

  Model m;
  ModelConfig& c = m.config;
  c.arch = std::string(arch->gguf_arch);
  c.rope_type = arch->rope;
  c.name = cfg.string_or("_name_or_path", "");
  if (c.name.empty()) c.name = fs::absolute(dir).lexically_normal().filename().string();
  if (c.name.empty()) c.name = fs::absolute(dir).lexically_normal().parent_path().filename().string();
  c.n_vocab = cfg.integer("vocab_size");
  c.n_embd = cfg.integer("hidden_size");
  c.n_ff = cfg.integer("intermediate_size");
  c.n_layer = cfg.integer("num_hidden_layers");
  c.n_head = cfg.integer("num_attention_heads");
  c.n_head_kv = cfg.integer_or("num_key_value_heads", c.n_head);
  c.n_ctx_train = cfg.integer("max_position_embeddings");
  c.rms_eps = float(cfg.number_or("rms_norm_eps", 1e-6));
  c.rope_freq_base = float(cfg.number_or("rope_theta", 10000.0));
  c.n_rot = c.n_head > 0 && c.n_embd % c.n_head == 0 ? c.n_embd / c.n_head : 0;
  if (const json* hd = cfg.find("head_dim"); hd && c.n_rot > 0 && cfg.integer("head_dim") != c.n_rot) {
    throw Error(cfg.path + ": head_dim " + hd->dump() + " differs from hidden_size / num_attention_heads = " +
                std::to_string(c.n_rot) + " (not supported)");
  }
  validate_config(c, cfg.path);

  if (const json* rs = cfg.find("rope_scaling")) {
    if (!rs->is_object()) throw Error(cfg.path + ": rope_scaling is not an object");
    std::string type = rs->value("rope_type", rs->value("type", std::string()));
    if (type == "llama3") {
      m.rope_freqs = llama3_rope_freqs(*rs, cfg, c.rope_freq_base, c.n_rot);
    } else if (type == "linear") {
      const double factor = rs->value("factor", 0.0);
      if (!(factor > 0.0)) throw Error(cfg.path + ": rope_scaling of type linear needs a positive factor");
      c.rope_freq_scale = float(1.0 / factor);
    } else if (type != "default") {
      throw Error(cfg.path + ": rope_scaling type '" + type + "' is not supported (llama3, linear)");
    }
  }

  const Weights w(dir);
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    const safetensors::TensorInfo& t = w.get(name, {rows, cols});
    Matrix mat{*tensor_type(t.dtype), rows, cols, t.data};
    if (reinterpret_cast<uintptr_t>(t.data) % safetensors::dtype_size(t.dtype) != 0) {  // unaligned: copy
      auto buf = std::make_shared<std::vector<uint8_t>>(t.data, t.data + t.nbytes);
      mat.data = buf->data();
      m.storage.push_back(std::shared_ptr<const void>(buf, buf->data()));
    }
    return mat;
  };
  auto vec = [&](const std::string& name, int64_t n) {
    const safetensors::TensorInfo& t = w.get(name, {n});
    std::vector<float> v(static_cast<size_t>(n));
    if (t.dtype == safetensors::DType::F32) {
      std::memcpy(v.data(), t.data, t.nbytes);
    } else {
      std::vector<uint8_t> bytes(t.data, t.data + t.nbytes);  // aligned for the row conversion
      type_traits(*tensor_type(t.dtype)).dequantize_row(bytes.data(), v.data(), n);
    }
    return v;
  };
  // q/k rows from the checkpoint's halves layout into GGUF's interleaved one: a copy of these
  // two matrices in their own dtype (every other weight stays in the mapping).
  auto permute_rows = [&](Matrix& mat) {
    const size_t rb = mat.row_bytes();
    auto buf = std::make_shared<std::vector<uint8_t>>(mat.bytes());
    for (int64_t r = 0; r < mat.rows; ++r) {
      std::memcpy(buf->data() + size_t(r) * rb, mat.row(hf_row_of_gguf_row(r, c.head_dim())), rb);
    }
    mat.data = buf->data();
    m.storage.push_back(std::shared_ptr<const void>(buf, buf->data()));
  };

  m.tok_embd = matrix(std::string(kHfTokEmbd), c.n_vocab, c.n_embd);
  m.output_norm = vec(std::string(kHfOutputNorm), c.n_embd);
  const bool tied = cfg.boolean_or("tie_word_embeddings", arch->tied_default);
  if (!tied || w.has(std::string(kHfOutput))) {
    m.output = matrix(std::string(kHfOutput), c.n_vocab, c.n_embd);
  } else {
    m.output = m.tok_embd;
    m.tied_output = true;
  }
  m.layers.resize(size_t(c.n_layer));
  for (int64_t i = 0; i < c.n_layer; ++i) {
    LayerWeights& L = m.layers[size_t(i)];
    for (const LayerTensor& t : layer_tensors()) {
      const std::string name = t.hf_name(i);
      if (t.matrix) {
        Matrix& mat = L.*t.matrix;
        mat = matrix(name, dim_size(c, t.rows), dim_size(c, t.cols));
        if (t.rotary && arch->hf_permuted_qk) permute_rows(mat);
      } else if (!t.bias || arch->qkv_bias) {
        L.*t.vector = vec(name, dim_size(c, t.rows));
      }
    }
  }
  w.check_all_used();
  w.keep_alive(m);

  const fs::path tok = dir / "tokenizer.json";
  if (!fs::exists(tok)) {
    throw Error(dir_path + ": no tokenizer.json (qbench reads the tokenizer from tokenizer.json and "
                           "tokenizer_config.json)");
  }
  m.tokenizer = Tokenizer::from_hf_json(tok.string());
  if (m.tokenizer.n_tokens() > c.n_vocab) {
    throw Error(tok.string() + ": tokenizer has " + std::to_string(m.tokenizer.n_tokens()) +
                " tokens but config.json's vocab_size is " + std::to_string(c.n_vocab));
  }
  // Embedding rows past the tokenizer (vocabularies padded to a multiple of 64 or 128) become
  // "[PAD<i>]" tokens of type Unused, as llama.cpp's converter writes them.
  m.tokenizer.pad_to(int32_t(c.n_vocab));
  const fs::path tok_config = dir / "tokenizer_config.json";
  if (fs::exists(tok_config)) {
    const json tc = read_json(tok_config);
    const auto ct = tc.find("chat_template");
    if (ct != tc.end() && ct->is_string()) {
      m.chat_template = ct->get<std::string>();
    } else if (ct != tc.end() && ct->is_array()) {  // named templates: the "default" one
      for (const auto& e : *ct) {
        if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e.at("template").is_string()) {
          m.chat_template = e.at("template").get<std::string>();
        }
      }
    }
  }
  m.format = "hf";
  m.path = dir_path;
  return m;
}

}  // namespace qbench
