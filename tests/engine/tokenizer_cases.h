// llama.cpp's tokenizer fixture cases (test-tokenizer-0's .inp/.out files), for the tokenizer
// tests in tests/engine.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "engine/core/error.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/test_util.h"

namespace qbench::test {

// llama.cpp's vocab-only fixture GGUFs in $QBENCH_SHARED/tokenizers/llama.cpp
// (ggml-vocab-NAME.gguf with NAME.gguf.inp / .out), for ::testing::ValuesIn.
inline constexpr const char* kFixtureVocabs[] = {"gpt-2",     "deepseek-llm", "deepseek-coder", "falcon", "starcoder",
                                                 "refact",    "mpt",          "llama-spm",      "phi-3"};
// gtest parameter name of a vocabulary ("deepseek-llm" -> "deepseek_llm").
inline std::string vocab_test_name(const ::testing::TestParamInfo<const char*>& info) {
  std::string s = info.param;
  for (char& c : s) {
    if (c == '-') c = '_';
  }
  return s;
}

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

// test-tokenizer-0's files: each text is followed by "\n__ggml_vocab_test__\n"; one line of ids
// (with a leading space) per text.
inline std::vector<Case> read_cases(const std::string& inp, const std::string& out) {
  const std::string text = read_file(inp);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<Case> cases;
  for (size_t pos = 0; pos < text.size();) {
    const size_t at = text.find(sep, pos);
    if (at == std::string::npos) break;
    cases.push_back({text.substr(pos, at - pos), {}});
    pos = at + sep.size();
  }
  std::istringstream lines(read_file(out));
  std::string line;
  size_t i = 0;
  while (std::getline(lines, line)) {
    if (i >= cases.size()) {
      ADD_FAILURE() << out << ": more lines than cases";
      break;
    }
    std::istringstream ids(line);
    int32_t id;
    while (ids >> id) cases[i].ids.push_back(id);
    ++i;
  }
  EXPECT_EQ(i, cases.size()) << out;
  return cases;
}

// The message of the error Tokenizer::from_file(path) throws, or "(no error)".
inline std::string tokenizer_error_of(const std::string& path) {
  try {
    Tokenizer::from_file(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

inline std::string show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += " " + std::to_string(id);
  return s;
}

}  // namespace qbench::test
