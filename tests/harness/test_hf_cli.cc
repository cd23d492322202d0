// Hugging Face folders through the command line: convert writes one, perplexity/quantize/info/
// run read one, and llama.cpp's own llama-perplexity loads the GGUF that qbench quantize writes
// from a folder and gives qbench's numbers (the test skips when the tool is absent).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <regex>
#include <tuple>

#include <nlohmann/json.hpp>

#include "engine/model/hf_writer.h"
#include "tests/harness/test_run_util.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

namespace qbench {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Runs a shell command; returns its exit status and stdout+stderr.
std::pair<int, std::string> shell(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, ""};
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

double ppl_of(const std::string& qbench_out) { return json::parse(qbench_out)["ppl"].get<double>(); }

// llama-perplexity's perplexity of `model` on `text` after `chunks` chunks of `ctx` (with the KV
// cache options `cache`), or nullopt (with the skip marker printed) when the tool is absent.
// llama.cpp logs from a worker thread: on a loaded machine the last lines (the final chunks,
// "Final estimate") are often lost at exit. So it scores twice as many chunks and the running
// value it prints after chunk `chunks` is read from the middle of the log; the tool is run again
// (at most twice more) when even that did not arrive.
std::optional<double> llama_ppl_chunks(const std::string& model, const std::string& text, int ctx, int chunks,
                                      const std::string& cache = "-fa off -ctk f32 -ctv f32",
                                      const std::string& env = "") {
  const std::string tool = test::shared_file("tools/llama.cpp/llama-perplexity");
  if (tool.empty()) {
    std::printf("%s llama-perplexity not found under $QBENCH_SHARED/tools/llama.cpp\n", QBENCH_ORACLE_SKIP_MARKER);
    return std::nullopt;
  }
  std::smatch m;
  std::string log;
  for (int attempt = 0; attempt < 3; ++attempt) {
    int status = 0;
    std::tie(status, log) = shell(env + (env.empty() ? "" : " ") + "'" + tool + "' -m " + model + " -f " + text +
                                  " -c " + std::to_string(ctx) + " --chunks " + std::to_string(2 * chunks) + " " + cache + " -t 2");
    EXPECT_EQ(status, 0) << log;
    if (status != 0) return std::nullopt;
    if (std::regex_search(log, m, std::regex("\\[" + std::to_string(chunks) + "\\]([0-9.]+)"))) return std::stod(m[1]);
  }
  ADD_FAILURE() << "llama-perplexity printed no value after chunk " << chunks << ":\n" << log;
  return std::nullopt;
}
std::optional<double> llama_ppl_12_chunks(const std::string& model, const std::string& text, int ctx = 256) {
  return llama_ppl_chunks(model, text, ctx, 12);
}

TEST(HfCli, Stories260KAsAFolderIsTheGgufForQbenchAndForLlamaCpp) {
  QBENCH_SHARED_FILE(gguf, "models/stories260K.gguf");
  QBENCH_SHARED_FILE(text, "datasets/tinystories/tinystories_validation_head.txt");
  const std::string dir = test::temp_dir("hf-cli-stories");
  auto r = test::run_cli("convert --model " + gguf + " --out " + dir + "/hf --dtype f32", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}) {
    EXPECT_TRUE(fs::exists(dir + "/hf/" + f)) << f;
  }
  // The folder gives llama-perplexity's running value after 12 chunks of 256 (3.4927).
  r = test::run_cli("perplexity --model " + dir + "/hf --text " + text + " --ctx 256 --chunks 12 --json", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NEAR(ppl_of(r.out), 3.4927, 0.5e-4);
  // A folder is not overwritten.
  r = test::run_cli("convert --model " + gguf + " --out " + dir + "/hf", dir);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("already holds a model"), std::string::npos) << r.err;

