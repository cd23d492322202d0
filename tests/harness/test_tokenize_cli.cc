// qbench tokenize on tokenizers alone: a vocab-only GGUF and a bare tokenizer.json reproduce
// llama.cpp's fixtures with --no-bos --json; a tokenizer it cannot read is a one-line error.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <fstream>

#include "tests/harness/test_run_util.h"
#include "tests/test_util.h"

namespace qbench {
namespace {

// qbench ARGS with stdout/stderr captured in DIR (tests/harness/test_run_util.h).
using test::CliResult;
using test::run_cli;

// Cases of a test-tokenizer-0 pair of files, as (text, ids).
std::vector<std::pair<std::string, std::vector<int32_t>>> cases(const std::string& inp, const std::string& out) {
  const std::string text = test::read_file(inp), sep = "\n__ggml_vocab_test__\n";
  std::vector<std::pair<std::string, std::vector<int32_t>>> r;
  for (size_t pos = 0, at; (at = text.find(sep, pos)) != std::string::npos; pos = at + sep.size()) {
    r.push_back({text.substr(pos, at - pos), {}});
  }
  std::istringstream lines(test::read_file(out));
  std::string line;
  for (size_t i = 0; i < r.size() && std::getline(lines, line); ++i) {
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) r[i].second.push_back(id);
  }
  return r;
}

void expect_fixture_cases(const std::string& tokenizer_args, const std::string& inp, const std::string& out,
                          const std::string& name) {
  const std::string dir = test::temp_dir("tokenize-cli-" + name);
  int checked = 0;
  for (const auto& [text, ids] : cases(inp, out)) {
    // Every twelfth case (a process each; qbench reads texts through --file: non-empty, no NUL)
    // and the long ones; the engine tests check all 46 cases in one process.
    if (text.empty() || (checked++ % 12 != 0 && text.size() < 200)) continue;
    std::ofstream(dir + "/text.txt", std::ios::binary) << text;
    const CliResult r = run_cli("tokenize " + tokenizer_args + " --file " + dir + "/text.txt --no-bos --json", dir);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j.at("ids").get<std::vector<int32_t>>(), ids) << name << ": '" << text << "'";
  }
}

TEST(TokenizeCli, TokenizerJsonReproducesTheFixtures) {
  QBENCH_SHARED_FILE(llama3, "tokenizers/hf/llama3/tokenizer.json");
  QBENCH_SHARED_FILE(qwen2, "tokenizers/hf/qwen2/tokenizer.json");
  QBENCH_SHARED_FILE(l_inp, "tokenizers/llama.cpp/ggml-vocab-llama-bpe.gguf.inp");
  QBENCH_SHARED_FILE(l_out, "tokenizers/llama.cpp/ggml-vocab-llama-bpe.gguf.out");
  QBENCH_SHARED_FILE(q_inp, "tokenizers/llama.cpp/ggml-vocab-qwen2.gguf.inp");
  QBENCH_SHARED_FILE(q_out, "tokenizers/llama.cpp/ggml-vocab-qwen2.gguf.out");
  expect_fixture_cases("--tokenizer " + llama3, l_inp, l_out, "llama3");
  expect_fixture_cases("--tokenizer " + qwen2, q_inp, q_out, "qwen2");
}

TEST(TokenizeCli, VocabOnlyGgufReproducesTheFixtures) {
  QBENCH_SHARED_FILE(gguf, "tokenizers/llama.cpp/ggml-vocab-deepseek-coder.gguf");
  QBENCH_SHARED_FILE(inp, "tokenizers/llama.cpp/ggml-vocab-deepseek-coder.gguf.inp");
  QBENCH_SHARED_FILE(out, "tokenizers/llama.cpp/ggml-vocab-deepseek-coder.gguf.out");
  expect_fixture_cases("--model " + gguf, inp, out, "deepseek-coder");
}

TEST(TokenizeCli, UnreadableTokenizerIsAOneLineError) {
  const std::string dir = test::temp_dir("tokenize-cli-bad");
  std::ofstream(dir + "/tokenizer.json") << R"({"model": {"type": "Unigram", "vocab": []}})";
  const CliResult r = run_cli("tokenize --tokenizer " + dir + "/tokenizer.json --prompt hi", dir);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("model.type 'Unigram' is not supported"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace
}  // namespace qbench
