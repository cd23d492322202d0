#include "engine/model/model.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <optional>

#include <cstring>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/io/gguf.h"
#include "engine/model/arch.h"
#include "engine/model/hf_model.h"

namespace qbench {
void validate_config(const ModelConfig& c, const std::string& path) {
  auto positive = [&](int64_t v, const char* what) {
    if (v <= 0 || v > (int64_t(1) << 24)) {
      throw Error(path + ": " + what + " is " + std::to_string(v) + ", expected a positive size");
    }
  };
  positive(c.n_vocab, "vocabulary size");
  positive(c.n_embd, "embedding length");
  positive(c.n_ff, "feed-forward length");
  positive(c.n_layer, "block count");
  positive(c.n_head, "head count");
  positive(c.n_head_kv, "KV head count");
  positive(c.n_ctx_train, "context length");
  if (c.n_embd % c.n_head != 0) {
    throw Error(path + ": embedding length " + std::to_string(c.n_embd) + " is not divisible by " +
                std::to_string(c.n_head) + " heads");
  }
  if (c.n_head % c.n_head_kv != 0) {
    throw Error(path + ": " + std::to_string(c.n_head) + " heads is not a multiple of " +
                std::to_string(c.n_head_kv) + " KV heads");
  }
  if (c.n_rot <= 0 || c.n_rot > c.head_dim() || c.n_rot % 2 != 0) {
    throw Error(path + ": rope dimension count " + std::to_string(c.n_rot) +
                " must be even and at most the head size " + std::to_string(c.head_dim()));
  }
  if (!(c.rms_eps > 0.0f) || !(c.rope_freq_base > 0.0f)) {
    throw Error(path + ": RMS epsilon and rope frequency base must be positive");
  }
}

namespace {

std::vector<float> to_float_vector(const uint8_t* data, TensorType type, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  type_traits(type).dequantize_row(data, v.data(), n);
  return v;
}

// ---------------------------------------------------------------------------------------------
// GGUF

struct GgufLoader {
  const gguf::File& f;
  const std::string& arch;

  int64_t key_int(const std::string& suffix) const { return f.require_int(arch + "." + suffix); }