  // Folder -> GGUF, F32, F16 and q8_0 (ffn_down's rows of 172 are no multiple of 32: kept in f16
  // as llama-quantize's own file of it does); qbench info lists what was written.
  for (const std::string scheme : {"f32", "f16", "q8_0"}) {
    SCOPED_TRACE(scheme);
    const std::string out = dir + "/" + scheme + ".gguf";
    r = test::run_cli("quantize --model " + dir + "/hf --scheme " + scheme + " --out " + out +
                          (scheme == "q8_0" ? " --tensor-type ffn_down=f16" : ""),
                      dir);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = test::run_cli("info --json --model " + out, dir);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json info = json::parse(r.out);
    EXPECT_EQ(info["architecture"], "llama");
    EXPECT_EQ(info["n_vocab"], 512);
    EXPECT_EQ(info["tokenizer"]["tokens"], 512);
    EXPECT_EQ(info["tokenizer"]["bos"], 1);
    EXPECT_EQ(info["tensors"][1]["name"], "blk.0.attn_q.weight");
    EXPECT_EQ(info["tensors"][1]["type"], scheme);
    r = test::run_cli("perplexity --model " + out + " --text " + text + " --ctx 256 --chunks 12 --json", dir);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const double ours = ppl_of(r.out);
    if (scheme == "f32") {
      EXPECT_NEAR(ours, 3.4927, 0.5e-4);
    }
    if (scheme == "q8_0") {
      // The same bytes as llama-quantize's Q8_0 of the GGUF form: the same perplexity in qbench.
      // (llama-perplexity prints 3.5003 on that file, qbench 3.4968 on AVX-512: float-order noise
      // amplified by the 8-bit activations, not a difference of the file or of the q8_0 products;
      // pinned with its bound in tests/tasks/test_perplexity.cc, PerplexityLlamaCppFileTest.)
      QBENCH_SHARED_FILE(ref, "models/stories260K-llamacpp-quantized/stories260K-Q8_0.gguf");
      r = test::run_cli("perplexity --model " + ref + " --text " + text + " --ctx 256 --chunks 12 --json", dir);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(ours, ppl_of(r.out));
      continue;
    }

    // llama.cpp loads the file and agrees to its printed digits.
    const auto theirs = llama_ppl_12_chunks(out, text);
    if (!theirs) continue;
    EXPECT_NEAR(ours, *theirs, 0.5e-4);
  }
}

