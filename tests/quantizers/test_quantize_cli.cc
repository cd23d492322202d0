// The qbench schemes / quantize commands, and agreement with llama-quantize's files.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "datasets/text.h"
#include "engine/io/gguf.h"
#include "engine/model/forward.h"
#include "engine/model/model.h"
#include "tasks/perplexity.h"
#include "tests/gguf_compare.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

namespace qbench {
namespace {

struct RunResult {
  int exit_code;
  std::string out, err;
};

RunResult run(const std::string& args) {
  const std::string dir = test::temp_dir("qcli-run");
  const std::string cmd = std::string(QBENCH_BINARY) + " " + args + " >" + dir + "/out 2>" + dir + "/err";
  const int status = std::system(cmd.c_str());
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(dir + "/out"), slurp(dir + "/err")};
}

int count_lines(const std::string& s) { return int(std::count(s.begin(), s.end(), '\n')); }

TEST(SchemesCommand, ListsEverySchemeAsJson) {
  const auto r = run("schemes --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  std::vector<std::string> names;
  for (const auto& m : j["methods"]) names.push_back(m["name"]);
  for (const char* n : {"rtn", "nf4", "fp8", "fp16", "bf16", "q8_0", "q4_0", "q4_K", "q6_K"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  }
  EXPECT_EQ(j["methods"][0]["default_spec"], "rtn:int4,group=128,sym=true,clip=none");
  EXPECT_EQ(j["methods"][0]["options"][1]["name"], "group");
  bool has_q4km = false;
  for (const auto& m : j["mixes"]) has_q4km = has_q4km || m["name"] == "Q4_K_M";
  EXPECT_TRUE(has_q4km);
  const auto t = run("schemes");
  EXPECT_EQ(t.exit_code, 0);
  EXPECT_NE(t.out.find("clip=mse") == std::string::npos ? t.out.find("none|mse") : 0, std::string::npos);
}

TEST(QuantizeCommand, BadSchemesExitTwoWithOneLine) {
  const std::string dir = test::temp_dir("qcli-bad");
  test::TinySpec s;
  s.n_ff = 40;  // ffn_down rows of 40: no group of 32 divides them
  const std::string model = test::write_tiny_model(dir + "/tiny.gguf", s);
  struct Case {
    std::string scheme, message;
  };
  for (const Case& c : {Case{"frobnicate", "unknown scheme 'frobnicate'"},
                        Case{"rtn:int9", "bits must be an integer in 2..8, got '9'"},
                        Case{"rtn:int1", "bits must be an integer in 2..8"},
                        Case{"rtn:int4,group=48", "group must be one of 32, 64, 128, channel, tensor"},
                        Case{"rtn:int4,group=32", "blk.0.ffn_down.weight: rtn group size 32 does not divide the row length 40"},
                        Case{"rtn:int4,group=64", "rtn group size 64 does not divide the row length 32"}}) {
    const auto r = run("quantize --model " + model + " --scheme '" + c.scheme + "' --out " + dir + "/o.gguf");
    EXPECT_EQ(r.exit_code, 2) << c.scheme;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir + "/o.gguf")) << "nothing written on error";
  }
  const auto r = run("quantize --model " + model + " --scheme q4_0 --tensor-type '[=f16' --out " + dir + "/o.gguf");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("not a valid regular expression"), std::string::npos) << r.err;
}