  const gguf::TensorInfo& tensor(const std::string& name, std::vector<int64_t> dims) const {
    const gguf::TensorInfo* t = f.find_tensor(name);
    if (t == nullptr) throw Error(f.path() + ": missing tensor '" + name + "'");
    if (t->dims != dims) {
      auto str = [](const std::vector<int64_t>& d) {
        std::string s = "[";
        for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
        return s + "]";
      };
      throw Error(f.path() + ": tensor '" + name + "' has shape " + str(t->dims) + ", expected " + str(dims));
    }
    if (!t->traits->supported()) {
      throw Error(f.path() + ": tensor '" + name + "' has type " + std::string(t->traits->name) +
                  ", which this qbench cannot compute with");
    }
    return *t;
  }
  Matrix matrix(const std::string& name, int64_t rows, int64_t cols) const {
    const gguf::TensorInfo& t = tensor(name, {cols, rows});
    return Matrix{t.type, rows, cols, t.data};
  }
  std::vector<float> vec(const std::string& name, int64_t n) const {
    const gguf::TensorInfo& t = tensor(name, {n});
    return to_float_vector(t.data, t.type, n);
  }
  std::vector<float> optional_vec(const std::string& name, int64_t n) const {
    return f.find_tensor(name) ? vec(name, n) : std::vector<float>{};
  }
};

Model load_gguf(const std::string& path) {
  const auto file = gguf::File::open(path);
  const gguf::File& f = *file;
  const std::string arch = f.require_string("general.architecture");
  Model m;
  ModelConfig& c = m.config;
  c.arch = arch;
  const Architecture* info = find_architecture_gguf(arch);
  if (info == nullptr) {
    throw Error(path + ": unknown architecture '" + arch + "' (qbench runs " + known_architectures_gguf() + ")");
  }
  c.rope_type = info->rope;
  GgufLoader ld{f, arch};
  c.name = f.get_string("general.name").value_or("");
  c.n_embd = ld.key_int("embedding_length");
  c.n_ff = ld.key_int("feed_forward_length");
  c.n_layer = ld.key_int("block_count");
  c.n_head = ld.key_int("attention.head_count");
  c.n_head_kv = f.get_int(arch + ".attention.head_count_kv").value_or(c.n_head);
  c.n_ctx_train = ld.key_int("context_length");
  const gguf::TensorInfo* emb = f.find_tensor(std::string(kGgufTokEmbd));
  if (emb == nullptr) throw Error(path + ": missing tensor 'token_embd.weight'");
  c.n_vocab = f.get_int(arch + ".vocab_size").value_or(emb->dims.size() == 2 ? emb->dims[1] : 0);
  c.n_rot = f.get_int(arch + ".rope.dimension_count")
                .value_or(c.n_head > 0 ? c.n_embd / c.n_head : 0);
  c.rope_freq_base = float(f.get_float(arch + ".rope.freq_base").value_or(10000.0));
  const auto eps = f.get_float(arch + ".attention.layer_norm_rms_epsilon");
  if (!eps) throw Error(path + ": missing metadata key '" + arch + ".attention.layer_norm_rms_epsilon'");
  c.rms_eps = float(*eps);
  // Rope scaling as llama.cpp reads it: "none", or "linear" (positions divided by the factor);
  // Llama 3.1's frequency factors come as the rope_freqs.weight tensor instead.
  const std::string scaling = f.get_string(arch + ".rope.scaling.type").value_or("none");
  if (scaling == "linear") {
    const double factor = f.get_float(arch + ".rope.scaling.factor").value_or(1.0);
    if (!(factor > 0.0)) throw Error(path + ": " + arch + ".rope.scaling.factor must be positive");
    c.rope_freq_scale = float(1.0 / factor);
  } else if (scaling != "none") {
    throw Error(path + ": rope scaling type '" + scaling + "' is not supported (none, linear, or Llama 3 rope_freqs)");
  }
  if (const auto scale = f.get_float(arch + ".rope.scale_linear")) c.rope_freq_scale = float(1.0 / *scale);
  validate_config(c, path);

  m.tok_embd = ld.matrix(std::string(kGgufTokEmbd), c.n_vocab, c.n_embd);
  m.output_norm = ld.vec(std::string(kGgufOutputNorm), c.n_embd);
  if (f.find_tensor(std::string(kGgufOutput))) {
    m.output = ld.matrix(std::string(kGgufOutput), c.n_vocab, c.n_embd);
  } else {
    m.output = m.tok_embd;
    m.tied_output = true;
  }
  m.rope_freqs = ld.optional_vec(std::string(kGgufRopeFreqs), c.n_rot / 2);
  m.layers.resize(size_t(c.n_layer));
  for (int64_t i = 0; i < c.n_layer; ++i) {
    LayerWeights& L = m.layers[size_t(i)];
    for (const LayerTensor& t : layer_tensors()) {
      const std::string name = t.gguf_name(i);
      if (t.matrix) {
        L.*t.matrix = ld.matrix(name, dim_size(c, t.rows), dim_size(c, t.cols));
      } else {
        L.*t.vector = t.bias ? ld.optional_vec(name, dim_size(c, t.rows)) : ld.vec(name, dim_size(c, t.rows));
      }
    }
  }
  if (f.find("tokenizer.ggml.model")) {
    m.tokenizer = Tokenizer::from_gguf(f);
    if (m.tokenizer.n_tokens() != c.n_vocab) {
      throw Error(path + ": tokenizer has " + std::to_string(m.tokenizer.n_tokens()) +
                  " tokens but the model's vocabulary is " + std::to_string(c.n_vocab));
    }
  }
  m.chat_template = f.get_string("tokenizer.chat_template").value_or("");
  m.storage.push_back(f.mapping());
  m.format = "gguf";
  return m;
}

// ---------------------------------------------------------------------------------------------
// llama2.c checkpoints (Karpathy's run.c "legacy" export and the version-1 float export)

Model load_llama2c(const std::string& path) {
  auto map = std::make_shared<MappedFile>(path);
  const size_t size = map->size();
  const uint8_t* base = map->data();
  size_t header = 28;
  int32_t h[7];
  bool shared_classifier;
  if (size >= 8 && std::memcmp(base, "24ka", 4) == 0) {  // uint32 0x616b3432 "ak42", little-endian
    int32_t version;
    std::memcpy(&version, base + 4, 4);
    if (version != 1) {
      throw Error(path + ": llama2.c export version " + std::to_string(version) +
                  " is not supported (qbench reads the legacy and version-1 float exports)");
    }
    if (size < 256) throw Error(path + ": truncated llama2.c header");
    std::memcpy(h, base + 8, sizeof h);
    shared_classifier = base[36] != 0;
    header = 256;
  } else {
    if (size < 28) {
      throw Error(path + ": not a model file: " + std::to_string(size) +
                  " bytes is neither a GGUF nor a llama2.c checkpoint");
    }
    std::memcpy(h, base, sizeof h);
    shared_classifier = h[5] > 0;
    h[5] = h[5] < 0 ? -h[5] : h[5];
  }
  ModelConfig c;
  c.arch = "llama";
  c.name = "llama2.c";
  c.n_embd = h[0];
  c.n_ff = h[1];
  c.n_layer = h[2];
  c.n_head = h[3];
  c.n_head_kv = h[4];
  c.n_vocab = h[5];
  c.n_ctx_train = h[6];
  for (int i = 0; i < 7; ++i) {
    if (h[i] <= 0 || h[i] > (1 << 24)) {
      throw Error(path + ": not a GGUF file and not a llama2.c checkpoint (header field " +
                  std::to_string(i) + " is " + std::to_string(h[i]) + ")");
    }
  }
  if (c.n_head > 0 && c.n_embd % c.n_head == 0) c.n_rot = c.n_embd / c.n_head;
  validate_config(c, path);

  const int64_t d = c.n_embd, dkv = c.n_embd_kv(), ff = c.n_ff, L = c.n_layer, V = c.n_vocab;
  const int64_t hs = d / c.n_head;
  const int64_t floats_legacy = V * d + L * d + L * d * d + 2 * L * d * dkv + L * d * d + L * d +
                                3 * L * d * ff + d + c.n_ctx_train * hs + (shared_classifier ? 0 : V * d);
  const int64_t floats_v1 = V * d + 2 * L * d + d + 2 * L * d * d + 2 * L * d * dkv + 3 * L * d * ff +
                            (shared_classifier ? 0 : V * d);
  const int64_t expected = int64_t(header) + 4 * (header == 28 ? floats_legacy : floats_v1);
  if (int64_t(size) != expected) {
    throw Error(path + ": llama2.c checkpoint is " + std::to_string(size) + " bytes, but its header (dim " +
                std::to_string(d) + ", " + std::to_string(L) + " layers, vocab " + std::to_string(V) +
                ") implies " + std::to_string(expected) + (int64_t(size) < expected ? "; the file is truncated" : ""));
  }

  const float* p = reinterpret_cast<const float*>(base + header);
  auto take = [&](int64_t n) {
    const float* q = p;
    p += n;
    return q;
  };
  auto mat = [](const float* q, int64_t rows, int64_t cols) {
    return Matrix{TensorType::F32, rows, cols, reinterpret_cast<const uint8_t*>(q)};
  };
  auto vec = [](const float* q, int64_t n) { return std::vector<float>(q, q + n); };

  Model m;
  m.config = c;
  m.layers.resize(size_t(L));
  if (header == 28) {
    m.tok_embd = mat(take(V * d), V, d);
    for (auto& l : m.layers) l.attn_norm = vec(take(d), d);
    for (auto& l : m.layers) l.wq = mat(take(d * d), d, d);
    for (auto& l : m.layers) l.wk = mat(take(dkv * d), dkv, d);
    for (auto& l : m.layers) l.wv = mat(take(dkv * d), dkv, d);
    for (auto& l : m.layers) l.wo = mat(take(d * d), d, d);
    for (auto& l : m.layers) l.ffn_norm = vec(take(d), d);
    for (auto& l : m.layers) l.w_gate = mat(take(ff * d), ff, d);  // w1
    for (auto& l : m.layers) l.w_down = mat(take(d * ff), d, ff);  // w2
    for (auto& l : m.layers) l.w_up = mat(take(ff * d), ff, d);    // w3
    m.output_norm = vec(take(d), d);
    take(c.n_ctx_train * hs);  // precomputed RoPE tables (freq_cis_real, freq_cis_imag), unused
  } else {
    for (auto& l : m.layers) l.attn_norm = vec(take(d), d);
    for (auto& l : m.layers) l.ffn_norm = vec(take(d), d);
    m.output_norm = vec(take(d), d);
    m.tok_embd = mat(take(V * d), V, d);
    for (auto& l : m.layers) l.wq = mat(take(d * d), d, d);
    for (auto& l : m.layers) l.wk = mat(take(dkv * d), dkv, d);
    for (auto& l : m.layers) l.wv = mat(take(dkv * d), dkv, d);
    for (auto& l : m.layers) l.wo = mat(take(d * d), d, d);
    for (auto& l : m.layers) l.w_gate = mat(take(ff * d), ff, d);
    for (auto& l : m.layers) l.w_down = mat(take(d * ff), d, ff);
    for (auto& l : m.layers) l.w_up = mat(take(ff * d), ff, d);
  }
  if (shared_classifier) {
    m.output = m.tok_embd;
    m.tied_output = true;
  } else {
    m.output = mat(take(V * d), V, d);
  }
  m.storage.push_back(map);
  m.format = "llama2c";
  return m;
}

}  // namespace

std::vector<std::pair<std::string, const Matrix*>> Model::linear_weights() const {
  std::vector<std::pair<std::string, const Matrix*>> out;
  for (size_t i = 0; i < layers.size(); ++i) {
    for (const LayerTensor& t : layer_tensors()) {
      if (t.matrix) out.emplace_back(t.gguf_name(int64_t(i)), &(layers[i].*t.matrix));
    }
  }
  if (!tied_output) out.emplace_back(std::string(kGgufOutput), &output);
  return out;
}

std::string find_nonfinite_weight(const Model& m) {
  auto describe = [](const std::string& name, int64_t row, int64_t col, float v) {
    return name + (row >= 0 ? " row " + std::to_string(row) + "," : "") + " column " + std::to_string(col) + " (" +
           (std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf") + ")";
  };
  std::vector<std::pair<std::string, const Matrix*>> mats = {{"token_embd.weight", &m.tok_embd}};
  for (const auto& t : m.linear_weights()) mats.push_back(t);
  std::vector<float> row;
  for (const auto& [name, w] : mats) {
    if (w->empty() || !w->traits().supported()) continue;
    row.resize(size_t(w->cols));
    for (int64_t r = 0; r < w->rows; ++r) {
      w->traits().dequantize_row(w->row(r), row.data(), w->cols);
      for (int64_t c = 0; c < w->cols; ++c) {
        if (!std::isfinite(row[size_t(c)])) return describe(name, r, c, row[size_t(c)]);
      }
    }
  }
  auto vec = [&](const std::string& name, const std::vector<float>& v) -> std::string {
    for (size_t c = 0; c < v.size(); ++c) {
      if (!std::isfinite(v[c])) return describe(name, -1, int64_t(c), v[c]);
    }
    return {};
  };
  for (size_t i = 0; i < m.layers.size(); ++i) {
    for (const LayerTensor& t : layer_tensors()) {
      if (!t.vector) continue;
      if (std::string d = vec(t.gguf_name(int64_t(i)), m.layers[i].*t.vector); !d.empty()) return d;
    }
  }
  return vec("output_norm.weight", m.output_norm);
}

namespace {
// Values in a layer's norm weights and biases.
size_t vector_weights(const LayerWeights& L) {
  size_t n = 0;
  for (const LayerTensor& t : layer_tensors()) {
    if (t.vector) n += (L.*t.vector).size();
  }
  return n;
}
}  // namespace

int64_t Model::n_params() const {
  int64_t n = tok_embd.rows * tok_embd.cols + int64_t(output_norm.size());
  for (const auto& [name, w] : linear_weights()) n += w->rows * w->cols;
  for (const auto& L : layers) {
    n += int64_t(vector_weights(L));
  }
  return n;
}

size_t Model::weight_bytes() const {
  size_t n = tok_embd.bytes() + output_norm.size() * sizeof(float);
  for (const auto& [name, w] : linear_weights()) n += w->bytes();
  for (const auto& L : layers) {
    n += vector_weights(L) * sizeof(float);
  }
  return n;
}

namespace {
constexpr TensorType kKvCacheTypes[] = {TensorType::F32,  TensorType::F16,  TensorType::BF16,
                                        TensorType::Q8_0, TensorType::Q4_0, TensorType::Q4_1,
                                        TensorType::Q5_0, TensorType::Q5_1, TensorType::IQ4_NL};
}  // namespace

bool kv_cache_type_allowed(TensorType t) {
  return std::find(std::begin(kKvCacheTypes), std::end(kKvCacheTypes), t) != std::end(kKvCacheTypes);
}

std::string kv_cache_name(const KvCacheTypes& kv) {
  const std::string k(type_traits(kv.k).name);
  return (kv.k == kv.v ? k : k + "/" + std::string(type_traits(kv.v).name)) + (kv.rotate ? "" : ",rot=off");
}

namespace {
bool is_quantized_type(TensorType t) { return t != TensorType::F32 && t != TensorType::F16 && t != TensorType::BF16; }
}  // namespace

int64_t kv_key_rotation(const KvCacheTypes& kv, int64_t head_dim) {
  if (!kv.rotate || !is_quantized_type(kv.k) || head_dim % 64 != 0) return 0;
  int64_t n = 64;
  while (head_dim % (2 * n) == 0) n *= 2;
  return n;
}

int64_t kv_value_rotation(const KvCacheTypes& kv, int64_t head_dim) {
  return kv.rotate && is_quantized_type(kv.v) && head_dim % 64 == 0 ? 64 : 0;
}

KvCacheTypes parse_kv_cache(std::string_view text) {
  if (const size_t comma = text.find(','); comma != std::string_view::npos) {
    const std::string_view opt = text.substr(comma + 1);
    if (opt != "rot=off" && opt != "rot=auto") {
      throw Error("KV cache '" + std::string(text) + "': unknown option '" + std::string(opt) +
                  "' (expected rot=off or rot=auto)");
    }
    KvCacheTypes kv = parse_kv_cache(text.substr(0, comma));
    kv.rotate = opt == "rot=auto";
    return kv;
  }
  auto one = [&](std::string_view name) {
    const std::optional<TensorType> t = parse_type_name(name);
    if (!t || !kv_cache_type_allowed(*t)) {
      std::string allowed;
      for (TensorType a : kKvCacheTypes) allowed += (allowed.empty() ? "" : ", ") + std::string(type_traits(a).name);
      throw Error("KV cache type '" + std::string(name) + "' in '" + std::string(text) + "': expected one of " + allowed +
                  " (or TYPE_K/TYPE_V)");
    }
    return *t;
  };
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    const TensorType t = one(text);
    return {t, t};
  }
  return {one(text.substr(0, slash)), one(text.substr(slash + 1))};
}

