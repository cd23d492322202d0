// The two tokenizers of llama.cpp that qbench implements, behind one class:
//
// SentencePiece-style BPE (`tokenizer.ggml.model` = "llama", llama.cpp's llm_tokenizer_spm),
// also read from a llama2.c tokenizer.bin. Encoding: a space is prepended to the text (add_space_prefix), spaces become U+2581 "▁", the
// text is split into UTF-8 characters, and adjacent symbols are merged greedily, always merging
// the pair whose concatenation is the vocabulary entry with the highest score (leftmost pair on
// ties). A symbol left with no token is emitted as its bytes, each as the token "<0xNN>"
// (byte fallback), or as UNK when the vocabulary has no byte tokens. Special tokens in the text
// are not parsed: "<s>" in a text file is just characters, as in llama-perplexity.
//
// Byte-level BPE (`tokenizer.ggml.model` = "gpt2", llama.cpp's llm_tokenizer_bpe; also a
// Hugging Face tokenizer.json with a byte-level BPE model): the text is split into pre-tokens by
// the regexes of the pre-tokenizer named in `tokenizer.ggml.pre` (pre_tokenizer.h, PCRE2), each
// pre-token's bytes are mapped to GPT-2's printable code points (byte 0x20 -> U+0120 "Ġ", ...),
// and adjacent symbols are merged by merge rank (lowest first, leftmost on ties). A final symbol
// that is not a token is emitted as the tokens of its single bytes.
//
// Both: user-defined tokens are recognised in the text always, control and unknown tokens only
// with `parse_special` (llama.cpp's tokenizer_st_partition; longest token first).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qbench {

// U+2581 "▁", SentencePiece's word boundary (what a space becomes in its vocabularies).
inline constexpr std::string_view kSentencePieceSpace = "\xE2\x96\x81";

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

// Which algorithm a Tokenizer runs.
enum class TokenizerKind { Spm, Bpe };

struct BpeModel;  // merges, pre-tokenizer and byte tokens of a byte-level BPE vocabulary

// Hashes std::string and std::string_view alike, so maps keyed by std::string can be searched
// with a view (no allocation per lookup).
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

class Tokenizer {
 public:
  Tokenizer() = default;
  // From GGUF metadata ("llama" or "gpt2"). Throws qbench::Error for a missing or malformed
  // vocabulary (merges, token types, special token ids), an unknown pre-tokenizer or an
  // unsupported tokenizer model.
  static Tokenizer from_gguf(const gguf::File& file);
  // From a Hugging Face tokenizer.json with a BPE model (vocab, merges, added_tokens):
  // - byte-level (a ByteLevel pre-tokenizer step; Split (Isolated) / Digits / Sequence), or
  // - SentencePiece-style (Llama 2, TinyLlama, Mistral: `byte_fallback`, "<0xNN>" byte tokens,
  //   spaces escaped as "▁" by the normalizer Sequence[Prepend("▁"), Replace(" ", "▁")] or the
  //   pre-tokenizer Metaspace), read as TokenizerKind::Spm with scores derived from the merge
  //   ranks (hf_tokenizer.cc says why that reproduces llama.cpp).
  // BOS/EOS/PAD and add_bos/add_eos come from tokenizer_config.json beside the file when it is
  // there. Throws qbench::Error naming the file and the field for anything else.
  static Tokenizer from_hf_json(const std::string& path);
  // A tokenizer alone, without weights: a GGUF file (vocab-only or a whole model: only its
  // metadata is read), a Hugging Face tokenizer.json (name ending in .json), or else a llama2.c
  // tokenizer.bin.
  static Tokenizer from_file(const std::string& path);
  // Byte-level BPE from parts: `pieces` in GPT-2's byte-mapped form, `merges` as "left right"
  // in rank order, `pre` a name of pre_tokenizers(). Throws qbench::Error like from_gguf.
  static Tokenizer from_bpe(std::vector<std::string> pieces, std::vector<TokenType> types,
                            const std::vector<std::string>& merges, const std::string& pre,
                            int32_t bos, int32_t eos, const std::string& source = "BPE vocabulary");
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

  // Appends "[PAD<i>]" tokens of type Unused up to `count` (a model whose embedding has more
  // rows than its tokenizer has tokens), as llama.cpp's converter does. No-op when not fewer.
  void pad_to(int32_t count);

  // Writes the tokenizer.ggml.* keys that llama.cpp reads.
  void write_gguf(gguf::Writer& w) const;

