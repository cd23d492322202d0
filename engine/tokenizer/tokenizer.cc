#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <queue>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/core/utf8.h"
#include "engine/io/gguf.h"

namespace qbench {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's word boundary

std::string escape_whitespace(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 4);
  for (char c : text) {
    if (c == ' ') {
      out += kSpace;
    } else {
      out += c;
    }
  }
  return out;
}

// Parses "<0xNN>" into NN; -1 otherwise.
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

}  // namespace

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
}

int32_t Tokenizer::find(std::string_view piece) const {
  auto it = index_.find(std::string(piece));
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

Tokenizer Tokenizer::from_gguf(const gguf::File& f) {
  const auto model = f.get_string("tokenizer.ggml.model");
  if (!model) throw Error(f.path() + ": no tokenizer (metadata key 'tokenizer.ggml.model' is missing)");
  if (*model != "llama") {
    throw Error(f.path() + ": tokenizer model '" + *model +
                "' is not supported (qbench implements the SentencePiece BPE 'llama' tokenizer)");
  }
  const gguf::Array& toks = f.require_array("tokenizer.ggml.tokens", gguf::ValueType::STRING);
  const size_t n = toks.items.size();
  if (n == 0) throw Error(f.path() + ": tokenizer.ggml.tokens is empty");
  Tokenizer t;
  t.pieces_.reserve(n);
  for (const auto& v : toks.items) t.pieces_.push_back(*v.as_string());
  t.scores_.assign(n, 0.0f);
  if (f.find("tokenizer.ggml.scores")) {
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
      t.types_[i] = (v >= 0 && v <= 6) ? TokenType(v) : TokenType::Undefined;
    }
  }
  auto id = [&](const char* key, int32_t dflt) -> int32_t {
    const auto v = f.get_int(key);
    if (!v) return dflt;
    if (*v < 0 || *v >= int64_t(n)) return -1;  // llama.cpp writes 0xFFFFFFFF for "none"
    return int32_t(*v);
  };
  t.bos_ = id("tokenizer.ggml.bos_token_id", 1);
  t.eos_ = id("tokenizer.ggml.eos_token_id", 2);
  t.unk_ = id("tokenizer.ggml.unknown_token_id", 0);
  t.add_bos_ = f.get_bool("tokenizer.ggml.add_bos_token").value_or(true);
  t.add_eos_ = f.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  t.add_space_prefix_ = f.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
  if (t.add_bos_ && t.bos_ < 0) throw Error(f.path() + ": tokenizer adds BOS but has no valid bos_token_id");
  t.build_index();
  return t;
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
        if (c == ' ') out += kSpace; else out += c;
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
  w.set("tokenizer.ggml.model", gguf::Value::str("llama"));
  w.set("tokenizer.ggml.tokens", gguf::Value::array(gguf::ValueType::STRING, std::move(toks)));
  w.set("tokenizer.ggml.scores", gguf::Value::array(gguf::ValueType::FLOAT32, std::move(scores)));
  w.set("tokenizer.ggml.token_type", gguf::Value::array(gguf::ValueType::INT32, std::move(types)));
  w.set("tokenizer.ggml.bos_token_id", gguf::Value::u32(uint32_t(bos_)));
  w.set("tokenizer.ggml.eos_token_id", gguf::Value::u32(uint32_t(eos_)));
  w.set("tokenizer.ggml.unknown_token_id", gguf::Value::u32(uint32_t(unk_)));
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

}  // namespace

std::vector<int32_t> Tokenizer::encode(std::string_view raw, bool add_bos) const {
  QB_ASSERT(!pieces_.empty());
  std::vector<int32_t> out;
  if (add_bos && add_bos_ && bos_ >= 0) out.push_back(bos_);
  if (raw.empty()) return out;

  // Split the text on user-defined tokens (llama.cpp partitions on them even when special
  // tokens are not parsed); control and unknown tokens are left as plain text.
  struct Fragment {
    std::string_view text;
    int32_t token;  // >= 0: a user-defined token
  };
  std::vector<Fragment> fragments{{raw, -1}};
  for (int32_t id = 0; id < n_tokens(); ++id) {
    if (types_[size_t(id)] != TokenType::UserDefined || pieces_[size_t(id)].empty()) continue;
    const std::string& tok = pieces_[size_t(id)];
    std::vector<Fragment> next;
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
      }
      if (!rest.empty()) next.push_back({rest, -1});
    }
    fragments = std::move(next);
  }

  bool prev_special = true;
  std::vector<Symbol> symbols;
  for (const Fragment& frag : fragments) {
    if (frag.token >= 0) {
      out.push_back(frag.token);
      prev_special = true;
      continue;
    }
    std::string text = (add_space_prefix_ && prev_special) ? std::string(kSpace) : std::string();
    text += escape_whitespace(frag.text);
    prev_special = false;

    symbols.clear();
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
      Symbol& l = symbols[size_t(b.left)];
      Symbol& r = symbols[size_t(b.right)];
      if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;  // stale
      l.n += r.n;
      r.n = 0;
      l.next = r.next;
      if (r.next >= 0) symbols[size_t(r.next)].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }
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
  if (add_bos && add_eos_ && eos_ >= 0) out.push_back(eos_);
  return out;
}

std::string Tokenizer::decode_token(int32_t id) const {
  if (id < 0 || id >= n_tokens()) return {};
  const std::string& p = pieces_[size_t(id)];
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
    if (p.compare(i, kSpace.size(), kSpace) == 0) {
      out += ' ';
      i += kSpace.size();
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
