#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <queue>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/core/utf8.h"
#include "engine/io/gguf.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/regex_split.h"

namespace qbench {
namespace {

std::string escape_whitespace(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 4);
  for (char c : text) {
    if (c == ' ') {
      out += kSentencePieceSpace;
    } else {
      out += c;
    }
  }
  return out;
}


// GPT-2's byte-to-unicode map: the printable bytes '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF
// stand for themselves, the other 68 bytes (controls, space, U+00AD, ...) take the code points
// U+0100, U+0101, ... in byte order. Each entry is the code point's UTF-8 form (1-2 bytes).
struct MappedByte {
  char utf8[2];
  uint8_t n;
};
constexpr std::array<MappedByte, 256> make_byte_map() {
  std::array<MappedByte, 256> t{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    const uint32_t cp = printable ? b : next++;
    if (cp < 0x80) {
      t[b] = {{char(cp), 0}, 1};
    } else {
      t[b] = {{char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))}, 2};
    }
  }
  return t;
}
constexpr std::array<MappedByte, 256> kByteMap = make_byte_map();
// The inverse: code point (all are below U+0144) -> byte, -1 for code points no byte maps to.
constexpr uint32_t kMappedLimit = 0x144;
constexpr std::array<int16_t, kMappedLimit> make_byte_unmap() {
  std::array<int16_t, kMappedLimit> t{};
  for (auto& v : t) v = -1;
  for (uint32_t b = 0; b < 256; ++b) {
    const MappedByte& m = kByteMap[b];
    const uint32_t cp = m.n == 1 ? uint8_t(m.utf8[0]) : ((uint8_t(m.utf8[0]) & 0x1F) << 6) | (uint8_t(m.utf8[1]) & 0x3F);
    t[cp] = int16_t(b);
  }
  return t;
}
constexpr std::array<int16_t, kMappedLimit> kByteUnmap = make_byte_unmap();

// Valid UTF-8, with each byte of an invalid sequence replaced by U+FFFD (llama.cpp's
// unicode_cpts_from_utf8 does the same).
std::string replace_invalid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  while (!s.empty()) {
    const auto bad = find_invalid_utf8(s);
    if (!bad) {
      out += s;
      break;
    }
    out += s.substr(0, *bad);
    out += "\xEF\xBF\xBD";
    s.remove_prefix(*bad + 1);
  }
  return out;
}

}  // namespace

