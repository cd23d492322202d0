// Byte-level BPE (and the SentencePiece fixtures) against llama.cpp's test-tokenizer-0 fixtures:
// every case of every vocabulary must give exactly the expected ids.
#include <gtest/gtest.h>

#include <functional>
#include <sstream>

#include "engine/core/error.h"
#include "engine/io/gguf.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/regex_split.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/engine/tokenizer_cases.h"
#include "tests/test_util.h"

namespace qbench {
namespace {

using test::Case;
using test::read_cases;
using test::show;
using test::tokenizer_error_of;

// Checks every case; returns the number that matched.
int check_cases(const Tokenizer& tok, const std::vector<Case>& cases, const std::string& name) {
  int matched = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::vector<int32_t> got = tok.encode(cases[i].text, /*add_special=*/false);
    EXPECT_EQ(show(got), show(cases[i].ids)) << name << " case " << i << ": '" << cases[i].text << "'";
    if (got == cases[i].ids) ++matched;
    if (tok.kind() == TokenizerKind::Bpe) {
      // Byte-level decoding gives back the exact bytes.
      EXPECT_EQ(tok.decode(got), cases[i].text) << name << " case " << i;
    }
  }
  return matched;
}

class LlamaCppFixture : public ::testing::TestWithParam<const char*> {};

TEST_P(LlamaCppFixture, EveryCaseMatches) {
  const std::string base = std::string("tokenizers/llama.cpp/ggml-vocab-") + GetParam() + ".gguf";
  QBENCH_SHARED_FILE(gguf, base);
  QBENCH_SHARED_FILE(inp, base + ".inp");
  QBENCH_SHARED_FILE(out, base + ".out");
  const Tokenizer tok = Tokenizer::from_file(gguf);
  const std::vector<Case> cases = read_cases(inp, out);
  ASSERT_EQ(cases.size(), 46u);
  EXPECT_EQ(check_cases(tok, cases, GetParam()), 46);
}

INSTANTIATE_TEST_SUITE_P(Vocabs, LlamaCppFixture,
                         ::testing::ValuesIn(test::kFixtureVocabs), test::vocab_test_name);

struct HfCase {
  const char* name;
  const char* json;
  const char* inp;
  const char* out;
};

class HfTokenizerJson : public ::testing::TestWithParam<HfCase> {};

TEST_P(HfTokenizerJson, ReproducesTheFixtures) {
  const HfCase& c = GetParam();
  QBENCH_SHARED_FILE(json, c.json);
  QBENCH_SHARED_FILE(inp, c.inp);
  QBENCH_SHARED_FILE(out, c.out);
  const Tokenizer tok = Tokenizer::from_file(json);
  EXPECT_EQ(tok.kind(), TokenizerKind::Bpe);
  const std::vector<Case> cases = read_cases(inp, out);
  ASSERT_EQ(cases.size(), 46u);
  EXPECT_EQ(check_cases(tok, cases, c.name), 46);
}

INSTANTIATE_TEST_SUITE_P(
    Files, HfTokenizerJson,
    ::testing::Values(
        HfCase{"llama3", "tokenizers/hf/llama3/tokenizer.json", "tokenizers/llama.cpp/ggml-vocab-llama-bpe.gguf.inp",
               "tokenizers/llama.cpp/ggml-vocab-llama-bpe.gguf.out"},
        HfCase{"qwen2", "tokenizers/hf/qwen2/tokenizer.json", "tokenizers/llama.cpp/ggml-vocab-qwen2.gguf.inp",
               "tokenizers/llama.cpp/ggml-vocab-qwen2.gguf.out"},
        HfCase{"gpt2", "tokenizers/hf/gpt2/tokenizer.json", "tokenizers/llama.cpp/ggml-vocab-gpt-2.gguf.inp",
               "tokenizers/llama.cpp/ggml-vocab-gpt-2.gguf.out"},
        HfCase{"smollm", "tokenizers/hf/smollm/tokenizer.json", "tokenizers/hf/smollm/ggml-vocab-test.inp",
               "tokenizers/hf/smollm/ggml-vocab-test.out.transformersjs"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Bpe, ControlTokensAreParsedOnlyWhenAsked) {
  QBENCH_SHARED_FILE(json, "tokenizers/hf/llama3/tokenizer.json");
  const Tokenizer tok = Tokenizer::from_file(json);
  const std::string text = "<|begin_of_text|>Hello";
  const auto parsed = tok.encode(text, false, /*parse_special=*/true);
  ASSERT_FALSE(parsed.empty());
  EXPECT_EQ(parsed.front(), 128000);
  EXPECT_EQ(parsed.size(), 2u);
  const auto plain = tok.encode(text, false, /*parse_special=*/false);
  EXPECT_GT(plain.size(), 3u);
  EXPECT_EQ(tok.decode(plain), text);
  // BOS and EOS from tokenizer_config.json beside the file.
  EXPECT_EQ(tok.bos(), 128000);
  EXPECT_EQ(tok.eos(), 128001);
}

TEST(Bpe, EveryNamedPreTokenizerCompilesAndUnknownNamesAreErrors) {
  for (const PreTokenizerInfo& p : pre_tokenizers()) {
    EXPECT_NO_THROW(RegexSplitter{p.patterns}) << p.names.front();
  }
  for (const char* name : {"default", "gpt-2", "llama-bpe", "qwen2", "smollm", "deepseek-llm", "deepseek-coder",
                           "falcon", "starcoder", "refact", "mpt"}) {
    EXPECT_NO_THROW(find_pre_tokenizer(name)) << name;
  }
  try {
    find_pre_tokenizer("no-such-pre");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'no-such-pre'"), std::string::npos) << e.what();
  }
}

TEST(Bpe, SplitterKeepsGapsAndStopsLookaheadAtPieceEnds) {
  const RegexSplitter s({"\\s+(?!\\S)|\\s+", "[0-9]"});
  std::vector<std::string_view> pieces;
  s.split("ab   c12", pieces);
  std::vector<std::string> got(pieces.begin(), pieces.end());
  EXPECT_EQ(got, (std::vector<std::string>{"ab", "  ", " ", "c", "1", "2"}));
  // U+0085 (NEL) is white space, as in llama.cpp and Oniguruma.
  EXPECT_EQ(widen_regex_whitespace("\\s[^\\s\\p{L}]\\S"), "[\\s\\x{85}][^\\s\\x{85}\\p{L}][^\\s\\x{85}]");
  s.split("a\xC2\x85" "b", pieces);
  EXPECT_EQ(pieces.size(), 3u);
}

// A small byte-level vocabulary: the 256 mapped bytes, then merges.
struct TinyVocab {
  std::vector<std::string> pieces;
  std::vector<TokenType> types;
  TinyVocab() {
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      // GPT-2's map, written independently: printable bytes stand for themselves.
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const int cp = printable ? b : next++;
      std::string u;
      if (cp < 0x80) u = std::string(1, char(cp));
      else u = {char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))};
      pieces.push_back(u);
      types.push_back(TokenType::Normal);
    }
  }
};