const Tokenizer& Model::require_tokenizer() const {
  if (tokenizer.empty()) {
    throw Error(path + ": this model has no tokenizer; give the llama2.c tokenizer.bin with --tokenizer FILE");
  }
  return tokenizer;
}

Model load_model(const std::string& path, const std::string& tokenizer_path) {
  if (is_hf_folder(path)) {
    if (!tokenizer_path.empty()) {
      throw Error(tokenizer_path + ": --tokenizer is for llama2.c checkpoints; a model folder's tokenizer is its tokenizer.json");
    }
    return load_hf_folder(path);
  }
  // A file named *.gguf is always read as GGUF, so a wrong magic is reported as such.
  bool is_gguf = path.size() >= 5 && path.compare(path.size() - 5, 5, ".gguf") == 0;
  if (!is_gguf) {
    const MappedFile probe(path);
    is_gguf = probe.size() >= 4 && std::memcmp(probe.data(), "GGUF", 4) == 0;
  }
  Model m = is_gguf ? load_gguf(path) : load_llama2c(path);
  m.path = path;
  if (!tokenizer_path.empty()) {
    m.tokenizer = Tokenizer::from_llama2c(tokenizer_path);
    if (m.tokenizer.n_tokens() != m.config.n_vocab) {
      throw Error(tokenizer_path + ": tokenizer has " + std::to_string(m.tokenizer.n_tokens()) +
                  " tokens but the model " + path + " has a vocabulary of " + std::to_string(m.config.n_vocab));
    }
  }
  return m;
}

}  // namespace qbench