int parse_byte_piece(std::string_view p) {
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(p[3]), lo = hex(p[4]);
  return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

namespace {
// llama.cpp's end-of-generation token names (84f7129 also lists "</s>"): generation stops at any
// of them, as at EOS.
const std::vector<std::string_view>& eog_names() {
  static const std::vector<std::string_view> names = {
      "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>", "<|endoftext|>",
      "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>", "</s>"};
  return names;
}
}  // namespace

bool Tokenizer::is_eog(int32_t id) const {
  return id == eos_ || std::binary_search(eog_ids_.begin(), eog_ids_.end(), id);
}

void Tokenizer::pad_to(int32_t count) {
  if (count <= n_tokens()) return;
  for (int32_t i = n_tokens(); i < count; ++i) {
    pieces_.push_back("[PAD" + std::to_string(i) + "]");
    scores_.push_back(0.0f);
    types_.push_back(TokenType::Unused);
    if (!rstrip_.empty()) rstrip_.push_back(0);
  }
  build_index();
}

void Tokenizer::build_index() {
  index_.clear();
  index_.reserve(pieces_.size() * 2);
  has_byte_tokens_ = false;
  std::fill(std::begin(byte_tokens_), std::end(byte_tokens_), -1);
  for (int32_t i = 0; i < int32_t(pieces_.size()); ++i) {
    index_.emplace(pieces_[size_t(i)], i);  // first occurrence wins, as in llama.cpp
    if (types_[size_t(i)] == TokenType::Byte) {
      const int b = parse_byte_piece(pieces_[size_t(i)]);
      if (b >= 0 && byte_tokens_[b] < 0) {
        byte_tokens_[b] = i;
        has_byte_tokens_ = true;
      }
    }
  }
  // llama.cpp's cache_special_tokens: tried longest first (ties: lower id first).
  special_ids_.clear();
  for (int32_t i = 0; i < int32_t(pieces_.size()); ++i) {
    const TokenType t = types_[size_t(i)];
    if ((t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown) &&
        !pieces_[size_t(i)].empty()) {
      special_ids_.push_back(i);
    }
  }
  std::stable_sort(special_ids_.begin(), special_ids_.end(), [&](int32_t a, int32_t b) {
    return pieces_[size_t(a)].size() > pieces_[size_t(b)].size();
  });
  // End-of-generation tokens: control (or user-defined) tokens with one of llama.cpp's EOG names.
  eog_ids_.clear();
  for (int32_t i = 0; i < int32_t(pieces_.size()); ++i) {
    const TokenType t = types_[size_t(i)];
    if ((t == TokenType::Control || t == TokenType::UserDefined) &&
        std::find(eog_names().begin(), eog_names().end(), pieces_[size_t(i)]) != eog_names().end()) {
      eog_ids_.push_back(i);
    }
  }
}

int32_t Tokenizer::find(std::string_view piece) const {
  auto it = index_.find(piece);
  return it == index_.end() ? -1 : it->second;
}

Tokenizer Tokenizer::from_pieces(std::vector<std::string> pieces, std::vector<float> scores,
                                 std::vector<TokenType> types, int32_t bos, int32_t eos, int32_t unk) {
  QB_ASSERT(pieces.size() == scores.size() && pieces.size() == types.size());
  Tokenizer t;
  t.pieces_ = std::move(pieces);
  t.scores_ = std::move(scores);
  t.types_ = std::move(types);
  t.bos_ = bos;
  t.eos_ = eos;
  t.unk_ = unk;
  t.build_index();
  return t;
}

Tokenizer Tokenizer::byte_fallback(const std::vector<std::string>& extra, std::vector<float> extra_scores) {
  QB_ASSERT(extra_scores.empty() || extra_scores.size() == extra.size());
  std::vector<std::string> pieces = {"<unk>", "<s>", "</s>"};
  std::vector<TokenType> types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
  char buf[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    pieces.push_back(buf);
    types.push_back(TokenType::Byte);
  }
  std::vector<float> scores(pieces.size(), 0.0f);
  for (size_t i = 0; i < extra.size(); ++i) {
    pieces.push_back(extra[i]);
    types.push_back(TokenType::Normal);
    scores.push_back(extra_scores.empty() ? 0.0f : extra_scores[i]);
  }
  return from_pieces(std::move(pieces), std::move(scores), std::move(types), 1, 2, 0);
}

std::shared_ptr<BpeModel> make_bpe_model(const std::vector<std::string>& merges, const PreTokenizerInfo* pre,
                                         const std::vector<std::string>& patterns, bool ignore_merges,
                                         const std::string& source) {
  auto m = std::make_shared<BpeModel>();
  m->ranks.reserve(merges.size() * 2);
  m->merges = merges;
  for (size_t i = 0; i < merges.size(); ++i) {
    const std::string& e = merges[i];
    // llama.cpp splits at the first space after the first byte; a part never holds a raw space
    // (spaces are mapped to U+0120), so exactly one space must be there.
    const size_t sp = e.find(' ', 1);
    if (sp == std::string::npos || sp + 1 >= e.size() || e.find(' ', sp + 1) != std::string::npos) {
      throw Error(source + ": malformed merge " + std::to_string(i) + " '" + e +
                  "' (expected two tokens separated by one space)");
    }
    m->ranks.emplace(e, int32_t(i));  // a repeated merge keeps its first (lowest) rank
  }
  m->splitter = RegexSplitter(pre ? pre->patterns : patterns);
  m->ignore_merges = pre ? pre->ignore_merges : ignore_merges;
  return m;
}

Tokenizer Tokenizer::from_bpe(std::vector<std::string> pieces, std::vector<TokenType> types,
                              const std::vector<std::string>& merges, const std::string& pre,
                              int32_t bos, int32_t eos, const std::string& source) {
  QB_ASSERT(pieces.size() == types.size());
  if (pieces.empty()) throw Error(source + ": the vocabulary is empty");
  const PreTokenizerInfo& info = find_pre_tokenizer(pre);
  Tokenizer t;
  t.kind_ = TokenizerKind::Bpe;
  t.pieces_ = std::move(pieces);
  t.types_ = std::move(types);
  t.scores_.assign(t.pieces_.size(), 0.0f);
  t.bos_ = bos;
  t.eos_ = eos;
  t.unk_ = -1;
  t.add_bos_ = info.add_bos;
  t.add_space_prefix_ = false;
  t.pre_name_ = std::string(info.names.front());
  t.bpe_ = make_bpe_model(merges, &info, {}, false, source);
  t.build_index();
  return t;
}

namespace {

// llama.cpp's load-time corrections of token types by token text (llama_vocab::impl::load):
// converters have written end-of-turn and fill-in-the-middle tokens as user-defined or normal,
// so llama.cpp makes them control tokens (then they are not matched in text unless special
// tokens are parsed). Per role, the first token found takes the role, unless the GGUF names the
// role's id; every end-of-generation name is made control.
struct ControlRole {
  const char* id_key;  // GGUF key that names the role's token, or nullptr
  std::vector<std::string_view> names;
};
const std::vector<ControlRole>& control_roles() {
  static const std::vector<ControlRole> roles = {
      {"tokenizer.ggml.eot_token_id",
       {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
        "_<EOT>", "<｜end▁of▁sentence｜>", "<end_of_utterance>"}},
      {"tokenizer.ggml.eom_token_id", {"<|eom_id|>"}},
      {"tokenizer.ggml.fim_pre_token_id",
       {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
        "▁<PRE>", "<|code_prefix|>"}},
      {"tokenizer.ggml.fim_suf_token_id",
       {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
        "▁<SUF>", "<|code_suffix|>"}},
      {"tokenizer.ggml.fim_mid_token_id",
       {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
        "▁<MID>", "<|code_middle|>"}},
      {"tokenizer.ggml.fim_pad_token_id", {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"}},
      {"tokenizer.ggml.fim_rep_token_id", {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}},
      {"tokenizer.ggml.fim_sep_token_id", {"<|file_sep|>"}},
      // End of generation: every token of these names.
      {nullptr, eog_names()},
  };
  return roles;
}

}  // namespace

Tokenizer Tokenizer::from_gguf(const gguf::File& f) {
  const auto model = f.get_string("tokenizer.ggml.model");
  if (!model) throw Error(f.path() + ": no tokenizer (metadata key 'tokenizer.ggml.model' is missing)");
  if (*model != "llama" && *model != "gpt2") {
    throw Error(f.path() + ": tokenizer model '" + *model +
                "' is not supported (qbench implements 'llama' (SentencePiece BPE) and 'gpt2' (byte-level BPE))");
  }
  const bool bpe = *model == "gpt2";
  const gguf::Array& toks = f.require_array("tokenizer.ggml.tokens", gguf::ValueType::STRING);
  const size_t n = toks.items.size();
  if (n == 0) throw Error(f.path() + ": tokenizer.ggml.tokens is empty");
  if (n > size_t(INT32_MAX)) throw Error(f.path() + ": tokenizer.ggml.tokens has too many entries");
  Tokenizer t;
  t.kind_ = bpe ? TokenizerKind::Bpe : TokenizerKind::Spm;
  t.pieces_.reserve(n);
  for (const auto& v : toks.items) t.pieces_.push_back(*v.as_string());
  t.scores_.assign(n, 0.0f);
  if (!bpe && f.find("tokenizer.ggml.scores")) {
    const gguf::Array& sc = f.require_array("tokenizer.ggml.scores", gguf::ValueType::FLOAT32);
    if (sc.items.size() != n) {
      throw Error(f.path() + ": tokenizer.ggml.scores has " + std::to_string(sc.items.size()) +
                  " entries for " + std::to_string(n) + " tokens");
    }
    for (size_t i = 0; i < n; ++i) t.scores_[i] = float(*sc.items[i].as_float());
  }
  t.types_.assign(n, TokenType::Normal);
  if (f.find("tokenizer.ggml.token_type")) {
    const gguf::Array& ty = f.require_array("tokenizer.ggml.token_type", gguf::ValueType::INT32);
    if (ty.items.size() != n) {
      throw Error(f.path() + ": tokenizer.ggml.token_type has " + std::to_string(ty.items.size()) +
                  " entries for " + std::to_string(n) + " tokens");
    }
    for (size_t i = 0; i < n; ++i) {
      const int64_t v = *ty.items[i].as_int();
      if (v < 0 || v > 6) {
        throw Error(f.path() + ": tokenizer.ggml.token_type of token " + std::to_string(i) + " is " +
                    std::to_string(v) + " (known types are 0..6)");
      }
      t.types_[i] = TokenType(v);
    }
  }
  // llama.cpp writes 0xFFFFFFFF (or -1) for "no such token"; anything else must be an id.
  auto id = [&](const char* key, int32_t dflt) -> int32_t {
    const auto v = f.get_int(key);
    if (!v) return dflt;
    if (*v == -1 || *v == int64_t(0xFFFFFFFFu)) return -1;
    if (*v < 0 || *v >= int64_t(n)) {
      throw Error(f.path() + ": " + key + " is " + std::to_string(*v) + ", outside the vocabulary of " +
                  std::to_string(n) + " tokens");
    }
    return int32_t(*v);
  };
  t.bos_ = id("tokenizer.ggml.bos_token_id", bpe ? -1 : 1);
  t.eos_ = id("tokenizer.ggml.eos_token_id", bpe ? -1 : 2);
  t.unk_ = id("tokenizer.ggml.unknown_token_id", bpe ? -1 : 0);
  t.pad_ = id("tokenizer.ggml.padding_token_id", -1);
  const PreTokenizerInfo* pre = nullptr;
  if (bpe) {
    // No key: llama.cpp's "default" pre-tokenizer (it warns that the output may be poor).
    const std::string pre_name = f.get_string("tokenizer.ggml.pre").value_or("default");
    try {
      pre = &find_pre_tokenizer(pre_name);
    } catch (const Error& e) {
      throw Error(f.path() + ": tokenizer.ggml.pre: " + e.what());
    }
    if (!f.find("tokenizer.ggml.merges")) throw Error(f.path() + ": BPE tokenizer without tokenizer.ggml.merges");
    const gguf::Array& mg = f.require_array("tokenizer.ggml.merges", gguf::ValueType::STRING);
    std::vector<std::string> merges;
    merges.reserve(mg.items.size());
    for (const auto& v : mg.items) merges.push_back(*v.as_string());
    t.bpe_ = make_bpe_model(merges, pre, {}, false, f.path() + ": tokenizer.ggml.merges");
    t.pre_name_ = std::string(pre->names.front());
  }
  for (const ControlRole& role : control_roles()) {
    if (role.id_key != nullptr && f.find(role.id_key)) continue;
    for (int32_t i = 0; i < int32_t(n); ++i) {
      const std::string& p = t.pieces_[size_t(i)];
      if (std::find(role.names.begin(), role.names.end(), std::string_view(p)) == role.names.end()) continue;
      t.types_[size_t(i)] = TokenType::Control;
      if (role.id_key != nullptr) break;  // the role's first token only
    }
  }
  // gpt-oss: these stay user-defined (always rendered, always recognised).
  for (int32_t i = 0; i < int32_t(n); ++i) {
    const std::string& p = t.pieces_[size_t(i)];
    if (p == "<|channel|>" || p == "<|message|>" || p == "<|start|>" || p == "<|constrain|>") {
      t.types_[size_t(i)] = TokenType::UserDefined;
    }
  }
  t.add_bos_ = f.get_bool("tokenizer.ggml.add_bos_token").value_or(bpe ? pre->add_bos : true);
  t.add_eos_ = f.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  t.add_space_prefix_ = f.get_bool("tokenizer.ggml.add_space_prefix").value_or(!bpe);
  if (t.add_bos_ && t.bos_ < 0) throw Error(f.path() + ": tokenizer adds BOS but has no valid bos_token_id");
  if (t.add_eos_ && t.eos_ < 0) throw Error(f.path() + ": tokenizer adds EOS but has no valid eos_token_id");
  t.build_index();
  // Phi-3 (general.name, case-insensitive): special tokens and "</s>" swallow the white space
  // after them, except <unk>, <s> and <|endoftext|>.
  std::string name = f.get_string("general.name").value_or("");
  for (char& c : name) c = char(std::tolower(uint8_t(c)));
  if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
    t.rstrip_.assign(n, 0);
    for (int32_t id : t.special_ids_) t.rstrip_[size_t(id)] = 1;
    for (const char* p : {"</s>"}) {
      if (const int32_t id = t.find(p); id >= 0) t.rstrip_[size_t(id)] = 1;
    }
    for (const char* p : {"<unk>", "<s>", "<|endoftext|>"}) {
      if (const int32_t id = t.find(p); id >= 0) t.rstrip_[size_t(id)] = 0;
    }
  }
  return t;
}

Tokenizer Tokenizer::from_file(const std::string& path) {
  const bool json = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  if (json) return from_hf_json(path);
  bool is_gguf = path.size() >= 5 && path.compare(path.size() - 5, 5, ".gguf") == 0;
  if (!is_gguf) {
    const MappedFile map(path);
    is_gguf = map.size() >= 4 && std::memcmp(map.data(), "GGUF", 4) == 0;
  }
  if (is_gguf) return from_gguf(*gguf::File::open(path));
  return from_llama2c(path);
}

Tokenizer Tokenizer::from_llama2c(const std::string& path) {
  const MappedFile map(path);
  const uint8_t* p = map.data();
  const size_t size = map.size();
  size_t pos = 0;
  auto need = [&](size_t k, const char* what) {
    if (k > size - pos) {
      throw Error(path + ": truncated llama2.c tokenizer: " + what + " at byte " + std::to_string(pos));
    }
  };
  need(4, "max_token_length");
  int32_t max_len;
  std::memcpy(&max_len, p, 4);
  pos = 4;
  if (max_len <= 0 || max_len > 4096) {
    throw Error(path + ": not a llama2.c tokenizer (max_token_length " + std::to_string(max_len) + ")");
  }
  std::vector<std::string> pieces;
  std::vector<float> scores;
  while (pos < size) {
    need(8, "token header");
    float score;
    int32_t len;
    std::memcpy(&score, p + pos, 4);
    std::memcpy(&len, p + pos + 4, 4);
    pos += 8;
    if (len < 0 || len > max_len) {
      throw Error(path + ": token " + std::to_string(pieces.size()) + " has length " +
                  std::to_string(len) + " (max_token_length " + std::to_string(max_len) + ")");
    }
    need(size_t(len), "token text");
    pieces.emplace_back(reinterpret_cast<const char*>(p + pos), size_t(len));
    scores.push_back(score);
    pos += size_t(len);
  }
  if (pieces.size() < 3) throw Error(path + ": llama2.c tokenizer has only " + std::to_string(pieces.size()) + " tokens");
  // Undo llama2.c's export (tokenizer.py): it wrote "▁" as ' ' and BOS/EOS as "\n<s>\n" /
  // "\n</s>\n"; ids 0/1/2 are unk/bos/eos as in SentencePiece's Llama models.
  std::vector<TokenType> types(pieces.size(), TokenType::Normal);
  for (size_t i = 0; i < pieces.size(); ++i) {
    std::string& s = pieces[i];
    if (i == 0) {
      types[i] = TokenType::Unknown;
    } else if (i == 1 || i == 2) {
      types[i] = TokenType::Control;
      s = i == 1 ? "<s>" : "</s>";
    } else if (parse_byte_piece(s) >= 0) {
      types[i] = TokenType::Byte;
    } else {
      std::string out;
      for (char c : s) {
        if (c == ' ') out += kSentencePieceSpace; else out += c;
      }
      s = std::move(out);
    }
  }
  return from_pieces(std::move(pieces), std::move(scores), std::move(types), 1, 2, 0);
}

void Tokenizer::write_gguf(gguf::Writer& w) const {
  std::vector<gguf::Value> toks, scores, types;
  for (size_t i = 0; i < pieces_.size(); ++i) {
    toks.push_back(gguf::Value::str(pieces_[i]));
    scores.push_back(gguf::Value::f32(scores_[i]));
    types.push_back(gguf::Value::i32(int32_t(types_[i])));
  }
  const bool bpe = kind_ == TokenizerKind::Bpe;
  w.set("tokenizer.ggml.model", gguf::Value::str(bpe ? "gpt2" : "llama"));
  if (bpe) w.set("tokenizer.ggml.pre", gguf::Value::str(pre_name_));
  w.set("tokenizer.ggml.tokens", gguf::Value::array(gguf::ValueType::STRING, std::move(toks)));
  if (!bpe) w.set("tokenizer.ggml.scores", gguf::Value::array(gguf::ValueType::FLOAT32, std::move(scores)));
  w.set("tokenizer.ggml.token_type", gguf::Value::array(gguf::ValueType::INT32, std::move(types)));
  if (bpe) {
    std::vector<gguf::Value> merges;
    merges.reserve(bpe_->merges.size());
    for (const std::string& m : bpe_->merges) merges.push_back(gguf::Value::str(m));
    w.set("tokenizer.ggml.merges", gguf::Value::array(gguf::ValueType::STRING, std::move(merges)));
  }
  w.set("tokenizer.ggml.bos_token_id", gguf::Value::u32(uint32_t(bos_)));
  w.set("tokenizer.ggml.eos_token_id", gguf::Value::u32(uint32_t(eos_)));
  if (unk_ >= 0) w.set("tokenizer.ggml.unknown_token_id", gguf::Value::u32(uint32_t(unk_)));
  if (pad_ >= 0) w.set("tokenizer.ggml.padding_token_id", gguf::Value::u32(uint32_t(pad_)));
  w.set("tokenizer.ggml.add_bos_token", gguf::Value::boolean(add_bos_));
  w.set("tokenizer.ggml.add_eos_token", gguf::Value::boolean(add_eos_));
}

namespace {

// One run of the merge loop of llama.cpp's llm_tokenizer_spm_session over an escaped text.
struct Symbol {
  int32_t prev, next;
  uint32_t offset, n;
};
struct Bigram {
  int32_t left, right;
  float score;
  uint32_t size;
};
struct BigramOrder {  // max-heap: highest score first, then leftmost
  bool operator()(const Bigram& l, const Bigram& r) const {
    return l.score < r.score || (l.score == r.score && l.left > r.left);
  }
};

// The merge step both tokenizers share: joins symbol `right` into `left` unless the bigram is
// stale (either side merged elsewhere since it was queued: its size no longer matches), and
// re-queues the new neighbours through `try_add(left, right)`.
template <typename TryAdd>
void merge_bigram(std::vector<Symbol>& symbols, int32_t left, int32_t right, uint32_t size, TryAdd&& try_add) {
  Symbol& l = symbols[size_t(left)];
  Symbol& r = symbols[size_t(right)];
  if (l.n == 0 || r.n == 0 || l.n + r.n != size) return;  // stale
  l.n += r.n;
  r.n = 0;
  l.next = r.next;
  if (r.next >= 0) symbols[size_t(r.next)].prev = left;
  try_add(l.prev, left);
  try_add(left, l.next);
}

}  // namespace

std::vector<int32_t> Tokenizer::encode(std::string_view raw, bool add_special, bool parse_special) const {
  QB_ASSERT(!pieces_.empty());
  std::vector<int32_t> out;
  if (add_special && add_bos_ && bos_ >= 0) out.push_back(bos_);

  // Split the text on special tokens, longest first (llama.cpp's tokenizer_st_partition):
  // user-defined tokens always, control and unknown tokens only when parsing special tokens.
  struct Fragment {
    std::string_view text;
    int32_t token;  // >= 0: a special token
  };
  std::vector<Fragment> fragments;
  if (!raw.empty()) fragments.push_back({raw, -1});
  std::vector<Fragment> next;
  for (const int32_t id : special_ids_) {
    if (!parse_special && types_[size_t(id)] != TokenType::UserDefined) continue;
    const std::string& tok = pieces_[size_t(id)];
    bool found = false;
    for (const Fragment& f : fragments) {
      if (f.token < 0 && f.text.find(tok) != std::string_view::npos) {
        found = true;
        break;
      }
    }
    if (!found) continue;
    next.clear();
    for (const Fragment& f : fragments) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      std::string_view rest = f.text;
      size_t at;
      while ((at = rest.find(tok)) != std::string_view::npos) {
        if (at > 0) next.push_back({rest.substr(0, at), -1});
        next.push_back({{}, id});
        rest = rest.substr(at + tok.size());
        if (!rstrip_.empty() && rstrip_[size_t(id)]) {
          while (!rest.empty() && std::isspace(uint8_t(rest.front()))) rest.remove_prefix(1);
        }
      }
      if (!rest.empty()) next.push_back({rest, -1});
    }
    fragments.swap(next);
  }

  bool prev_special = true;
  for (const Fragment& frag : fragments) {
    if (frag.token >= 0) {
      out.push_back(frag.token);
      prev_special = true;
      continue;
    }
    if (kind_ == TokenizerKind::Bpe) {
      encode_bpe(frag.text, out);
    } else {
      encode_spm(frag.text, prev_special, out);
    }
    prev_special = false;
  }
  if (add_special && add_eos_ && eos_ >= 0) out.push_back(eos_);
  return out;
}

void Tokenizer::encode_spm(std::string_view frag, bool prev_special, std::vector<int32_t>& out) const {
  std::string text = (add_space_prefix_ && prev_special) ? std::string(kSentencePieceSpace) : std::string();
  text += escape_whitespace(frag);

  std::vector<Symbol> symbols;
  for (uint32_t offs = 0; offs < text.size();) {
    const uint32_t len = uint32_t(std::min<size_t>(utf8_len(uint8_t(text[offs])), text.size() - offs));
    const int32_t index = int32_t(symbols.size());
    symbols.push_back({index - 1, offs + len == text.size() ? -1 : index + 1, offs, len});
    offs += len;
  }
  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
  std::string scratch;
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[size_t(left)];
    const Symbol& r = symbols[size_t(right)];
    scratch.assign(text, l.offset, l.n + r.n);
    const auto it = index_.find(scratch);
    if (it == index_.end()) return;
    queue.push({left, right, scores_[size_t(it->second)], l.n + r.n});
  };
  for (int32_t i = 1; i < int32_t(symbols.size()); ++i) try_add(i - 1, i);
  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    merge_bigram(symbols, b.left, b.right, b.size, try_add);
  }
  if (symbols.empty()) return;
  for (int32_t i = 0; i != -1; i = symbols[size_t(i)].next) {
    const Symbol& s = symbols[size_t(i)];
    const std::string_view piece(text.data() + s.offset, s.n);
    const int32_t id = find(piece);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    for (char c : piece) {
      const int32_t bt = byte_tokens_[uint8_t(c)];
      out.push_back(has_byte_tokens_ && bt >= 0 ? bt : unk_);
    }
  }
}

