// Hugging Face folders: the same model as an HF folder and as GGUF gives identical logits (the
// q/k rotary permutation), the checkpoint layout is Transformers' rotate_half (checked against
// a NeoX-rope model built from the raw checkpoint, independent of the permutation code), shards,
// dtypes, Llama 3.1 rope scaling, GGUF written from a folder, and bad folders.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/half.h"
#include "engine/core/mapped_file.h"
#include "engine/io/safetensors.h"
#include "engine/kernels/matmul.h"
#include "engine/model/arch.h"
#include "engine/model/forward.h"
#include "engine/model/hf_model.h"
#include "engine/model/hf_writer.h"
#include "engine/model/model_writer.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

namespace qbench {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<float> logits_of(const Model& m, const std::vector<int32_t>& ids) {
  Forward fw(m, 64);
  std::vector<float> out;
  fw.eval(ids, out, 0);
  return out;
}

const std::vector<int32_t> kIds = {1, 70, 5, 300 - 1, 42, 260, 7, 7, 100, 3, 200, 11};

// A tiny Qwen2 GGUF: the llama tiny model renamed, with q/k/v biases; `tied` drops output.weight.
std::string write_tiny_qwen2(const std::string& path, bool tied) {
  test::TinySpec s;
  s.tied = tied;
  s.seed = 9;
  gguf::Writer w = test::tiny_model_writer(s);
  gguf::Writer q;
  const auto tmp = path + ".llama.gguf";
  w.write(tmp);
  const auto src = gguf::File::open(tmp);
  for (const auto& [k, v] : src->metadata()) {
    if (k == "general.alignment") continue;
    q.set(k.rfind("llama.", 0) == 0 ? "qwen2." + k.substr(6) : k, v);
  }
  q.set("general.architecture", gguf::Value::str("qwen2"));
  std::mt19937 rng(3);
  for (const auto& t : src->tensors()) {
    q.add_tensor(t.name, t.dims, t.type, {t.data, t.nbytes});
    for (const char* b : {"attn_q", "attn_k", "attn_v"}) {
      if (t.name.ends_with(std::string(b) + ".weight")) {
        const std::string bias = t.name.substr(0, t.name.size() - 6) + "bias";
        q.add_tensor(bias, {t.dims[1]}, TensorType::F32, test::random_f32_bytes(t.dims[1], rng, 0.5f));
      }
    }
  }
  q.write(path);
  return path;
}

std::string to_hf(const Model& m, const std::string& dir, HfWriteOptions opt = {safetensors::DType::F32, 0}) {
  write_hf_folder(m, dir, opt);
  return dir;
}

TEST(HfFolder, LlamaFolderAndGgufGiveIdenticalLogits) {
  const std::string dir = test::temp_dir("hf-llama");
  for (bool tied : {false, true}) {
    test::TinySpec s;
    s.tied = tied;
    const Model g = load_model(test::write_tiny_model(dir + "/m" + std::to_string(tied) + ".gguf", s));
    const Model h = load_model(to_hf(g, dir + "/hf" + std::to_string(tied)));
    EXPECT_EQ(h.format, "hf");
    EXPECT_EQ(h.tied_output, tied);
    EXPECT_EQ(h.config.rope_type, RopeType::Normal);
    EXPECT_EQ(logits_of(g, kIds), logits_of(h, kIds)) << "tied " << tied;
  }
}

// The oracle for the rotary layout, independent of hf_row_of_gguf_row: Transformers applies
// rotate_half (pairs (i, i + d/2): NeoX) to the checkpoint's own rows. A model built from the
// raw checkpoint q/k with NeoX rope must agree with the GGUF model (interleaved pairs on
// permuted rows) up to float rounding of the reordered dot products.
TEST(HfFolder, CheckpointLayoutIsTransformersRotateHalf) {
  const std::string dir = test::temp_dir("hf-neox");
  const Model g = load_model(test::write_tiny_model(dir + "/m.gguf"));
  to_hf(g, dir + "/hf");
  const auto st = safetensors::File::open(dir + "/hf/model.safetensors");
  Model raw = load_model(dir + "/hf");
  raw.config.rope_type = RopeType::Neox;
  for (int64_t l = 0; l < raw.config.n_layer; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
    raw.layers[size_t(l)].wq.data = st->find(p + "q_proj.weight")->data;
    raw.layers[size_t(l)].wk.data = st->find(p + "k_proj.weight")->data;
  }
  raw.storage.push_back(st->mapping());
  const auto a = logits_of(g, kIds), b = logits_of(raw, kIds);
  ASSERT_EQ(a.size(), b.size());
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, double(std::fabs(a[i] - b[i])));
    max_abs = std::max(max_abs, double(std::fabs(a[i])));
  }
  EXPECT_LT(max_diff, 1e-5 * max_abs + 1e-6);
  // And the permutation is not the identity: with the GGUF's rope the raw rows are wrong.
  raw.config.rope_type = RopeType::Normal;
  EXPECT_NE(logits_of(raw, kIds), a);
}

