// Property test: qbench's tokenizer against llama.cpp's own (llama-tokenize, prebuilt in
// $QBENCH_SHARED/tools/llama.cpp) on generated text: mixed scripts, digit runs, white-space runs,
// emoji, contractions and special-token look-alikes, for each fixture vocabulary, with and
// without parsing special tokens. The strings are generated from a fixed seed and joined into
// one text per vocabulary (one llama-tokenize run each), so the test is deterministic and fast.
// Skips when the tool is absent; under CI=true it fails only when the tool's folder is there
// (its PROVENANCE.md) but the program does not run.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "engine/io/gguf.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/engine/generated_text.h"
#include "tests/engine/tokenizer_cases.h"
#include "tests/test_util.h"

namespace qbench {
namespace {

using test::generate_text;

std::string tool_path() {
  const char* root = std::getenv("QBENCH_SHARED");
  if (root == nullptr || *root == '\0') return {};
  return (std::filesystem::path(root) / "tools/llama.cpp/llama-tokenize").string();
}

// llama-tokenize's ids for the text in `file`; nullopt when the program does not run.
std::optional<std::vector<int32_t>> llama_tokenize(const std::string& tool, const std::string& vocab,
                                                   const std::string& file, bool parse_special) {
  const std::string cmd = "'" + tool + "' -m '" + vocab + "' -f '" + file +
                          "' --ids --no-bos --no-escape --log-disable" + (parse_special ? "" : " --no-parse-special") +
                          " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return std::nullopt;
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  if (::pclose(p) != 0) return std::nullopt;
  const size_t open = out.rfind('[');
  if (open == std::string::npos) return std::nullopt;
  std::vector<int32_t> ids;
  std::string body = out.substr(open + 1);
  for (char& c : body) if (c == ',' || c == ']') c = ' ';
  std::istringstream in(body);
  int32_t id;
  while (in >> id) ids.push_back(id);
  return ids;
}

// Compares qbench's ids with llama-tokenize's on the generated text, with and without parsing
// special tokens; reports the first difference with its context.
void compare_with_llama_cpp(const Tokenizer& tok, const std::string& vocab, const std::string& name, uint64_t seed) {
  const std::string tool = tool_path();
  if (tool.empty() || !std::filesystem::exists(tool)) {
    GTEST_SKIP() << "llama-tokenize not found under $QBENCH_SHARED/tools/llama.cpp";
  }
  const std::string dir = test::temp_dir("bpe-prop-" + name);
  const std::string file = dir + "/text.txt";
  const std::string text = generate_text(seed, 400);
  std::ofstream(file, std::ios::binary) << text;
  for (const bool parse_special : {false, true}) {
    const auto expected = llama_tokenize(tool, vocab, file, parse_special);
    if (!expected) {
      if (test::in_ci() && std::filesystem::exists(std::filesystem::path(tool).parent_path() / "PROVENANCE.md")) {
        FAIL() << tool << " is there but did not run (CI=true)";
      }
      GTEST_SKIP() << tool << " did not run";
    }
    const std::vector<int32_t> got = tok.encode(text, false, parse_special);
    size_t i = 0;
    while (i < got.size() && i < expected->size() && got[i] == (*expected)[i]) ++i;
    if (i < got.size() || i < expected->size()) {
      std::vector<int32_t> before(got.begin() + std::ptrdiff_t(i > 8 ? i - 8 : 0), got.begin() + std::ptrdiff_t(i));
      std::string ours, theirs;
      for (size_t k = i; k < std::min(got.size(), i + 6); ++k) ours += " " + std::to_string(got[k]) + "'" + tok.decode({got[k]}) + "'";
      for (size_t k = i; k < std::min(expected->size(), i + 6); ++k) {
        theirs += " " + std::to_string((*expected)[k]) + "'" + tok.decode({(*expected)[k]}) + "'";
      }
      ADD_FAILURE() << name << (parse_special ? " (parse special)" : "") << ": first difference at token " << i
                    << " of " << expected->size() << " after '" << tok.decode(before) << "'\n  qbench:" << ours
                    << "\n  llama.cpp:" << theirs;
    }
  }
}

uint64_t seed_of(const std::string& name) {
  uint64_t seed = 0x5EED;
  for (char c : name) seed = seed * 131 + uint8_t(c);
  return seed;
}

class AgainstLlamaTokenize : public ::testing::TestWithParam<const char*> {};

TEST_P(AgainstLlamaTokenize, GeneratedTextGivesTheSameIds) {
  const std::string rel = std::string("tokenizers/llama.cpp/ggml-vocab-") + GetParam() + ".gguf";
  QBENCH_SHARED_FILE(vocab, rel);
  compare_with_llama_cpp(Tokenizer::from_file(vocab), vocab, GetParam(), seed_of(GetParam()));
}

// Llama 3 and Qwen2 have no vocab GGUF in the fixtures: their tokenizer.json, written by qbench
// as a vocab-only GGUF (tokens, merges, types, pre-tokenizer name), is what llama-tokenize reads.
class HfAsGgufAgainstLlamaTokenize : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(HfAsGgufAgainstLlamaTokenize, GeneratedTextGivesTheSameIds) {
  const auto [name, pre] = GetParam();
  QBENCH_SHARED_FILE(json, std::string("tokenizers/hf/") + name + "/tokenizer.json");
  const Tokenizer tok = Tokenizer::from_file(json);
  EXPECT_EQ(tok.pre_tokenizer(), pre);
  gguf::Writer w;
  w.set("general.architecture", gguf::Value::str("llama"));
  w.set("general.name", gguf::Value::str(std::string("vocab-") + name));
  w.set("llama.block_count", gguf::Value::u32(1));
  w.set("llama.context_length", gguf::Value::u32(256));
  w.set("llama.embedding_length", gguf::Value::u32(64));
  w.set("llama.feed_forward_length", gguf::Value::u32(128));
  w.set("llama.attention.head_count", gguf::Value::u32(4));
  w.set("llama.attention.head_count_kv", gguf::Value::u32(4));
  w.set("llama.attention.layer_norm_rms_epsilon", gguf::Value::f32(1e-5f));
  w.set("llama.rope.dimension_count", gguf::Value::u32(16));
  w.set("llama.vocab_size", gguf::Value::u32(uint32_t(tok.n_tokens())));
  tok.write_gguf(w);
  const std::string dir = test::temp_dir(std::string("bpe-hf-gguf-") + name);
  const std::string vocab = dir + "/vocab.gguf";
  w.write(vocab);
  // qbench reads its own file back to the same tokenizer (without parsing special tokens: from
  // a GGUF, llama.cpp's by-name control overrides apply, e.g. Qwen's normal token "</s>").
  const Tokenizer back = Tokenizer::from_file(vocab);
  const std::string probe = generate_text(seed_of(name) + 1, 50);
  EXPECT_EQ(back.encode(probe, false), tok.encode(probe, false));
  compare_with_llama_cpp(back, vocab, name, seed_of(name));
}

INSTANTIATE_TEST_SUITE_P(Files, HfAsGgufAgainstLlamaTokenize,
                         ::testing::Values(std::make_pair("llama3", "llama-bpe"), std::make_pair("qwen2", "qwen2")),
                         [](const auto& info) { return std::string(info.param.first); });

INSTANTIATE_TEST_SUITE_P(Vocabs, AgainstLlamaTokenize,
                         ::testing::ValuesIn(test::kFixtureVocabs), test::vocab_test_name);

}  // namespace
}  // namespace qbench
