// Pre-tokenizer splitting with PCRE2 (UTF + UCP, JIT-compiled): the Unicode categories (\p{L},
// \p{N}, \p{P}, ...) come from PCRE2's tables, not from tables of our own.
//
// Semantics are those of llama.cpp's unicode_regex_split and of Hugging Face's Split
// pre-tokenizer with behavior "Isolated": the patterns are applied one after the other; each
// pattern splits every piece left by the previous one into its matches and the gaps between
// them (a gap is a piece of its own). A pattern sees only the piece it splits, so look-aheads
// and `$` stop at the piece's end.
//
// `\s` follows llama.cpp's and Oniguruma's white space (Unicode White_Space, which includes
// U+0085); PCRE2's UCP `\s` lacks U+0085, so patterns are rewritten to add it (`\s` ->
// `[\s\x{85}]`, `\S` -> `[^\s\x{85}]`, and `\x{85}` added inside classes that contain `\s`).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qbench {

class RegexSplitter {
 public:
  RegexSplitter() = default;
  // Compiles the patterns. Throws qbench::Error naming the pattern and PCRE2's message when one
  // does not compile.
  explicit RegexSplitter(const std::vector<std::string>& patterns);

  bool empty() const { return patterns_.empty(); }
  const std::vector<std::string>& patterns() const { return sources_; }

  // Replaces `pieces` by the pieces of `text` (views into it). `text` must be valid UTF-8.
  // An empty splitter returns the whole text as one piece.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

 private:
  struct Pattern;
  std::vector<std::shared_ptr<const Pattern>> patterns_;
  std::vector<std::string> sources_;
};

// The rewrite of `\s` described above (exposed for tests).
std::string widen_regex_whitespace(std::string_view pattern);

}  // namespace qbench