TEST(QuantizeCommand, WritesLoadableFileWithQbenchFormats) {
  const std::string dir = test::temp_dir("qcli-own");
  test::TinySpec s;
  s.n_embd = 64;  // nf4 blocks of 64
  s.n_ff = 96;
  const std::string model = test::write_tiny_model(dir + "/tiny.gguf", s);
  const auto r = run("quantize --model " + model + " --scheme 'rtn:int4,group=32,clip=mse' --token-embedding-type nf4 "
                     "--tensor-type 'attn_v=fp8' --out " + dir + "/q.gguf --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_FALSE(j["llama_cpp_loadable"].get<bool>());
  EXPECT_GT(j["bits_per_weight"].get<double>(), 4.0);
  const Model q = load_model(dir + "/q.gguf");
  EXPECT_EQ(q.tok_embd.traits().name, "nf4");
  EXPECT_EQ(q.layers[0].wv.traits().name, "fp8_e4m3");
  EXPECT_EQ(q.layers[0].wq.traits().name, "int4_sym_g32");
  const auto f = gguf::File::open(dir + "/q.gguf");
  EXPECT_EQ(f->get_int("general.file_type"), 1024);
  EXPECT_EQ(f->get_string("qbench.scheme"), "rtn:int4,group=32,sym=true,clip=mse");
}

// End to end: a k-quant scheme with --calib computes the imatrix, uses it for every linear, and
// says so in the report (text and JSON); the written model loads and gives finite logits; the
// same through qbench perplexity --kl. Rows of 256 so that the k-quants apply.
TEST(QuantizeCommand, KQuantWithCalibUsesImatrix) {
  const std::string dir = test::temp_dir("qcli-imatrix");
  test::TinySpec s;
  s.n_embd = 256;
  s.n_ff = 512;
  const std::string model = test::write_tiny_model(dir + "/tiny.gguf", s);
  std::string text;
  for (int i = 0; i < 60; ++i) text += "the cat and the hat sat on a mat, then ran to the tent " + std::to_string(i) + ".\n";
  {
    std::ofstream(dir + "/cal.txt") << text;
  }
  const std::string calib = " --calib " + dir + "/cal.txt --calib-samples 8 --calib-ctx 32";
  const auto r = run("quantize --model " + model + " --scheme q3_K" + calib + " --out " + dir + "/q.gguf --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j["imatrix"].is_string()) << j.dump();
  EXPECT_NE(j["imatrix"].get<std::string>().find("cal.txt"), std::string::npos) << j["imatrix"];
  int noted = 0;
  for (const auto& t : j["tensors"]) noted += t["note"].get<std::string>().find("imatrix") != std::string::npos;
  EXPECT_EQ(noted, 2 * 7 + 1);  // every linear and output.weight; not the token embedding
  const Model q = load_model(dir + "/q.gguf");
  EXPECT_EQ(q.layers[0].wq.traits().name, "q3_K");
  Forward f(q, 64);
  std::vector<float> logits;
  f.eval(q.require_tokenizer().encode("the cat sat", true), logits, 0);
  ASSERT_FALSE(logits.empty());
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));

  const auto t = run("quantize --model " + model + " --scheme Q4_K_M" + calib + " --out " + dir + "/m.gguf");
  ASSERT_EQ(t.exit_code, 0) << t.err;
  EXPECT_NE(t.out.find("imatrix: "), std::string::npos) << t.out;
  const auto p = run("perplexity --model " + model + " --text " + dir + "/cal.txt --ctx 32 --scheme q3_K --kl" + calib + " --json");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  const auto pj = nlohmann::json::parse(p.out);
  EXPECT_TRUE(pj["quantization"]["imatrix"].is_string()) << pj["quantization"].dump();
  EXPECT_TRUE(std::isfinite(pj["ppl"].get<double>()));
  EXPECT_TRUE(std::isfinite(pj["kl_divergence"]["mean"].get<double>()));

  // qbench imatrix takes the text as --calib (like quantize) or -f/--text (like llama-imatrix);
  // the file it writes gives quantize the same bytes as --calib did.
  const std::string opts = " --calib-samples 8 --calib-ctx 32 --model " + model;
  ASSERT_EQ(run("imatrix --calib " + dir + "/cal.txt --out " + dir + "/a.imatrix" + opts).exit_code, 0);
  ASSERT_EQ(run("imatrix -f " + dir + "/cal.txt --out " + dir + "/b.imatrix" + opts).exit_code, 0);
  EXPECT_EQ(test::read_file(dir + "/a.imatrix"), test::read_file(dir + "/b.imatrix"));
  ASSERT_EQ(run("quantize --model " + model + " --scheme q3_K --imatrix " + dir + "/a.imatrix --out " + dir + "/i.gguf")
                .exit_code, 0);
  EXPECT_EQ(test::read_file(dir + "/i.gguf"), test::read_file(dir + "/q.gguf"));
  const auto none = run("imatrix --out " + dir + "/c.imatrix --model " + model);
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("no calibration text"), std::string::npos) << none.err;
}

// qbench's Q8_0 / Q4_0 quantization of stories260K with llama-quantize's options reproduces
// llama.cpp's files tensor for tensor, byte for byte, and gives the same perplexity.
class LlamaCppParity : public ::testing::TestWithParam<const char*> {};

TEST_P(LlamaCppParity, SameTensorBytesAndPerplexity) {
  const std::string type = GetParam();
  QBENCH_SHARED_FILE(src, "models/stories260K.gguf");
  QBENCH_SHARED_FILE(ref, "models/stories260K-llamacpp-quantized/stories260K-" + type + ".gguf");
  QBENCH_SHARED_FILE(text_path, "datasets/tinystories/tinystories_validation_head.txt");
  const std::string dir = test::temp_dir("qcli-parity");
  const std::string out = dir + "/q.gguf";
  const auto r = run("quantize --model " + src + " --scheme " + type + " --tensor-type ffn_down=f16 --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  test::expect_same_tensors(out, ref);
  const auto mine = gguf::File::open(out);
  const auto theirs = gguf::File::open(ref);
  EXPECT_EQ(theirs->find_tensor("output.weight")->type, TensorType::Q8_0);
  EXPECT_EQ(mine->get_int("general.file_type"), theirs->get_int("general.file_type"));
  EXPECT_EQ(mine->get_int("tokenizer.ggml.bos_token_id"), theirs->get_int("tokenizer.ggml.bos_token_id"));
  const Model qm = load_model(out), lm = load_model(ref);
  const auto tokens = qm.require_tokenizer().encode(read_text_file(text_path), true);
  PerplexityOptions opt;
  opt.n_ctx = 128;
  opt.max_chunks = 4;
  const double ppl = llama_perplexity(qm, tokens, opt).ppl;
  EXPECT_EQ(ppl, llama_perplexity(lm, tokens, opt).ppl);
  std::printf("[          ] stories260K %s (qbench quantize): PPL %.4f (ctx 128, 4 chunks)\n", type.c_str(), ppl);
}

INSTANTIATE_TEST_SUITE_P(Quantize, LlamaCppParity, ::testing::Values("Q8_0", "Q4_0"),
                         [](const auto& info) { return std::string(info.param); });

TEST(QuantizeCommand, Llama2cSourceGetsTokenizerAndLlamaKeys) {
  QBENCH_SHARED_FILE(bin, "models/stories260K.bin");
  QBENCH_SHARED_FILE(tok, "models/tok512.bin");
  const std::string dir = test::temp_dir("qcli-l2c");
  const auto r = run("quantize --model " + bin + " --tokenizer " + tok + " --scheme fp16 --out " + dir + "/f16.gguf");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Model q = load_model(dir + "/f16.gguf");
  EXPECT_EQ(q.config.n_layer, 5);
  EXPECT_EQ(q.tokenizer.n_tokens(), 512);
  EXPECT_EQ(q.layers[0].wq.type, TensorType::F16);
  EXPECT_EQ(gguf::File::open(dir + "/f16.gguf")->get_int("general.file_type"), 1);
}

}  // namespace
}  // namespace qbench