TEST(HfFolder, Qwen2WithBiasesAndTiedEmbeddingsGivesIdenticalLogits) {
  const std::string dir = test::temp_dir("hf-qwen2");
  for (bool tied : {false, true}) {
    const Model g = load_model(write_tiny_qwen2(dir + "/q" + std::to_string(tied) + ".gguf", tied));
    ASSERT_EQ(g.config.arch, "qwen2");
    ASSERT_FALSE(g.layers[0].bq.empty());
    const std::string hf = to_hf(g, dir + "/hf" + std::to_string(tied));
    const json cfg = json::parse(test::read_file(hf + "/config.json"));
    EXPECT_EQ(cfg["architectures"][0], "Qwen2ForCausalLM");
    const auto st = safetensors::File::open(hf + "/model.safetensors");
    EXPECT_NE(st->find("model.layers.0.self_attn.k_proj.bias"), nullptr);
    EXPECT_EQ(st->find("lm_head.weight") == nullptr, tied);
    // Qwen2 runs NeoX rope on the checkpoint's own rows: no permutation, same bytes.
    EXPECT_EQ(0, std::memcmp(st->find("model.layers.1.self_attn.q_proj.weight")->data, g.layers[1].wq.data,
                             g.layers[1].wq.bytes()));
    const Model h = load_model(hf);
    EXPECT_EQ(h.config.rope_type, RopeType::Neox);
    EXPECT_EQ(logits_of(g, kIds), logits_of(h, kIds)) << "tied " << tied;
  }
}

TEST(HfFolder, ShardedFolderEqualsOneFileAndChecksItsIndex) {
  const std::string dir = test::temp_dir("hf-shards");
  const Model g = load_model(test::write_tiny_model(dir + "/m.gguf"));
  const std::string hf = to_hf(g, dir + "/hf", {safetensors::DType::F32, 20000});
  ASSERT_TRUE(fs::exists(hf + "/model.safetensors.index.json"));
  ASSERT_FALSE(fs::exists(hf + "/model.safetensors"));
  int shards = 0;
  for (const auto& e : fs::directory_iterator(hf)) shards += e.path().extension() == ".safetensors";
  EXPECT_GE(shards, 3);
  EXPECT_EQ(logits_of(g, kIds), logits_of(load_model(hf), kIds));

  const json index = json::parse(test::read_file(hf + "/model.safetensors.index.json"));
  const std::string shard2 = index["weight_map"]["model.layers.1.mlp.down_proj.weight"];
  auto expect = [&](const std::string& folder, const std::string& needle) {
    try {
      load_model(folder);
      ADD_FAILURE() << folder << " loaded; expected: " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    }
  };
  // A shard missing from the folder.
  fs::copy(hf, dir + "/missing");
  fs::remove(dir + "/missing/" + shard2);
  expect(dir + "/missing", "shard '" + shard2 + "' (holding");
  // The index sends a tensor to the wrong shard.
  fs::copy(hf, dir + "/wrong");
  json bad = index;
  bad["weight_map"]["model.embed_tokens.weight"] = shard2;
  write_file_atomic(dir + "/wrong/model.safetensors.index.json", bad.dump());
  expect(dir + "/wrong", "listed in the index, is not in this shard");
  // A tensor of a shard that the index does not list.
  fs::copy(hf, dir + "/unlisted");
  bad = index;
  bad["weight_map"].erase("model.norm.weight");
  write_file_atomic(dir + "/unlisted/model.safetensors.index.json", bad.dump());
  expect(dir + "/unlisted", "'model.norm.weight' is not listed in model.safetensors.index.json");
}