std::string write_vocab(const std::string& dir, const std::string& name,
                        const std::function<void(gguf::Writer&)>& edit) {
  const TinyVocab v;
  gguf::Writer w;
  std::vector<gguf::Value> toks, types, merges;
  for (size_t i = 0; i < v.pieces.size(); ++i) {
    toks.push_back(gguf::Value::str(v.pieces[i]));
    types.push_back(gguf::Value::i32(1));
  }
  toks.push_back(gguf::Value::str("ab"));
  types.push_back(gguf::Value::i32(1));
  merges.push_back(gguf::Value::str("a b"));
  w.set("general.architecture", gguf::Value::str("llama"));
  w.set("tokenizer.ggml.model", gguf::Value::str("gpt2"));
  w.set("tokenizer.ggml.pre", gguf::Value::str("gpt-2"));
  w.set("tokenizer.ggml.tokens", gguf::Value::array(gguf::ValueType::STRING, std::move(toks)));
  w.set("tokenizer.ggml.token_type", gguf::Value::array(gguf::ValueType::INT32, std::move(types)));
  w.set("tokenizer.ggml.merges", gguf::Value::array(gguf::ValueType::STRING, std::move(merges)));
  w.set("tokenizer.ggml.bos_token_id", gguf::Value::u32(256));
  w.set("tokenizer.ggml.eos_token_id", gguf::Value::u32(256));
  edit(w);
  const std::string path = dir + "/" + name + ".gguf";
  w.write(path);
  return path;
}

TEST(Bpe, SmallVocabularyMergesAndBadInputIsAClearError) {
  const std::string dir = test::temp_dir("bpe-bad");
  const std::string good = write_vocab(dir, "good", [](gguf::Writer&) {});
  const Tokenizer tok = Tokenizer::from_file(good);
  // Token b is byte b's mapped code point; "ab" is merged, " a" is U+0120 and 'a' unmerged.
  EXPECT_EQ(tok.encode("ab a", false), (std::vector<int32_t>{256, 0x20, 'a'}));
  EXPECT_EQ(tok.encode("ab", false), (std::vector<int32_t>{256}));
  EXPECT_EQ(tok.decode(tok.encode("ab a\n\xF0\x9F\x98\x80", false)), "ab a\n\xF0\x9F\x98\x80");

  const std::string merge = write_vocab(dir, "merge", [](gguf::Writer& w) {
    w.set("tokenizer.ggml.merges", gguf::Value::array(gguf::ValueType::STRING, {gguf::Value::str("ab")}));
  });
  EXPECT_NE(tokenizer_error_of(merge).find("malformed merge 0 'ab'"), std::string::npos) << tokenizer_error_of(merge);
  const std::string range = write_vocab(dir, "range", [](gguf::Writer& w) {
    w.set("tokenizer.ggml.eos_token_id", gguf::Value::u32(5000));
  });
  EXPECT_NE(tokenizer_error_of(range).find("eos_token_id is 5000"), std::string::npos) << tokenizer_error_of(range);
  const std::string type = write_vocab(dir, "type", [](gguf::Writer& w) {
    std::vector<gguf::Value> types(257, gguf::Value::i32(1));
    types[7] = gguf::Value::i32(9);
    w.set("tokenizer.ggml.token_type", gguf::Value::array(gguf::ValueType::INT32, std::move(types)));
  });
  EXPECT_NE(tokenizer_error_of(type).find("token_type of token 7 is 9"), std::string::npos) << tokenizer_error_of(type);
  const std::string pre = write_vocab(dir, "pre", [](gguf::Writer& w) {
    w.set("tokenizer.ggml.pre", gguf::Value::str("made-up"));
  });
  EXPECT_NE(tokenizer_error_of(pre).find("unknown BPE pre-tokenizer 'made-up'"), std::string::npos) << tokenizer_error_of(pre);
  const std::string nomerges = write_vocab(dir, "nomerges", [](gguf::Writer& w) { w.remove("tokenizer.ggml.merges"); });
  EXPECT_NE(tokenizer_error_of(nomerges).find("without tokenizer.ggml.merges"), std::string::npos) << tokenizer_error_of(nomerges);
  for (const std::string& p : {merge, range, type, pre, nomerges}) {
    EXPECT_EQ(tokenizer_error_of(p).find('\n'), std::string::npos) << "one line: " << tokenizer_error_of(p);
  }
}

}  // namespace
}  // namespace qbench