namespace {
// A pair of adjacent BPE symbols and the rank of their merge (lower merges first).
struct RankedBigram {
  int32_t left, right;
  int32_t rank;
  uint32_t size;
};
struct RankedBigramOrder {  // min-heap on rank, then leftmost
  bool operator()(const RankedBigram& l, const RankedBigram& r) const {
    return l.rank > r.rank || (l.rank == r.rank && l.left > r.left);
  }
};
}  // namespace

void Tokenizer::encode_bpe(std::string_view frag, std::vector<int32_t>& out) const {
  std::string repaired;
  if (find_invalid_utf8(frag)) {
    repaired = replace_invalid_utf8(frag);
    frag = repaired;
  }
  std::vector<std::string_view> words;
  bpe_->splitter.split(frag, words);

  std::string word;  // the pre-token in mapped code points
  std::string scratch;
  std::vector<Symbol> symbols;
  std::vector<RankedBigram> heap;
  for (const std::string_view raw_word : words) {
    word.clear();
    for (const char c : raw_word) {
      const MappedByte& m = kByteMap[uint8_t(c)];
      word.append(m.utf8, m.n);
    }
    if (bpe_->ignore_merges) {
      const int32_t id = find(word);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
    }
    symbols.clear();
    for (uint32_t offs = 0; offs < word.size();) {
      const uint32_t len = uint32_t(std::min<size_t>(utf8_len(uint8_t(word[offs])), word.size() - offs));
      const int32_t index = int32_t(symbols.size());
      symbols.push_back({index - 1, offs + len == word.size() ? -1 : index + 1, offs, len});
      offs += len;
    }
    heap.clear();
    auto try_add = [&](int32_t left, int32_t right) {
      if (left < 0 || right < 0) return;
      const Symbol& l = symbols[size_t(left)];
      const Symbol& r = symbols[size_t(right)];
      scratch.assign(word, l.offset, l.n);
      scratch += ' ';
      scratch.append(word, r.offset, r.n);
      const auto it = bpe_->ranks.find(std::string_view(scratch));
      if (it == bpe_->ranks.end()) return;
      heap.push_back({left, right, it->second, l.n + r.n});
      std::push_heap(heap.begin(), heap.end(), RankedBigramOrder{});
    };
    for (int32_t i = 1; i < int32_t(symbols.size()); ++i) try_add(i - 1, i);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), RankedBigramOrder{});
      const RankedBigram b = heap.back();
      heap.pop_back();
      merge_bigram(symbols, b.left, b.right, b.size, try_add);
    }
    if (symbols.empty()) continue;
    for (int32_t i = 0; i != -1; i = symbols[size_t(i)].next) {
      const Symbol& s = symbols[size_t(i)];
      const std::string_view piece(word.data() + s.offset, s.n);
      const int32_t id = find(piece);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      // As llama.cpp: the symbol's bytes one by one, each only if it is a token by itself.
      for (const char c : piece) {
        const int32_t bt = find(std::string_view(&c, 1));
        if (bt >= 0) out.push_back(bt);
      }
    }
  }
}