  bool empty() const { return pieces_.empty(); }
  TokenizerKind kind() const { return kind_; }
  // The pre-tokenizer name of a BPE vocabulary (canonical name, or "custom" for a
  // tokenizer.json's own regexes); empty for SPM.
  const std::string& pre_tokenizer() const { return pre_name_; }
  int32_t n_tokens() const { return int32_t(pieces_.size()); }
  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  int32_t unk() const { return unk_; }
  bool add_bos() const { return add_bos_; }
  const std::string& piece(int32_t id) const { return pieces_.at(size_t(id)); }
  // The id of the token spelled `piece` (the lowest such id), or -1.
  int32_t token_id(std::string_view piece) const { return find(piece); }
  // SPM: whether a "▁" is put before the text (and after each special token), as llama.cpp's
  // tokenizer.ggml.add_space_prefix.
  bool add_space_prefix() const { return add_space_prefix_; }
  TokenType type(int32_t id) const { return types_.at(size_t(id)); }
  float score(int32_t id) const { return scores_.at(size_t(id)); }

  int32_t pad() const { return pad_; }
  // End of generation: EOS, or a control token llama.cpp treats as one (<|eot_id|>, <|im_end|>,
  // <end_of_turn>, <|endoftext|>, ...: an instruct model ends its turn with it).
  bool is_eog(int32_t id) const;
  bool add_eos() const { return add_eos_; }

  // Tokenizes `text`; prepends BOS (appends EOS) when `add_special` and the vocabulary asks for
  // it. `parse_special`: control tokens written in the text ("<|begin_of_text|>") become their
  // ids, as llama-tokenize does by default; off, they are plain text (llama-perplexity).
  // Invalid UTF-8 in BPE input is read as U+FFFD per bad byte, as llama.cpp does for bad lead
  // bytes, stray continuation bytes and truncated sequences (llama.cpp decodes overlong forms
  // and surrogates leniently instead; qbench replaces them: the one known difference).
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special = false) const;
  // Text of one token as it appears in output (SPM: "▁" -> ' ', "<0x0A>" -> '\n'; BPE: the
  // bytes behind the mapped code points; user-defined tokens as written; control tokens -> "").
  std::string decode_token(int32_t id) const;
  std::string decode(const std::vector<int32_t>& ids) const;

 private:
  friend std::string hf_tokenizer_json(const Tokenizer& tok);
  void build_index();
  int32_t find(std::string_view piece) const;
  void encode_spm(std::string_view text, bool prev_special, std::vector<int32_t>& out) const;
  void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;

  TokenizerKind kind_ = TokenizerKind::Spm;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<TokenType> types_;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> index_;
  std::vector<int32_t> special_ids_;  // control, user-defined and unknown tokens, longest first
  std::vector<int32_t> eog_ids_;      // end-of-generation tokens besides EOS, ascending
  // llama.cpp's RSTRIP attribute (set by model name for Phi-3): white space after the token in
  // the text is dropped when the token is recognised. Empty: no token has it.
  std::vector<uint8_t> rstrip_;
  std::shared_ptr<const BpeModel> bpe_;
  std::string pre_name_;
  int32_t pad_ = -1;
  int32_t byte_tokens_[256] = {};
  bool has_byte_tokens_ = false;
  int32_t bos_ = 1, eos_ = 2, unk_ = 0;
  bool add_bos_ = true;
  bool add_eos_ = false;
  bool add_space_prefix_ = true;
};

// Hugging Face files for a tokenizer (hf_tokenizer.cc), as JSON text; the caller writes them
// (write_file_atomic) as tokenizer.json and tokenizer_config.json side by side. from_hf_json
// reads the pair back to a tokenizer that encodes as `tok` does (SPM: pieces of equal score are
// ranked by id, as the converter ranks them; llama.cpp breaks such ties by position instead,
// which gave the same ids on every vocabulary tested).
// - SPM: the form of Llama 2's tokenizer.json (BPE with byte_fallback, normalizer
//   Sequence[Prepend("▁"), Replace(" ", "▁")] or Replace alone without add_space_prefix, decoder
//   Replace/ByteFallback/Fuse/Strip), merges generated from the pieces and scores as Hugging
//   Face's SentencePiece converter does.
// - Byte-level BPE: vocab, merges, added tokens (control and user-defined tokens), the
//   pre-tokenizer's regexes as Split steps of a Sequence ending in ByteLevel(use_regex false).
// Throws qbench::Error for a vocabulary that tokenizer.json cannot hold (a token that is not
// valid UTF-8, two tokens with one spelling, a NaN score).
std::string hf_tokenizer_json(const Tokenizer& tok);
// bos/eos/unk/pad tokens, add_bos_token/add_eos_token, and `chat_template` when not empty.
std::string hf_tokenizer_config_json(const Tokenizer& tok, std::string_view chat_template = {});

}  // namespace qbench
