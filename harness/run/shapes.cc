#include "harness/run/shapes.h"

#include <tbb/parallel_for.h>

#include <cmath>
#include <memory>

#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/model/arch.h"
#include "harness/run/config.h"
#include "quantizers/registry.h"

namespace qbench::run {
namespace {

ModelShape shape(std::string name, std::string arch, int64_t vocab, int64_t embd, int64_t ff, int64_t layers,
                 int64_t heads, int64_t kv_heads, int64_t ctx, float rope_base, float eps, bool tied,
                 std::string source) {
  // Rope layout and q/k/v biases come from the architecture table (engine/model/arch.h).
  const Architecture* a = find_architecture_gguf(arch);
  QB_ASSERT(a != nullptr);
  ModelShape s;
  s.name = std::move(name);
  ModelConfig& c = s.config;
  c.arch = std::move(arch);
  c.name = s.name + " (random weights)";
  c.n_vocab = vocab;
  c.n_embd = embd;
  c.n_ff = ff;
  c.n_layer = layers;
  c.n_head = heads;
  c.n_head_kv = kv_heads;
  c.n_ctx_train = ctx;
  c.n_rot = embd / heads;
  c.rope_freq_base = rope_base;
  c.rms_eps = eps;
  c.rope_type = a->rope;
  s.tied_output = tied;
  s.qkv_bias = a->qkv_bias;
  s.source = std::move(source);
  return s;
}

}  // namespace

const std::vector<ModelShape>& model_shapes() {
  static const std::vector<ModelShape> shapes = {
      shape("tinyllama-1.1b", "llama", 32000, 2048, 5632, 22, 32, 4, 2048, 10000.0f, 1e-5f, false,
            "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T config.json"),
      shape("llama-3.2-1b", "llama", 128256, 2048, 8192, 16, 32, 8, 131072, 500000.0f, 1e-5f, true,
            "meta-llama/Llama-3.2-1B config.json (tie_word_embeddings: true)"),
      shape("qwen2.5-0.5b", "qwen2", 151936, 896, 4864, 24, 14, 2, 32768, 1000000.0f, 1e-6f, true,
            "Qwen/Qwen2.5-0.5B config.json (tie_word_embeddings: true, q/k/v biases)"),
      // Small enough that an experiment's speed units at this shape take seconds per scheme, large
      // enough (325 MB as fp16, 92 MB as q4_0) that decode streams the weights from DRAM, not L3.
      shape("llama-160m", "llama", 32000, 768, 3072, 12, 12, 12, 2048, 10000.0f, 1e-6f, false,
            "JackFram/llama-160m config.json (tie_word_embeddings: false)"),
      shape("tiny", "llama", 512, 256, 512, 2, 4, 2, 512, 10000.0f, 1e-5f, false,
            "qbench test shape"),
  };
  return shapes;
}

const ModelShape& find_shape(const std::string& name) {
  std::string known;
  for (const auto& s : model_shapes()) {
    if (s.name == name) return s;
    known += (known.empty() ? "" : ", ") + s.name;
  }
  throw Error("unknown shape '" + name + "' (known: " + known + ")");
}

int64_t shape_parameters(const ModelShape& shape) {
  const ModelConfig& c = shape.config;
  const int64_t d = c.n_embd, dkv = c.n_embd_kv();
  int64_t per_layer = 2 * d * d + 2 * dkv * d + 3 * d * c.n_ff + 2 * d;
  if (shape.qkv_bias) per_layer += d + 2 * dkv;
  return c.n_vocab * d * (shape.tied_output ? 1 : 2) + d + c.n_layer * per_layer;
}

Model build_random_model(const ModelShape& shape, uint64_t seed, bool share_layer_weights) {
  const ModelConfig& c = shape.config;
  validate_config(c, "shape " + shape.name);
  Model m;
  m.config = c;
  m.tied_output = shape.tied_output;
  m.path = "shape:" + shape.name;
  m.format = "random";
  // Each matrix gets its own buffer so a quantized variant can release the F32 bytes it replaced.
  std::vector<std::pair<Matrix*, std::shared_ptr<std::vector<float>>>> todo;
  auto matrix = [&](Matrix& mat, int64_t rows, int64_t cols) {
    auto buf = std::make_shared<std::vector<float>>(size_t(rows * cols));
    mat = Matrix{TensorType::F32, rows, cols, reinterpret_cast<const uint8_t*>(buf->data())};
    m.storage.push_back(buf);
    todo.emplace_back(&mat, buf);
  };
  const int64_t d = c.n_embd, dkv = c.n_embd_kv();
  matrix(m.tok_embd, c.n_vocab, d);
  if (shape.tied_output) {
    m.output = m.tok_embd;
  } else {
    matrix(m.output, c.n_vocab, d);
  }
  m.output_norm.assign(size_t(d), 1.0f);
  m.layers.resize(size_t(c.n_layer));
  for (size_t l = 0; l < m.layers.size(); ++l) {
    LayerWeights& L = m.layers[l];
    if (share_layer_weights && l > 0) {
      L = m.layers[0];  // views of layer 0's buffers (norms and biases are small copies)
      continue;
    }
    L.attn_norm.assign(size_t(d), 1.0f);
    L.ffn_norm.assign(size_t(d), 1.0f);
    matrix(L.wq, d, d);
    matrix(L.wk, dkv, d);
    matrix(L.wv, dkv, d);
    matrix(L.wo, d, d);
    matrix(L.w_gate, c.n_ff, d);
    matrix(L.w_up, c.n_ff, d);
    matrix(L.w_down, d, c.n_ff);
    if (shape.qkv_bias) {
      L.bq.assign(size_t(d), 0.01f);
      L.bk.assign(size_t(dkv), 0.01f);
      L.bv.assign(size_t(dkv), 0.01f);
    }
  }
  const float half_width = 0.02f * std::sqrt(3.0f);  // uniform with sd 0.02
  tbb::parallel_for(size_t(0), todo.size(), [&](size_t i) {
    std::vector<float>& w = *todo[i].second;
    Rng rng = Rng::derived(seed, i);
    for (float& v : w) v = half_width * float(2.0 * rng.uniform() - 1.0);
  });
  return m;
}

Model quantized_random_model(const ModelShape& shape, const std::string& scheme, quant::QuantizeReport* report,
                             const std::atomic<bool>* cancel) {
  const quant::Recipe recipe = quant::make_recipe(scheme);
  if (const std::string same_format = uncalibrated_equivalent(scheme); same_format != scheme) {
    throw Error("scheme " + scheme + " needs calibration text or training, which random weights of shape " +
                shape.name + " do not come with; " + same_format + " writes the same packed format (the same speed)");
  }
  // F32 kept as it is (f32, keep) cannot share one layer's buffers: each layer must own its bytes.
  const std::string canonical = scheme_canonical(scheme.substr(0, scheme.rfind("+kv=")));
  const bool keeps_f32 = canonical == "f32" || canonical == "keep";
  // The source lives only in this scope: the variant holds what it shares with it.
  const Model source = build_random_model(shape, 1, !keeps_f32);
  return quant::quantize_model(source, recipe, report, nullptr, cancel);
}

std::string uncalibrated_equivalent(const std::string& scheme) {
  // The KV cache setting ("+kv=...") is kept as it is: it does not depend on calibration.
  if (const size_t plus = scheme.rfind("+kv="); plus != std::string::npos) {
    return uncalibrated_equivalent(scheme.substr(0, plus)) + scheme.substr(plus);
  }
  const quant::Recipe recipe = quant::make_recipe(scheme);
  if (recipe.ftype) return scheme;  // llama.cpp mixes: an importance matrix is optional
  const quant::SchemeSpec& s = recipe.scheme;
  if (s.method == "qat") {
    // Trained into rtn's formats or q4_0 (harness/qat.h): random weights have no teacher to learn from.
    if (s.get("target") == "q4_0") return "q4_0:";  // every tensor in Q4_0 (plain "q4_0" is llama.cpp's mix)
    return "rtn:int" + s.get("bits") + ",group=" + s.get("group") + ",sym=" + s.get("sym");
  }
  if (!quant::registry().method(s).needs_calibration_text()) return scheme;
  if (s.method == "gptq" || s.method == "awq") {
    // Both pack into rtn's intN_{sym,asym}_{gG,row} formats (gptq.cc, awq.cc's quantize_awq_rtn).
    return "rtn:int" + s.get("bits") + ",group=" + s.get("group") + ",sym=" + s.get("sym");
  }
  if (s.method == "smoothquant") return "w8a8";  // the scales are folded into norms and weights
  throw Error("scheme " + s.to_string() + " needs calibration text and has no uncalibrated equivalent of the same "
              "format to measure the speed of at a shape");
}

std::string speed_shape_label(const std::string& shape, const std::string& scheme, const std::string& measured) {
  std::string label = "speed measured at " + shape + " shape, random weights";
  if (measured != scheme) label += " (" + scheme + " as " + measured + ", the same packed format without calibration or training)";
  return label;
}

}  // namespace qbench::run
