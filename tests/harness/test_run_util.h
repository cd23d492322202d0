// Shared by the test_run suites: a tiny model and small experiment configs.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "harness/run/config.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

namespace qbench::test {

// n_ff = 192: rtn group 128 cannot split ffn_down's rows (192 columns), so that scheme fails on
// this model while every other one applies; n_embd = 128 keeps the group-64/128 formats usable.
inline TinySpec run_tiny_spec() {
  TinySpec s;
  s.n_vocab = 300;
  s.n_embd = 128;
  s.n_ff = 192;
  s.n_layer = 2;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.n_ctx = 128;
  s.seed = 7;
  return s;
}

// A small experiment on `model`: 2 items per task of one suite, a short generated text.
inline run::ExperimentConfig tiny_config(const std::string& model, std::vector<std::string> schemes) {
  run::ExperimentConfig c;
  c.name = "tiny";
  c.model = model;
  c.schemes = std::move(schemes);
  c.suites = {"chat"};
  c.limit = 3;
  c.threads = 2;
  c.ppl_items = 12;
  c.ppl_ctx = 64;
  c.ppl_chunks = 4;
  c.kl_top_k = 16;
  c.speed_prefill = 16;
  c.speed_decode = 4;
  c.speed_reps = 2;
  c.speed_warmup = 1;
  c.speed_shape = "";         // speed of the tiny model itself (the tests that check shapes set one)
  c.speed_bandwidth_mib = 0;  // no 512 MiB probe per run; the tests that check it ask for a small one
  return c;
}

struct CliResult {
  int exit_code;
  std::string out, err;
};

inline CliResult run_cli(const std::string& args, const std::string& scratch) {
  const std::string cmd = std::string(QBENCH_BINARY) + " " + args + " >" + scratch + "/cli.out 2>" + scratch + "/cli.err";
  const int status = std::system(cmd.c_str());
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(scratch + "/cli.out"), slurp(scratch + "/cli.err")};
}

inline void write_json(const std::string& path, const nlohmann::json& j) { std::ofstream(path) << j.dump(2); }

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(std::string(std::istreambuf_iterator<char>(in), {}));
}

}  // namespace qbench::test
