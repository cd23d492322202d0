#include <gtest/gtest.h>

#include <random>

#include "datasets/text.h"
#include "engine/core/utf8.h"
#include "engine/io/gguf.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/test_util.h"

namespace qbench {
namespace {

// An independent, deliberately naive encoder in the style of llama2.c's run.c: start from one
// symbol per UTF-8 character, repeatedly merge the adjacent pair whose concatenation has the
// highest score (leftmost on ties) until none is in the vocabulary, then byte-fallback.
std::vector<int32_t> naive_encode(const Tokenizer& tok, const std::string& text) {
  if (text.empty()) return {tok.bos()};
  std::unordered_map<std::string, int32_t> index;
  for (int32_t i = tok.n_tokens() - 1; i >= 0; --i) index[tok.piece(i)] = i;
  std::string s = "\xE2\x96\x81";
  for (char c : text) s += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
  std::vector<std::string> sym;
  for (size_t i = 0; i < s.size();) {
    size_t n = 1;
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0xF0) n = 4; else if (c >= 0xE0) n = 3; else if (c >= 0xC0) n = 2;
    sym.push_back(s.substr(i, n));
    i += n;
  }
  auto piece_score = [&](int32_t id) { return tok.score(id); };
  while (true) {
    int best = -1;
    float best_score = -1e30f;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      auto it = index.find(sym[i] + sym[i + 1]);
      // strictly greater: the leftmost pair wins ties
      if (it != index.end() && piece_score(it->second) > best_score) {
        best_score = piece_score(it->second);
        best = int(i);
      }
    }
    if (best < 0) break;
    sym[size_t(best)] += sym[size_t(best) + 1];
    sym.erase(sym.begin() + best + 1);
  }
  std::vector<int32_t> out = {tok.bos()};
  for (const auto& p : sym) {
    auto it = index.find(p);
    if (it != index.end()) {
      out.push_back(it->second);
      continue;
    }
    for (unsigned char c : p) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", c);
      out.push_back(index.at(buf));
    }
  }
  return out;
}

class Stories260KTokenizer : public ::testing::Test {
 protected:
  static Tokenizer load() {
    const std::string p = test::shared_file("models/stories260K.gguf");
    return p.empty() ? Tokenizer() : Tokenizer::from_gguf(*gguf::File::open(p));
  }
};

const std::vector<std::string>& sample_strings() {
  static const std::vector<std::string> s = {
      "Hello world",
      " Hello world",
      "Once upon a time, there was a little girl named Lily.",
      "  two leading spaces",
      "trailing space ",
      "tabs\tand\nnewlines\n\n",
      "numbers 12345 and 3.14159",
      "caf\xC3\xA9 na\xC3\xAFve r\xC3\xA9sum\xC3\xA9",     // Latin-1 range characters
      "\xE2\x82\xAC 100 \xE2\x80\x94 price \xE2\x98\x83",  // euro sign, em dash, snowman
      "emoji \xF0\x9F\x98\x80!",                          // 4-byte character
      "\xE4\xBD\xA0\xE5\xA5\xBD",                         // CJK
      "<s> is not parsed as a special token </s>",
      "a",
      "\n",
  };
  return s;
}

TEST_F(Stories260KTokenizer, AgreesWithAnIndependentNaiveEncoder) {
  QBENCH_SHARED_FILE(path, "models/stories260K.gguf");
  const Tokenizer tok = load();
  for (const std::string& s : sample_strings()) {
    EXPECT_EQ(tok.encode(s, true), naive_encode(tok, s)) << "text: '" << s << "'";
  }
  std::mt19937 rng(3);
  const std::string alphabet = "abcdefghijklmnopqrstuvwxyz  ,.!?'\nTHE\xC3\xA9";
  for (int i = 0; i < 300; ++i) {
    std::string s;
    const int len = int(rng() % 40);
    for (int k = 0; k < len; ++k) s += alphabet[rng() % alphabet.size()];
    if (!find_invalid_utf8(s)) {
      ASSERT_EQ(tok.encode(s, true), naive_encode(tok, s)) << "text: '" << s << "'";
    }
  }
}

TEST_F(Stories260KTokenizer, SpecialCasesFollowLlamaCpp) {
  QBENCH_SHARED_FILE(path, "models/stories260K.gguf");
  const Tokenizer tok = load();
  EXPECT_EQ(tok.encode("", true), std::vector<int32_t>{1});  // only BOS
  EXPECT_TRUE(tok.encode("", false).empty());
  // A character with no token (U+2603 snowman) falls back to its UTF-8 bytes, each "<0xNN>"
  // = id 3 + byte; "▁" (410) comes first from the added space prefix.
  EXPECT_EQ(tok.encode("\xE2\x98\x83", false), (std::vector<int32_t>{410, 3 + 0xE2, 3 + 0x98, 3 + 0x83}));
  // Newline is the byte token <0x0A>.
  const auto nl = tok.encode("a\nb", false);
  EXPECT_NE(std::find(nl.begin(), nl.end(), 3 + 0x0A), nl.end());
  // The leading-space rule: "Hello" and " Hello" differ (a second space is kept).
  EXPECT_NE(tok.encode("Hello", false), tok.encode(" Hello", false));
  // Decoding the pieces gives back the text with the added leading space.
  const std::string text = "Once upon a time, caf\xC3\xA9 \xE2\x98\x83 \xE2\x82\xAC!";
  EXPECT_EQ(tok.decode(tok.encode(text, true)), " " + text);
}

TEST(Tokenizer, Llama2cTokenizerBinMatchesTheGgufVocabulary) {
  QBENCH_SHARED_FILE(gguf_path, "models/stories260K.gguf");
  QBENCH_SHARED_FILE(bin_path, "models/tok512.bin");
  const Tokenizer a = Tokenizer::from_gguf(*gguf::File::open(gguf_path));
  const Tokenizer b = Tokenizer::from_llama2c(bin_path);
  ASSERT_EQ(a.n_tokens(), b.n_tokens());
  for (int32_t i = 0; i < a.n_tokens(); ++i) {
    EXPECT_EQ(a.piece(i), b.piece(i)) << "token " << i;
    EXPECT_EQ(a.type(i), b.type(i)) << "token " << i;
  }
  for (const std::string& s : sample_strings()) EXPECT_EQ(a.encode(s, true), b.encode(s, true)) << s;
}

TEST(Tokenizer, TinyStoriesHeadHasTheTokenCountLlamaCppReports) {
  // PROTOCOLS.md: 393,019 tokens including the leading BOS.
  QBENCH_SHARED_FILE(model, "models/stories260K.gguf");
  QBENCH_SHARED_FILE(text, "datasets/tinystories/tinystories_validation_head.txt");
  const Tokenizer tok = Tokenizer::from_gguf(*gguf::File::open(model));
  const auto ids = tok.encode(read_text_file(text), true);
  EXPECT_EQ(ids.size(), 393019u);
  EXPECT_EQ(ids[0], 1);
}

}  // namespace
}  // namespace qbench