// A model trained by qbench qat into ggml's Q4_0 is served by llama.cpp: llama-perplexity loads
// it and gives qbench's perplexity (both multiply Q4_0 by int8 activations per 32 values; the
// float order differs, hence 0.1%), and it is not the Q4_0 start's. On the built-in model, whose
// rows are multiples of 32 (stories260K's ffn_down rows of 172 are not).
TEST(HfCli, QatIntoQ4_0IsServedByLlamaCpp) {
  const std::string dir = test::temp_dir("hf-cli-qat-q4_0");
  const std::string model = QBENCH_SOURCE_DIR "/models/default.gguf", text = dir + "/text.txt";
  auto r = test::run_cli("datagen -g story,dialogue -n 40 --seed 4242 --out " + text, dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli("qat --model " + model + " --scheme q4_0 --data " + text +
                        " --steps 4 --batch 4 --seq-len 64 --lr 0.001 --quiet -t 2 --out " +
                        dir + "/qat.gguf",
                    dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli("quantize --model " + model + " --scheme q4_0: --out " + dir + "/start.gguf", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli("perplexity --model " + dir + "/qat.gguf --text " + text + " --ctx 128 --chunks 12 --json", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const double ours = ppl_of(r.out);
  r = test::run_cli("perplexity --model " + dir + "/start.gguf --text " + text + " --ctx 128 --chunks 12 --json", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GT(std::abs(ours / ppl_of(r.out) - 1.0), 1e-3) << "training moved nothing";
  const auto theirs = llama_ppl_12_chunks(dir + "/qat.gguf", text, 128);
  if (!theirs) return;
  EXPECT_NEAR(ours, *theirs, 1e-3 * ours);
}

// The KV cache in llama.cpp's -ctk / -ctv types, on the built-in model (head size 32, no rotation:
// llama.cpp rotates Q/K/V only for head sizes that are multiples of 64): qbench's perplexity with
// each type is llama-perplexity's with flash attention and the same types, within 2e-4 relative
// on 48 chunks (measured 2026-11-29 on 248 chunks: every type within 1e-4 absolute of llama.cpp's
// 4 printed digits, PPL ~1.69; on 12 chunks q4_0 differed by 3.3e-4 relative, float-order
// differences in the keys rounding to other 4-bit codes). q4_0 moves the perplexity by about 1%,
// so an ignored type would fail.
TEST(HfCli, KvCacheTypesAgreeWithLlamaPerplexity) {
  const std::string dir = test::temp_dir("hf-cli-kv");
  const std::string model = QBENCH_SOURCE_DIR "/models/default.gguf", text = dir + "/text.txt";
  auto r = test::run_cli("datagen -g story,dialogue -n 100 --seed 4242 --out " + text, dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ours = [&](const std::string& kv) {
    const auto p = test::run_cli("perplexity --model " + model + " --text " + text + " --ctx 128 --chunks 48 --json" +
                                     (kv.empty() ? "" : " --kv-cache " + kv),
                                 dir);
    EXPECT_EQ(p.exit_code, 0) << p.err;
    EXPECT_EQ(json::parse(p.out)["kv_cache"], kv.empty() ? "f32" : kv);
    return ppl_of(p.out);
  };
  const double f32 = ours("");
  EXPECT_GT(ours("q4_0") / f32 - 1.0, 0.005);
  r = test::run_cli("perplexity --model " + model + " --text " + text + " --kv-cache q4_K", dir);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("KV cache type 'q4_K' in 'q4_K': expected one of f32, f16, bf16, q8_0"), std::string::npos) << r.err;
  // (f16, bf16, q4_1, q5_0 and q5_1 agreed as closely by hand; left out to keep the test near 10 s.)
  for (const std::string kv : {"q8_0", "q4_0", "iq4_nl", "q8_0/q4_0"}) {
    SCOPED_TRACE(kv);
    const size_t slash = kv.find('/');
    const std::string k = kv.substr(0, slash), v = slash == std::string::npos ? k : kv.substr(slash + 1);
    const auto theirs = llama_ppl_chunks(model, text, 128, 48, "-fa on -ctk " + k + " -ctv " + v);
    if (!theirs) return;
    const double mine = ours(kv);
    EXPECT_NEAR(mine, *theirs, 2e-4 * mine);
  }
}

// llama.cpp's attention rotation, on kquant-test (head size 64: keys and values rotated in blocks
// of 64 when their type is quantized): qbench's default (rot=auto) against llama-perplexity's
// default, and rot=off against LLAMA_ATTN_ROT_DISABLE=1, within 1e-4 relative on 24 chunks
// (measured 2026-11-29 on 60 generated items: q4_0 620.1127 / 620.1143, q4_0 rot=off 617.6594 /
// 617.6538). The rotation moves q4_0's perplexity by 0.4% here, so a missing one would fail.
TEST(HfCli, KvCacheRotationAgreesWithLlamaPerplexity) {
  QBENCH_SHARED_FILE(model, "models/kquant-test/kquant-test-F32.gguf");
  const std::string dir = test::temp_dir("hf-cli-kv-rot"), text = dir + "/text.txt";
  auto r = test::run_cli("datagen -g story,dialogue -n 60 --seed 1 --out " + text, dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ours = [&](const std::string& kv) {
    const auto p = test::run_cli("perplexity --model " + model + " --text " + text + " --ctx 128 --chunks 24 --json --kv-cache " + kv, dir);
    EXPECT_EQ(p.exit_code, 0) << p.err;
    return ppl_of(p.out);
  };
  const double rot = ours("q4_0"), plain = ours("q4_0,rot=off");
  EXPECT_GT(std::abs(rot / plain - 1.0), 1e-3);
  const auto theirs_rot = llama_ppl_chunks(model, text, 128, 24, "-fa on -ctk q4_0 -ctv q4_0");
  if (!theirs_rot) return;
  EXPECT_NEAR(rot, *theirs_rot, 1e-4 * rot);
  const auto theirs_plain = llama_ppl_chunks(model, text, 128, 24, "-fa on -ctk q4_0 -ctv q4_0", "LLAMA_ATTN_ROT_DISABLE=1");
  if (!theirs_plain) return;
  EXPECT_NEAR(plain, *theirs_plain, 1e-4 * plain);
  const auto theirs_mixed = llama_ppl_chunks(model, text, 128, 24, "-fa on -ctk q8_0 -ctv q4_0");
  if (!theirs_mixed) return;
  EXPECT_NEAR(ours("q8_0/q4_0"), *theirs_mixed, 1e-4 * rot);
}

// `qbench run --model DIR` on a tiny folder written by the tests: every unit measured, the model
// identified by the hash of its folder.
TEST(HfCli, RunMeasuresAFolderEndToEnd) {
  const std::string dir = test::temp_dir("hf-cli-run");
  const Model g = load_model(test::write_tiny_model(dir + "/tiny.gguf", test::run_tiny_spec()));
  write_hf_folder(g, dir + "/hf", {safetensors::DType::BF16, 0});
  run::ExperimentConfig c = test::tiny_config(dir + "/hf", {"bf16", "int8", "q8_0"});
  test::write_json(dir + "/cfg.json", c.to_json());
  auto r = test::run_cli("run --quiet --config " + dir + "/cfg.json --model " + dir + "/hf --out " + dir + "/res.json", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const json doc = test::read_json(dir + "/res.json");
  EXPECT_EQ(doc["status"], "complete");
  EXPECT_EQ(doc["model"]["format"], "hf");
  EXPECT_EQ(doc["model"]["sha256"].get<std::string>().size(), 64u);
  ASSERT_EQ(doc["runs"].size(), 3u);
  for (const auto& run : doc["runs"]) {
    EXPECT_EQ(run["status"], "ok") << run.dump();
    for (const auto& [name, u] : run["units"].items()) EXPECT_EQ(u["status"], "ok") << name;
  }
  // bf16 of a BF16 folder is the folder itself: KL ~0 against the unquantized model.
  EXPECT_LT(doc["runs"][0]["units"]["kl"]["result"]["kld_mean"].get<double>(), 1e-6);
}

}  // namespace
}  // namespace qbench
