// SentencePiece-style BPE tokenizer, as llama.cpp implements it for `tokenizer.ggml.model` =
// "llama" (llm_tokenizer_spm), and the same vocabulary read from a llama2.c tokenizer.bin.
//
// Encoding: a space is prepended to the text (add_space_prefix), spaces become U+2581 "▁", the
// text is split into UTF-8 characters, and adjacent symbols are merged greedily, always merging
// the pair whose concatenation is the vocabulary entry with the highest score (leftmost pair on
// ties). A symbol left with no token is emitted as its bytes, each as the token "<0xNN>"
// (byte fallback), or as UNK when the vocabulary has no byte tokens. Special tokens in the text
// are not parsed: "<s>" in a text file is just characters, as in llama-perplexity.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qbench {

namespace gguf {
class File;
class Writer;
}  // namespace gguf

// Token types of the GGUF `tokenizer.ggml.token_type` array (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

class Tokenizer {
 public:
  Tokenizer() = default;
  // From GGUF metadata. Throws qbench::Error for a missing or malformed vocabulary or an
  // unsupported tokenizer model (only "llama" is implemented).
  static Tokenizer from_gguf(const gguf::File& file);
  // From llama2.c's tokenizer.bin (`max_token_length`, then per token: f32 score, i32 length,
  // bytes). Pieces there use ' ' for U+2581 and "\n<s>\n" / "\n</s>\n" for BOS/EOS; they are
  // normalised to the SentencePiece form that llama.cpp's converter writes to GGUF.
  static Tokenizer from_llama2c(const std::string& path);
  // Builds from parts (tests, and the default model's trainer).
  static Tokenizer from_pieces(std::vector<std::string> pieces, std::vector<float> scores,
                               std::vector<TokenType> types, int32_t bos, int32_t eos, int32_t unk);

  // A SentencePiece-style vocabulary with byte fallback: <unk>, <s>, </s>, the 256 tokens
  // "<0x00>".."<0xFF>", then `pieces` (normal tokens) with `scores` (empty: all 0).
  static Tokenizer byte_fallback(const std::vector<std::string>& pieces, std::vector<float> scores = {});

  // Writes the tokenizer.ggml.* keys that llama.cpp reads.
  void write_gguf(gguf::Writer& w) const;

  bool empty() const { return pieces_.empty(); }
  int32_t n_tokens() const { return int32_t(pieces_.size()); }
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  int32_t unk() const { return unk_; }
  bool add_bos() const { return add_bos_; }
  const std::string& piece(int32_t id) const { return pieces_.at(size_t(id)); }
  TokenType type(int32_t id) const { return types_.at(size_t(id)); }
  float score(int32_t id) const { return scores_.at(size_t(id)); }

  // Tokenizes `text`; prepends BOS when `add_bos` and the vocabulary asks for it.
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const;
  // Text of one token as it appears in output ("▁" -> ' ', "<0x0A>" -> '\n', control tokens -> "").
  std::string decode_token(int32_t id) const;
  std::string decode(const std::vector<int32_t>& ids) const;

 private:
  void build_index();
  int32_t find(std::string_view piece) const;

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<TokenType> types_;
  std::unordered_map<std::string, int32_t> index_;
  int32_t byte_tokens_[256] = {};
  bool has_byte_tokens_ = false;
  int32_t bos_ = 1, eos_ = 2, unk_ = 0;
  bool add_bos_ = true;
  bool add_eos_ = false;
  bool add_space_prefix_ = true;
};

}  // namespace qbench