// BF16 and F16 checkpoints are computed with as they are: the same logits as the GGUF whose
// matrices were rounded to that type.
TEST(HfFolder, HalfPrecisionFoldersKeepTheirTypeAndMatchTheRoundedGguf) {
  const std::string dir = test::temp_dir("hf-bf16");
  const Model g = load_model(test::write_tiny_model(dir + "/m.gguf"));
  for (auto [dt, tt] : {std::pair{safetensors::DType::BF16, TensorType::BF16}, std::pair{safetensors::DType::F16, TensorType::F16}}) {
    const std::string name = safetensors::dtype_name(dt);
    const Model h = load_model(to_hf(g, dir + "/" + name, {dt, 0}));
    EXPECT_EQ(h.layers[0].wv.type, tt);
    EXPECT_EQ(h.tok_embd.type, tt);
    // The rounded GGUF twin: every matrix rounded to the type, norms kept in F32.
    Model r = g;
    std::vector<std::shared_ptr<std::vector<uint16_t>>> bufs;
    auto round = [&](Matrix& w) {
      auto b = std::make_shared<std::vector<uint16_t>>(size_t(w.rows * w.cols));
      std::vector<float> row(size_t(w.cols));
      for (int64_t i = 0; i < w.rows; ++i) {
        matrix_row(w, i, row.data());
        for (int64_t j = 0; j < w.cols; ++j) {
          (*b)[size_t(i * w.cols + j)] = tt == TensorType::BF16 ? fp32_to_bf16(row[size_t(j)]) : fp32_to_fp16(row[size_t(j)]);
        }
      }
      w = Matrix{tt, w.rows, w.cols, reinterpret_cast<const uint8_t*>(b->data())};
      bufs.push_back(b);
    };
    round(r.tok_embd);
    round(r.output);
    for (auto& L : r.layers) {
      for (Matrix* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) round(*w);
      // Norm weights pass through the dtype too (all ones here: exact).
    }
    EXPECT_EQ(logits_of(r, kIds), logits_of(h, kIds)) << name;
  }
}

// Llama 3.1's rope_scaling becomes per-frequency divisors (GGUF rope_freqs.weight). Oracle:
// Transformers' _compute_llama3_parameters, evaluated here in double: the scaled inverse
// frequency must equal inv_freq / factor_i.
TEST(HfFolder, Llama3RopeScalingMatchesTransformersAndSurvivesGguf) {
  const std::string dir = test::temp_dir("hf-rope");
  const Model g = load_model(test::write_tiny_model(dir + "/m.gguf"));
  const std::string hf = to_hf(g, dir + "/hf");
  json cfg = json::parse(test::read_file(hf + "/config.json"));
  // Head size 8: wavelengths 6.3, 167, 4443, 118k; these limits (10 and 400) put one frequency in
  // each regime.
  const double base = 500000.0, factor = 8.0, low = 1.0, high = 40.0, old_ctx = 400.0;
  cfg["rope_theta"] = base;
  cfg["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", factor}, {"low_freq_factor", low},
                         {"high_freq_factor", high}, {"original_max_position_embeddings", old_ctx}};
  write_file_atomic(hf + "/config.json", cfg.dump());
  const Model h = load_model(hf);
  const int64_t dim = h.config.n_rot;
  ASSERT_EQ(int64_t(h.rope_freqs.size()), dim / 2);
  int regimes[3] = {0, 0, 0};
  for (int64_t i = 0; i < dim / 2; ++i) {
    const double inv = 1.0 / std::pow(base, double(2 * i) / double(dim));
    const double wavelen = 2 * M_PI / inv;
    double want;
    if (wavelen < old_ctx / high) {
      want = inv, ++regimes[0];
    } else if (wavelen > old_ctx / low) {
      want = inv / factor, ++regimes[2];
    } else {
      const double smooth = (old_ctx / wavelen - low) / (high - low);
      want = (1 - smooth) * inv / factor + smooth * inv, ++regimes[1];
    }
    EXPECT_NEAR(inv / h.rope_freqs[size_t(i)], want, 1e-5 * want) << i;
  }
  EXPECT_GT(regimes[0], 0);
  EXPECT_GT(regimes[1], 0);
  EXPECT_GT(regimes[2], 0);
  EXPECT_NE(logits_of(h, kIds), logits_of(g, kIds));  // the factors change the model
  // Written to GGUF as llama.cpp's converter does (rope_freqs.weight), read back unchanged.
  model_gguf_writer(h).write(dir + "/rope.gguf");
  const Model back = load_model(dir + "/rope.gguf");
  EXPECT_EQ(back.rope_freqs, h.rope_freqs);
  EXPECT_EQ(logits_of(back, kIds), logits_of(h, kIds));
}

