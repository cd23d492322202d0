// quantize_model, llama.cpp's mixes, and the qbench quantize / schemes commands.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>

#include "datasets/text.h"
#include "engine/core/error.h"
#include "engine/io/gguf.h"
#include "engine/model/model.h"
#include "quantizers/quantize_model.h"
#include "tasks/perplexity.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

namespace qbench::quant {
namespace {

std::map<std::string, std::string> formats_of(const QuantizeReport& rep) {
  std::map<std::string, std::string> f;
  for (const auto& t : rep.tensors) f[t.name] = t.format;
  return f;
}

// llama.cpp's Q4_K_M / Q5_K_M on kquant-test (2 layers, rows of 256 and 768): use_more_bits is
// true for both layers of a 2-layer model (i < 2/8 = 0 is false, i >= 7*2/8 = 1 for layer 1,
// (i - 0) % 3 == 2 false for layer 0...), so only layer 1's attn_v and ffn_down get q6_K.
TEST(LlamaMix, PresetsOnKquantTest) {
  QBENCH_SHARED_FILE(path, "models/kquant-test/kquant-test-F32.gguf");
  const Model m = load_model(path);
  ASSERT_EQ(m.config.n_layer, 2);
  for (const char* preset : {"Q4_K_M", "Q5_K_M"}) {
    SCOPED_TRACE(preset);
    QuantizeReport rep;
    const Model q = quantize_model(m, make_recipe(preset), &rep);
    const auto f = formats_of(rep);
    const std::string base = std::string(preset) == "Q4_K_M" ? "q4_K" : "q5_K";
    EXPECT_EQ(f.at("token_embd.weight"), base);
    EXPECT_EQ(f.at("output.weight"), "q6_K");
    EXPECT_EQ(f.at("blk.0.attn_v.weight"), base);
    EXPECT_EQ(f.at("blk.1.attn_v.weight"), "q6_K");
    EXPECT_EQ(f.at("blk.0.ffn_down.weight"), base);
    EXPECT_EQ(f.at("blk.1.ffn_down.weight"), "q6_K");
    for (const char* n : {"attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"}) {
      EXPECT_EQ(f.at("blk.0." + std::string(n) + ".weight"), base);
      EXPECT_EQ(f.at("blk.1." + std::string(n) + ".weight"), base);
    }
    // Average bits per weight from the tensor sizes: token_embd 512x256, output 512x256,
    // per layer q 256x256, k/v 128x256, o 256x256, gate/up 768x256, down 256x768.
    const double base_bpw = base == "q4_K" ? 4.5 : 5.5;
    const double n_embd = 512 * 256, n_out = 512 * 256, n_v = 128 * 256, n_down = 256 * 768;
    const double n_layer_other = 256 * 256 * 2 + 128 * 256 + 768 * 256 * 2;
    const double total = n_embd + n_out + 2 * (n_layer_other + n_v + n_down);
    const double bits = n_embd * base_bpw + n_out * 6.5625 + 2 * n_layer_other * base_bpw +
                        (n_v + n_down) * (base_bpw + 6.5625);
    EXPECT_NEAR(rep.bits_per_weight, bits / total, 1e-9);
    std::printf("[          ] %s on kquant-test: %.4f bits/weight\n", preset, rep.bits_per_weight);
    EXPECT_TRUE(rep.all_ggml);
  }
  // --pure: every matrix in the base type.
  Recipe r = make_recipe("Q4_K_M");
  r.pure = true;
  QuantizeReport rep;
  quantize_model(m, r, &rep);
  for (const auto& t : rep.tensors) EXPECT_EQ(t.format, "q4_K") << t.name;
}

TEST(LlamaMix, UseMoreBitsLayersOfA32LayerModel) {
  // llama.cpp: layers < 4, >= 28, and those with (i - 4) % 3 == 2 (6, 9, ..., 27) of 32 get q6_K
  // for attn_v in Q4_K_M.
  MixState st;
  st.n_attention_wv = 32;
  std::string got;
  for (int i = 0; i < 32; ++i) {
    got += llama_mix_type(LlamaFtype::Q4_K_M, "blk." + std::to_string(i) + ".attn_v.weight", 4096, st) == TensorType::Q6_K
               ? "6" : "4";
  }
  EXPECT_EQ(got, "66664464464464464464464464466666");
}

TEST(QuantizeModel, RulesMixedPrecisionAndReport) {
  const std::string dir = test::temp_dir("qm-rules");
  test::TinySpec s;
  s.n_embd = 64;
  s.n_ff = 128;
  const Model m = load_model(test::write_tiny_model(dir + "/tiny.gguf", s));
  Recipe r = make_recipe("rtn:int4,group=32");
  r.rules.push_back(parse_rule("attn_v|output\\.weight=rtn:int6,group=32"));
  r.token_embd = parse_scheme("int8");
  QuantizeReport rep;
  const Model q = quantize_model(m, r, &rep);
  const auto f = formats_of(rep);
  EXPECT_EQ(f.at("token_embd.weight"), "int8_sym_row");
  EXPECT_EQ(f.at("output.weight"), "int6_sym_g32");
  EXPECT_EQ(f.at("blk.1.attn_v.weight"), "int6_sym_g32");
  EXPECT_EQ(f.at("blk.1.attn_q.weight"), "int4_sym_g32");
  EXPECT_FALSE(rep.all_ggml);
  for (const auto& t : rep.tensors) {
    EXPECT_GT(t.mse, 0) << t.name;
    EXPECT_GT(t.sqnr_db, t.format.rfind("int4", 0) == 0 ? 15 : 25) << t.name;
  }
  EXPECT_EQ(q.layers[1].wv.type, *parse_type_name("int6_sym_g32"));
  EXPECT_EQ(q.layers[1].attn_norm, m.layers[1].attn_norm);  // norms untouched
  // Without a token-embedding rule, the embedding is kept (its bytes shared with the source).
  QuantizeReport rep2;
  const Model q2 = quantize_model(m, make_recipe("nf4"), &rep2);
  EXPECT_EQ(q2.tok_embd.data, m.tok_embd.data);
  EXPECT_EQ(formats_of(rep2).at("blk.0.ffn_up.weight"), "nf4");
}

// `keep` (qbench bench's default): every tensor as stored, sharing the source's bytes, so a q4_0
// file is measured as q4_0 and not re-quantized; "PATTERN=keep" keeps single tensors.
TEST(QuantizeModel, KeepLeavesEveryTensorAsStored) {
  const std::string dir = test::temp_dir("qm-keep");
  test::TinySpec s;
  s.n_ff = 64;  // rows of q4_0 blocks
  const Model m = load_model(test::write_tiny_model(dir + "/tiny.gguf", s));
  Recipe pure = make_recipe("q4_0");
  pure.pure = true;
  QuantizeReport rep4;
  const Model q4 = quantize_model(m, pure, &rep4);
  EXPECT_EQ(parse_scheme("keep").to_string(), "keep");
  QuantizeReport rep;
  const Model kept = quantize_model(q4, make_recipe("keep"), &rep);
  for (const auto& t : rep.tensors) EXPECT_EQ(t.scheme, "keep") << t.name;
  EXPECT_EQ(formats_of(rep), formats_of(rep4));
  EXPECT_EQ(formats_of(rep).at("blk.0.attn_q.weight"), "q4_0");
  EXPECT_EQ(kept.layers[0].wq.data, q4.layers[0].wq.data);
  EXPECT_EQ(kept.output.data, q4.output.data);
  Recipe some = make_recipe("q8_0");
  some.pure = true;
  some.rules.push_back(parse_rule("attn_v=keep"));
  QuantizeReport rep2;
  const Model mixed = quantize_model(q4, some, &rep2);
  EXPECT_EQ(formats_of(rep2).at("blk.1.attn_v.weight"), "q4_0");
  EXPECT_EQ(formats_of(rep2).at("blk.1.attn_q.weight"), "q8_0");
  EXPECT_EQ(mixed.layers[1].wv.data, q4.layers[1].wv.data);
}

TEST(QuantizeModel, NanWeightNamesTheTensor) {
  const std::string dir = test::temp_dir("qm-nan");
  gguf::Writer w = test::tiny_model_writer();
  std::vector<float> bad(32 * 32, 0.1f);
  bad[5] = std::numeric_limits<float>::quiet_NaN();
  w.remove_tensor("blk.1.attn_q.weight");
  w.add_tensor("blk.1.attn_q.weight", {32, 32}, TensorType::F32,
               {reinterpret_cast<const uint8_t*>(bad.data()), bad.size() * 4});
  w.write(dir + "/nan.gguf");
  const Model m = load_model(dir + "/nan.gguf");
  try {
    quantize_model(m, make_recipe("rtn:int4,group=channel"));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.1.attn_q.weight: weight at row 0, column 5 is nan"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace qbench::quant
