// The qbench binary as a user meets it: help, exit codes, one-line errors, JSON on stdout.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>

#include "engine/formats/int_quants.h"
#include "engine/model/model.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

namespace qbench {
namespace {

struct RunResult {
  int exit_code;
  std::string out, err;
};

RunResult run(const std::string& args) {
  const std::string dir = test::temp_dir("cli-run");
  const std::string cmd = std::string(QBENCH_BINARY) + " " + args + " >" + dir + "/out 2>" + dir + "/err";
  const int status = std::system(cmd.c_str());
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(dir + "/out"), slurp(dir + "/err")};
}

int count_lines(const std::string& s) { return int(std::count(s.begin(), s.end(), '\n')); }

TEST(Cli, HelpVersionAndUnknownCommand) {
  auto r = run("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("perplexity"), std::string::npos);
  EXPECT_NE(r.out.find("generate"), std::string::npos);
  r = run("--version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.rfind("qbench ", 0), 0u);
  r = run("perplexity --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--ctx"), std::string::npos);
  r = run("frobnicate");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  r = run("perplexity --no-such-option 3");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
}

TEST(Cli, BadModelFilesExitWithCode2AndOneLine) {
  const std::string dir = test::temp_dir("cli-bad");
  std::ofstream(dir + "/text.txt") << "hello there";
  std::ofstream(dir + "/junk.gguf") << "GGUF\x03";
  for (const std::string& model : {dir + "/junk.gguf", dir + "/absent.gguf"}) {
    const auto r = run("perplexity --model " + model + " --text " + dir + "/text.txt");
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(model), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST(Cli, PerplexityJsonIsOneDocumentOnStdout) {
  const std::string dir = test::temp_dir("cli-json");
  const std::string model = test::write_tiny_model(dir + "/m.gguf");
  std::ofstream text(dir + "/text.txt");
  for (int i = 0; i < 40; ++i) text << "the ant and the hen eat at ten in the sun. ";
  text.close();
  const auto r = run("perplexity --model " + model + " --text " + dir + "/text.txt --ctx 32 --chunks 3 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);  // throws (fails) if stdout is not exactly JSON
  EXPECT_EQ(j["n_chunks"], 3);
  EXPECT_EQ(j["n_scored"], 3 * 15);
  EXPECT_GT(j["ppl"].get<double>(), 1.0);
  EXPECT_EQ(j["model"]["n_layer"], 2);
}

// The tiny model was trained (so its metadata says) on 64 tokens: the default --ctx is 64, not
// llama.cpp's 512, and an explicit larger context is measured with a warning.
TEST(Cli, PerplexityContextFollowsTheModelsTrainingContext) {
  const std::string dir = test::temp_dir("cli-ctx");
  const std::string model = test::write_tiny_model(dir + "/m.gguf");
  std::ofstream text(dir + "/text.txt");
  for (int i = 0; i < 80; ++i) text << "the ant and the hen eat at ten in the sun. ";
  text.close();
  auto r = run("perplexity --model " + model + " --text " + dir + "/text.txt --chunks 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["n_ctx"], 64);
  EXPECT_NE(r.err.find("training context"), std::string::npos) << r.err;
  r = run("perplexity --model " + model + " --text " + dir + "/text.txt --ctx 128 --chunks 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["n_ctx"], 128);
  EXPECT_NE(r.err.find("warning: --ctx 128 exceeds the model's training context 64"), std::string::npos) << r.err;
}

TEST(Cli, GenerateIsGreedyAndDeterministic) {
  QBENCH_SHARED_FILE(model, "models/stories260K.gguf");
  const auto a = run("generate --model " + model + " -n 20 --json");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  const auto ja = nlohmann::json::parse(a.out);
  EXPECT_EQ(ja["text"].get<std::string>().rfind(" Once upon a time", 0), 0u) << ja["text"];
  const auto s1 = run("generate --model " + model + " -n 20 --temperature 1 --top-k 40 --seed 5 --json");
  const auto s2 = run("generate --model " + model + " -n 20 --temperature 1 --top-k 40 --seed 5 --json");
  EXPECT_EQ(nlohmann::json::parse(s1.out)["tokens"], nlohmann::json::parse(s2.out)["tokens"]);
}

}  // namespace
}  // namespace qbench

namespace qbench {
namespace {

TEST(Cli, EvalRunsTasksAndReportsStderr) {
  const std::string dir = test::temp_dir("cli-eval");
  const std::string model = test::write_tiny_model(dir + "/m.gguf");
  const auto r = run("eval --model " + model + " --tasks add2,reply_select --limit 6 --items-out " + dir +
                     "/items.jsonl --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["tasks"].size(), 2u);
  EXPECT_EQ(j["tasks"][0]["task"], "add2");
  EXPECT_EQ(j["tasks"][0]["n_items"], 6);
  EXPECT_TRUE(j["tasks"][1]["metrics"].contains("acc_norm"));
  EXPECT_TRUE(j["tasks"][1]["metrics"]["acc"].contains("stderr"));
  std::ifstream items(dir + "/items.jsonl");
  int lines = 0;
  for (std::string line; std::getline(items, line); ++lines) EXPECT_NO_THROW(nlohmann::json::parse(line));
  EXPECT_EQ(lines, 12);
  const auto bad = run("eval --model " + model + " --tasks no_such_task");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_EQ(count_lines(bad.err), 1) << bad.err;
  const auto tasks = run("tasks --json");
  ASSERT_EQ(tasks.exit_code, 0) << tasks.err;
  EXPECT_TRUE(nlohmann::json::parse(tasks.out)["suites"].contains("math_reasoning"));
}

// Chat tasks use the model's recognised template, --chat-template overrides it, and eval says
// which one it used; an unrecognised template is a one-line error (exit 2) naming the option.
TEST(Cli, EvalChatTemplate) {
  const std::string dir = test::temp_dir("cli-chat-template");
  auto model_with = [&](const std::string& name, const std::string& tpl) {
    auto w = test::tiny_model_writer();
    w.set("tokenizer.chat_template", gguf::Value::str(tpl));
    w.write(dir + "/" + name);
    return dir + "/" + name;
  };
  const std::string chatml = model_with("chatml.gguf", "{% for message in messages %}{{'<|im_start|>' + message['role'] + "
                                                       "'\\n' + message['content'] + '<|im_end|>\\n'}}{% endfor %}");
  const std::string unknown = model_with("unknown.gguf", "{% for message in messages %}{{ message['content'] }}{% endfor %}");

  auto r = run("eval --model " + chatml + " --tasks add2,reply_select --limit 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("chat template: chatml (recognised in the model's chat template)\n"), std::string::npos) << r.out;
  r = run("eval --model " + chatml + " --tasks add2,reply_select --limit 2 --chat-template llama2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["chat_template"]["name"], "llama2");
  EXPECT_EQ(j["chat_template"]["source"], "named");
  EXPECT_FALSE(j["tasks"][0].contains("chat_template"));  // add2 is not a chat task
  EXPECT_EQ(j["tasks"][1]["chat_template"], "llama2");

  r = run("eval --model " + unknown + " --tasks reply_select --limit 2");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("pass --chat-template NAME (one of: qbench, llama3, chatml,"), std::string::npos) << r.err;
  r = run("eval --model " + unknown + " --tasks reply_select --limit 2 --chat-template qbench");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("chat template: qbench (chosen by name)"), std::string::npos) << r.out;
  r = run("eval --model " + unknown + " --tasks add2 --limit 2 --json");  // no chat task: no template needed
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(nlohmann::json::parse(r.out)["chat_template"].is_null());
  r = run("eval --model " + chatml + " --tasks add2 --chat-template alpaca");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("unknown chat template 'alpaca'"), std::string::npos) << r.err;
  // The help lists every template.
  r = run("eval --help");
  for (const char* name : {"qbench:", "llama3:", "chatml:", "llama2:", "mistral:", "zephyr:", "gemma:"}) {
    EXPECT_NE(r.out.find(name), std::string::npos) << name;
  }
}

}  // namespace
}  // namespace qbench

namespace qbench {
namespace {

// A multi-megabyte text (WikiText-2 test, 1.3 MB, ~810k tokens) is tokenized and scored with a
// bounded footprint: only the tokens and one chunk's activations per thread are held.
TEST(Cli, PerplexityOnWikiText2KeepsMemoryBounded) {
  QBENCH_SHARED_FILE(model, "models/stories260K.gguf");
  QBENCH_SHARED_FILE(text, "datasets/wikitext2/wiki.test.raw");
  const auto r = run("perplexity --model " + model + " --text " + text + " --ctx 256 --chunks 40 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["n_text_tokens"], 809290);
  EXPECT_EQ(j["n_chunks"], 40);
#ifndef QBENCH_SANITIZE  // AddressSanitizer's shadow memory and quarantine multiply the footprint
  EXPECT_LT(j["peak_rss_bytes"].get<double>(), 128.0 * 1024 * 1024);
#endif
}

}  // namespace
}  // namespace qbench

namespace qbench {
namespace {

TEST(Cli, PerplexityOfAQuantizedVariantWithKlDivergence) {
  const std::string dir = test::temp_dir("cli-kl");
  test::TinySpec spec;
  spec.n_ff = 64;  // rows divisible into blocks of 32
  const std::string model = test::write_tiny_model(dir + "/m.gguf", spec);
  std::ofstream text(dir + "/text.txt");
  for (int i = 0; i < 40; ++i) text << "the ant and the hen eat at ten in the sun. ";
  text.close();
  const std::string base = "perplexity --model " + model + " --text " + dir + "/text.txt --ctx 32 --chunks 3 --json";
  const auto q8 = run(base + " --scheme q8_0 --kl"), q2 = run(base + " --scheme rtn:int2,group=32 --kl");
  ASSERT_EQ(q8.exit_code, 0) << q8.err;
  ASSERT_EQ(q2.exit_code, 0) << q2.err;
  const auto a = nlohmann::json::parse(q8.out), b = nlohmann::json::parse(q2.out);
  EXPECT_EQ(a["kl_divergence"]["positions"], 3 * 15);
  EXPECT_LT(a["kl_divergence"]["mean"].get<double>(), b["kl_divergence"]["mean"].get<double>());
  EXPECT_GT(a["kl_divergence"]["same_top"].get<double>(), 0.8);
  EXPECT_NEAR(a["quantization"]["bits_per_weight"].get<double>(), 8.5, 0.01);  // every matrix q8_0: 34 bytes / 32
  const auto no_scheme = run(base + " --kl");
  EXPECT_EQ(no_scheme.exit_code, 2);
  EXPECT_EQ(count_lines(no_scheme.err), 1);
}

}  // namespace
}  // namespace qbench

namespace qbench {
namespace {

TEST(Cli, TrainStopsResumesAndExportsALoadableModel) {
  const std::string dir = test::temp_dir("cli-train");
  const nlohmann::json recipe = {
      {"version", 1}, {"name", "tiny"},
      {"model", {{"n_embd", 32}, {"n_ff", 64}, {"n_layer", 1}, {"n_head", 2}, {"n_head_kv", 2}, {"n_ctx", 128}}},
      {"train", {{"batch_size", 2}, {"seq_len", 128}, {"total_steps", 6}, {"warmup_steps", 2}, {"eval_interval", 3},
                 {"checkpoint_interval", 2}}},
      {"data", {{"pool_size", 40}, {"eval_exclude", 10}, {"eval_items", 4}, {"mix", {{"add2", 1.0}, {"dialogue", 1.0}}}}}};
  std::ofstream(dir + "/r.json") << recipe.dump();
  const std::string base = "train --recipe " + dir + "/r.json --out " + dir + "/m.gguf --quiet";
  const auto a = run(base + " --max-steps 4 --json");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(nlohmann::json::parse(a.out)["step"], 4);
  const auto b = run(base + " --resume --json");
  ASSERT_EQ(b.exit_code, 0) << b.err;
  const auto jb = nlohmann::json::parse(b.out);
  EXPECT_EQ(jb["step"], 6);
  EXPECT_TRUE(jb["finished"].get<bool>());
  EXPECT_TRUE(jb["last_eval"].contains("add2"));
  // The log has one row per step across both runs, and the model loads and runs.
  std::ifstream log(dir + "/m-train.csv");
  int rows = -1;  // header
  for (std::string line; std::getline(log, line);) ++rows;
  EXPECT_EQ(rows, 6);
  const auto g = run("generate --model " + dir + "/m.gguf -p 'Q: 1+2=? A:' -n 4 --json");
  EXPECT_EQ(g.exit_code, 0) << g.err;
  // A recipe with a typo is rejected with one line.
  std::ofstream(dir + "/bad.json") << R"({"model": {"n_embed": 32}})";
  const auto bad = run("train --recipe " + dir + "/bad.json --out " + dir + "/x.gguf");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("unknown field 'n_embed'"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace qbench

namespace qbench {
namespace {

// qbench qat on a tiny model: trains, writes the scheme's packed format, resumes to the same
// bytes, and refuses schemes it cannot train.
TEST(Cli, QatTrainsResumesBitExactlyAndRefusesOtherSchemes) {
  const std::string dir = test::temp_dir("cli-qat");
  test::TinySpec spec;
  spec.n_ff = 64;  // rows of 32 and 64 values: groups of 32 fit every matrix
  const std::string model = test::write_tiny_model(dir + "/m.gguf", spec);
  {
    std::ofstream text(dir + "/data.txt");
    for (int i = 0; i < 40; ++i) text << "the cat sat on the mat " << i << " and the dog ran. ";
  }
  const std::string base = "qat --model " + model + " --scheme rtn:int3,group=32,sym=false --data " + dir +
                           "/data.txt --steps 4 --batch 2 --seq-len 16 --checkpoint-every 2 --quiet -t 2 --json";
  const auto a = run(base + " --out " + dir + "/a.gguf");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  const auto ja = nlohmann::json::parse(a.out);
  EXPECT_EQ(ja["step"], 4);
  EXPECT_TRUE(ja["finished"].get<bool>());
  EXPECT_EQ(ja["scheme"],
            "qat:int3,group=32,sym=false,init=rtn,steps=4,lr=0.0001,kd=1,ce=0,batch=2,seq=16,seed=1,scale_lr=1,target=int");
  EXPECT_EQ(ja["train_tokens"], 4 * 2 * 16);
  const Model q = load_model(dir + "/a.gguf");
  EXPECT_EQ(q.layers[0].wq.type, int_format_type({3, false, 32}));
  EXPECT_EQ(q.layers[1].w_down.type, int_format_type({3, false, 32}));
  std::ifstream log(dir + "/a-qat.csv");
  int rows = -1;  // header
  for (std::string line; std::getline(log, line);) ++rows;
  EXPECT_EQ(rows, 4);

  // Stopped after 2 steps and resumed: the same file, byte for byte.
  const auto b1 = run(base + " --out " + dir + "/b.gguf --max-steps 2");
  ASSERT_EQ(b1.exit_code, 0) << b1.err;
  EXPECT_FALSE(nlohmann::json::parse(b1.out)["finished"].get<bool>());
  const auto b2 = run(base + " --out " + dir + "/b.gguf --resume");
  ASSERT_EQ(b2.exit_code, 0) << b2.err;
  EXPECT_EQ(nlohmann::json::parse(b2.out)["step"], 4);
  EXPECT_EQ(test::read_file(dir + "/a.gguf"), test::read_file(dir + "/b.gguf"));

  // Into ggml's Q4_0: every linear weight packed as Q4_0, which dequantizes to a trained model
  // (unlike the start's: the weights moved).
  const std::string q4 = "qat --model " + model + " --scheme q4_0 --data " + dir +
                         "/data.txt --steps 3 --batch 2 --seq-len 16 --quiet -t 2 --json";
  const auto c = run(q4 + " --out " + dir + "/c.gguf");
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(nlohmann::json::parse(c.out)["scheme"],
            "qat:int4,group=32,sym=true,init=rtn,steps=3,lr=0.0001,kd=1,ce=0,batch=2,seq=16,seed=1,scale_lr=1,target=q4_0");
  const Model q40 = load_model(dir + "/c.gguf");
  const Model fp = load_model(model);
  const auto q40_linears = q40.linear_weights(), fp_linears = fp.linear_weights();
  ASSERT_EQ(q40_linears.size(), fp_linears.size());
  for (size_t i = 0; i < q40_linears.size(); ++i) EXPECT_EQ(q40_linears[i].second->type, TensorType::Q4_0) << q40_linears[i].first;
  const auto start = run("quantize --model " + model + " --scheme q4_0 --out " + dir + "/start.gguf");
  ASSERT_EQ(start.exit_code, 0) << start.err;
  const Model rtn = load_model(dir + "/start.gguf");
  const Matrix& trained = *q40.linear_weights()[0].second;
  EXPECT_NE(std::string(reinterpret_cast<const char*>(trained.data), trained.bytes()),
            std::string(reinterpret_cast<const char*>(rtn.linear_weights()[0].second->data), trained.bytes()));

  // RTN with clipping searched by MSE starts from its own scales (read back from the bytes).
  const auto clipped = run("qat --model " + model + " --scheme rtn:int4,group=32,clip=mse --data " + dir +
                           "/data.txt --steps 1 --batch 2 --seq-len 16 --quiet -t 2 --out " + dir + "/mse.gguf");
  EXPECT_EQ(clipped.exit_code, 0) << clipped.err;

  for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
           {"--scheme q8_0 --out " + dir + "/x.gguf", "--scheme must be rtn, gptq or awq"},
           {"--scheme q4_0 --calib " + dir + "/data.txt --out " + dir + "/x.gguf", "the q4_0 target starts from ggml's plain rounding"},
           {"--scheme qat:int4,group=64,target=q4_0 --out " + dir + "/x.gguf", "target=q4_0 is ggml's 4-bit blocks of 32"},
           {"--scheme rtn:int4,group=tensor --out " + dir + "/x.gguf", "group=tensor is not supported"},
           {"--scheme rtn:int4,group=64 --out " + dir + "/x.gguf", "group size 64 does not divide the row length 32"},
           {"--steps 0 --out " + dir + "/x.gguf", "must be positive"},
           {"", "--out F.gguf is required"}}) {
    const auto r = run("qat --model " + model + " --data " + dir + "/data.txt --quiet " + args);
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
}  // namespace qbench