// A GGUF written from a folder holds the tokenizer, chat template and architecture keys, and
// gives the folder's logits.
TEST(HfFolder, GgufWrittenFromAFolderRoundTrips) {
  const std::string dir = test::temp_dir("hf-gguf");
  const Model q = load_model(write_tiny_qwen2(dir + "/q.gguf", true));
  const std::string hf = to_hf(q, dir + "/hf");
  json tc = json::parse(test::read_file(hf + "/tokenizer_config.json"));
  tc["chat_template"] = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}";
  write_file_atomic(hf + "/tokenizer_config.json", tc.dump());
  const Model h = load_model(hf);
  EXPECT_EQ(h.chat_template, tc["chat_template"].get<std::string>());
  model_gguf_writer(h).write(dir + "/out.gguf");
  const auto f = gguf::File::open(dir + "/out.gguf");
  EXPECT_EQ(f->get_string("general.architecture"), "qwen2");
  EXPECT_EQ(f->get_string("tokenizer.chat_template"), h.chat_template);
  EXPECT_EQ(f->get_int("qwen2.attention.head_count_kv"), q.config.n_head_kv);
  const Model back = load_model(dir + "/out.gguf");
  EXPECT_EQ(back.chat_template, h.chat_template);
  EXPECT_EQ(logits_of(back, kIds), logits_of(h, kIds));
  EXPECT_EQ(back.tokenizer.encode("the and then", true), h.tokenizer.encode("the and then", true));
}

class BadFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir("hf-bad");
    const Model g = load_model(test::write_tiny_model(dir_ + "/m.gguf"));
    good_ = to_hf(g, dir_ + "/good");
    config_ = json::parse(test::read_file(good_ + "/config.json"));
  }
  // A copy of the good folder with config.json replaced by `cfg`.
  std::string with_config(const std::string& name, const json& cfg) {
    const std::string d = dir_ + "/" + name;
    fs::copy(good_, d);
    write_file_atomic(d + "/config.json", cfg.dump());
    return d;
  }
  void expect_error(const std::string& folder, const std::string& needle, const std::string& names) {
    try {
      load_model(folder);
      ADD_FAILURE() << folder << " loaded; expected: " << needle;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
      EXPECT_NE(msg.find(names), std::string::npos) << "does not name " << names << ": " << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
  std::string dir_, good_;
  json config_;
};

TEST_F(BadFolder, TheGoodFolderLoads) { EXPECT_NO_THROW(load_model(good_)); }

TEST_F(BadFolder, ConfigProblemsNameTheKey) {
  struct Case {
    const char* name;
    std::function<void(json&)> edit;
    const char* needle;
  };
  const std::vector<Case> cases = {
      {"arch", [](json& c) { c["architectures"] = {"GemmaForCausalLM"}; },
       "architecture 'GemmaForCausalLM' is not supported (qbench reads LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)"},
      {"no-arch", [](json& c) { c.erase("architectures"); }, "missing key 'architectures'"},
      {"no-hidden", [](json& c) { c.erase("hidden_size"); }, "missing key 'hidden_size'"},
      {"str-layers", [](json& c) { c["num_hidden_layers"] = "2"; }, "key 'num_hidden_layers' is \"2\", expected an integer"},
      {"act", [](json& c) { c["hidden_act"] = "gelu"; }, "hidden_act 'gelu' is not supported"},
      {"yarn", [](json& c) { c["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}}; }, "rope_scaling type 'yarn' is not supported"},
      {"head-dim", [](json& c) { c["head_dim"] = 16; }, "head_dim 16 differs"},
      {"heads", [](json& c) { c["num_key_value_heads"] = 3; }, "4 heads is not a multiple of 3 KV heads"},
      {"wider", [](json& c) { c["intermediate_size"] = 64; }, "'model.layers.0.mlp.gate_proj.weight' has shape [48, 32], but config.json implies [64, 32]"},
      {"vocab", [](json& c) { c["vocab_size"] = 200; }, "model.embed_tokens.weight' has shape [300, 32], but config.json implies [200, 32]"},
      {"bias", [](json& c) { c["attention_bias"] = true; }, "attention_bias true is not supported for LlamaForCausalLM"},
      {"not-json", [](json& c) { c = "just a string"; }, "config.json: not a JSON object"},
      {"gptq", [](json& c) { c["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}}; },
       "a quantized checkpoint (quantization_config, quant_method 'gptq')"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    json cfg = config_;
    c.edit(cfg);
    expect_error(with_config(c.name, cfg), c.needle, "config.json");
  }
}

TEST_F(BadFolder, WeightProblemsNameTheFileAndTensor) {
  // A tensor missing / extra / of another dtype: rewrite model.safetensors from the good one.
  const auto src = safetensors::File::open(good_ + "/model.safetensors");
  auto rewrite = [&](const std::string& name, const std::function<void(safetensors::Writer&, const safetensors::TensorInfo&)>& each) {
    const std::string d = dir_ + "/" + name;
    fs::copy(good_, d);
    safetensors::Writer w;
    for (const auto& t : src->tensors()) each(w, t);
    fs::remove(d + "/model.safetensors");
    w.write(d + "/model.safetensors");
    return d;
  };
  const std::string missing = rewrite("missing", [](safetensors::Writer& w, const safetensors::TensorInfo& t) {
    if (t.name != "model.layers.1.self_attn.o_proj.weight") w.add_tensor(t.name, t.dtype, t.shape, {t.data, t.nbytes});
  });
  expect_error(missing, "missing tensor 'model.layers.1.self_attn.o_proj.weight'", "missing");
  const std::string extra = rewrite("extra", [](safetensors::Writer& w, const safetensors::TensorInfo& t) {
    w.add_tensor(t.name, t.dtype, t.shape, {t.data, t.nbytes});
    if (t.name == "model.norm.weight") w.add_tensor("model.layers.0.self_attn.o_proj.bias", t.dtype, t.shape, {t.data, t.nbytes});
  });
  expect_error(extra, "tensor 'model.layers.0.self_attn.o_proj.bias' is not part of the architecture", "model.safetensors");
  const std::string ints = rewrite("ints", [](safetensors::Writer& w, const safetensors::TensorInfo& t) {
    w.add_tensor(t.name, t.name == "model.layers.0.mlp.up_proj.weight" ? safetensors::DType::I32 : t.dtype, t.shape,
                 {t.data, t.nbytes});
  });
  expect_error(ints, "'model.layers.0.mlp.up_proj.weight' has dtype I32", "model.safetensors");
  // Truncated weights file.
  const std::string trunc = dir_ + "/trunc";
  fs::copy(good_, trunc);
  const std::string bytes = test::read_file(good_ + "/model.safetensors");
  std::ofstream(trunc + "/model.safetensors", std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() / 2);
  expect_error(trunc, "truncated", "model.safetensors");
  // No weights, no tokenizer.
  const std::string noweights = dir_ + "/noweights";
  fs::copy(good_, noweights);
  fs::remove(noweights + "/model.safetensors");
  expect_error(noweights, "no model.safetensors or model.safetensors.index.json", "noweights");
  const std::string notok = dir_ + "/notok";
  fs::copy(good_, notok);
  fs::remove(notok + "/tokenizer.json");
  expect_error(notok, "no tokenizer.json", "notok");
}

// Random corruption of the weights file and config.json of a folder: loads or a one-line
// qbench::Error, never a crash.
TEST(Fuzz, RandomlyCorruptedHfFoldersNeverCrash) {
  const std::string dir = test::temp_dir("hf-fuzz");
  const Model g = load_model(test::write_tiny_model(dir + "/m.gguf"));
  const std::string good = to_hf(g, dir + "/good");
  const std::string weights = test::read_file(good + "/model.safetensors");
  const std::string config = test::read_file(good + "/config.json");
  uint64_t header = 0;
  std::memcpy(&header, weights.data(), 8);
  fs::copy(good, dir + "/c");
  std::mt19937 rng(99);
  int loaded = 0, rejected = 0;
  for (int iter = 0; iter < 200; ++iter) {
    std::string w = weights, c = config;
    std::string& target = iter % 3 == 0 ? c : w;
    const size_t span = iter % 3 == 0 ? c.size() : size_t(8 + header);
    for (int k = 0, n = 1 + int(rng() % 4); k < n; ++k) {
      const size_t pos = rng() % span;
      target[pos] = iter % 2 ? char(rng()) : char(target[pos] ^ (1 << (rng() % 8)));
    }
    std::ofstream(dir + "/c/model.safetensors", std::ios::binary | std::ios::trunc) << w;
    std::ofstream(dir + "/c/config.json", std::ios::binary | std::ios::trunc) << c;
    try {
      const Model m = load_model(dir + "/c");
      logits_of(m, {1, 2, 3});
      ++loaded;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "iteration " << iter << ": unexpected exception: " << e.what();
    }
  }
  EXPECT_EQ(loaded + rejected, 200);
  EXPECT_GT(rejected, 60);
}

}  // namespace
}  // namespace qbench