std::string Tokenizer::decode_token(int32_t id) const {
  if (id < 0 || id >= n_tokens()) return {};
  const std::string& p = pieces_[size_t(id)];
  if (kind_ == TokenizerKind::Bpe) {
    switch (types_[size_t(id)]) {
      case TokenType::Normal:
      case TokenType::Undefined:
        break;
      case TokenType::UserDefined:
        return p;
      default:
        return {};
    }
    // Each mapped code point back to its byte; a code point outside the map stays as written.
    std::string out;
    out.reserve(p.size());
    for (size_t i = 0; i < p.size();) {
      const size_t len = std::min(utf8_len(uint8_t(p[i])), p.size() - i);
      uint32_t cp = 0x110000;
      if (len == 1) cp = uint8_t(p[i]);
      if (len == 2) cp = ((uint8_t(p[i]) & 0x1F) << 6) | (uint8_t(p[i + 1]) & 0x3F);
      if (cp < kMappedLimit && kByteUnmap[cp] >= 0) {
        out += char(kByteUnmap[cp]);
      } else {
        out.append(p, i, len);
      }
      i += len;
    }
    return out;
  }
  switch (types_[size_t(id)]) {
    case TokenType::Control:
    case TokenType::Unknown:
    case TokenType::Unused:
      return {};
    case TokenType::Byte: {
      const int b = parse_byte_piece(p);
      return b >= 0 ? std::string(1, char(b)) : std::string();
    }
    default:
      break;
  }
  std::string out;
  out.reserve(p.size());
  for (size_t i = 0; i < p.size();) {
    if (p.compare(i, kSentencePieceSpace.size(), kSentencePieceSpace) == 0) {
      out += ' ';
      i += kSentencePieceSpace.size();
    } else {
      out += p[i++];
    }
  }
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) out += decode_token(id);
  return out;
}

}  // namespace qbench
