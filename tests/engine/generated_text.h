// Generated tokenizer test text (tests/engine): mixed scripts, digit runs, white-space runs,
// emoji, contractions and special-token look-alikes, from a fixed seed (SplitMix64), so a test
// that uses it is deterministic.
#pragma once

#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

namespace qbench::test {

struct SplitMix64 {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return size_t(next() % n); }
};

// Pieces the generator draws from (UTF-8).
inline const std::vector<std::string>& fragments() {
  static const std::vector<std::string> f = {
      "the", "The", "HELLO", "tokenizer", "naïve", "Ünïcödé", "ab", "x", "I'm", "you'LL", "it's", "'s", "'ve",
      "don't", "O'Neil", "1", "12", "123", "1234", "12345678", "3.14159", "1,000", "٣٤٥", "²", "½", "Ⅻ",
      " ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n ", "\xC2\xA0", "\xE3\x80\x80",
      "\xE2\x80\x83", "\xC2\x85", ".", ",", "!?", "...", "--", "()", "[]", "{}", "<>", "==", "=>", "&&", "||",
      "#", "$", "%", "^", "~", "`", "@", "\\", "/", "_", "__init__", "\"quoted\"", "«»", "—", "…",
      "日本語", "中文字符", "한국어", "Привет", "мир", "Ελληνικά", "עברית", "العربية", "हिन्दी", "ไทย",
      "ภาษา", "ქართული", "Ꭰ", "ｆｕｌｌｗｉｄｔｈ", "ﬁ", "e\xCC\x81", "\xF0\x9F\x98\x80", "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",
      "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7", "\xF0\x9F\x87\xBA\xF0\x9F\x87\xB8",
      "\xE2\x9D\xA4\xEF\xB8\x8F", "\xE2\x80\x8B", "<s>", "</s>", "<unk>", "<|endoftext|>", "<|endoftext",
      "<|im_start|>", "<|im_end|>", "[INST]", "<|begin_of_text|>", "<|eot_id|>", "<｜fim▁hole｜>",
      "<|assistant|>", "<|user|>", "<|end|>", "▁", "Ġ", "Ċ", "ĠĠ",
  };
  return f;
}

// UTF-8 of a code point.
inline std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xF0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3F));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

// A random code point: mostly from the blocks of living scripts, marks, symbols and emoji, some
// anywhere below U+30000 (no surrogates, no NUL).
inline uint32_t random_code_point(SplitMix64& rng) {
  static const uint32_t blocks[][2] = {{0x20, 0x7E},     {0xA0, 0x24F},    {0x300, 0x36F},   {0x370, 0x52F},
                                       {0x590, 0x6FF},   {0x900, 0xDFF},   {0xE00, 0xEFF},   {0x1100, 0x11FF},
                                       {0x1680, 0x169F}, {0x2000, 0x206F}, {0x20A0, 0x23FF}, {0x2460, 0x27BF},
                                       {0x3000, 0x30FF}, {0x4E00, 0x4F00}, {0xAC00, 0xAD00}, {0xFF00, 0xFFEF},
                                       {0x1D400, 0x1D7FF}, {0x1F300, 0x1FAFF}};
  if (rng.below(8) == 0) {
    for (;;) {
      const uint32_t cp = 1 + uint32_t(rng.below(0x30000));
      if (cp < 0xD800 || cp > 0xDFFF) return cp;
    }
  }
  const auto& b = blocks[rng.below(std::size(blocks))];
  return b[0] + uint32_t(rng.below(b[1] - b[0] + 1));
}

// `n_strings` strings, each of 1-12 fragments or random code points, ended by a space or a
// newline.
inline std::string generate_text(uint64_t seed, int n_strings) {
  SplitMix64 rng{seed};
  std::string text;
  for (int i = 0; i < n_strings; ++i) {
    const size_t len = 1 + rng.below(12);
    for (size_t k = 0; k < len; ++k) {
      if (rng.below(5) == 0) {
        for (size_t r = 1 + rng.below(4); r > 0; --r) text += utf8(random_code_point(rng));
      } else {
        text += fragments()[rng.below(fragments().size())];
      }
    }
    text += rng.below(4) == 0 ? " " : "\n";
  }
  return text;
}

}  // namespace qbench::test
