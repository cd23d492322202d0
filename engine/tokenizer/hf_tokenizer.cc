// Hugging Face tokenizer.json files with a BPE model, in both forms qbench runs:
// byte-level (GPT-2, Llama 3, Qwen2) and SentencePiece-style (Llama 2, TinyLlama, Mistral).
// Tokenizer::from_hf_json reads them; hf_tokenizer_json / hf_tokenizer_config_json write them.
//
// SentencePiece-style files carry no scores, only merges in rank order. Hugging Face's converter
// (transformers' SentencePieceExtractor) lists, for each piece in falling order of its
// SentencePiece score, every split of the piece into two pieces of the vocabulary. llama.cpp's
// SPM loop compares only the scores of merged pieces, so a piece's score is taken as minus the
// rank of its first merge: merged pieces keep the order of their scores (ties become id order).
// Why they agree, in one line: the merges are ranked by the merged piece's score, not its id
// (Llama's white-space pieces "▁▁".. have ids from 259 but score -1e9 and must merge last;
// ranked by id, " Hello" would start with "▁▁"). Hugging Face's own BPE orders two splits of one
// piece by rank where llama.cpp takes the leftmost; qbench runs llama.cpp's loop either way.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/core/utf8.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/tokenizer.h"

namespace qbench {
namespace {

using nlohmann::json;
using ojson = nlohmann::ordered_json;

// The pre-tokenizers whose tokenizer.json writes the regex differently from llama.cpp's PCRE2
// form in pre_tokenizer.cc ("(?i:'s|...)" for the contractions): written and recognised as is.
struct HfPattern {
  const char* name;  // a name of pre_tokenizers()
  const char* pattern;
};
const HfPattern kHfPatterns[] = {
    {"llama-bpe",
     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    {"qwen2",
     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
};

// The GGUF pre-tokenizer name llama.cpp's converter would write for these regexes (a known
// tokenizer's, in its tokenizer.json form or in llama.cpp's); "custom" otherwise (then only
// qbench can run it).
std::string pre_tokenizer_name(const std::vector<std::string>& patterns, bool ignore_merges) {
  for (const HfPattern& h : kHfPatterns) {
    if (patterns == std::vector<std::string>{h.pattern} && find_pre_tokenizer(h.name).ignore_merges == ignore_merges) {
      return h.name;
    }
  }
  for (const PreTokenizerInfo& p : pre_tokenizers()) {
    if (p.patterns == patterns && p.ignore_merges == ignore_merges) return std::string(p.names.front());
  }
  return "custom";
}

// PCRE2 literal for a Split pattern given as {"String": ...}.
std::string quote_regex(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

bool has_step(const json& node, const std::string& type) {
  if (!node.is_object()) return false;
  if (node.value("type", "") == type) return true;
  if (node.contains("pretokenizers") && node.at("pretokenizers").is_array()) {
    for (const json& s : node.at("pretokenizers")) {
      if (has_step(s, type)) return true;
    }
  }
  return false;
}

// Appends the regexes of a pre_tokenizer node; sets `byte_level` when a ByteLevel step is seen.
void collect_pre_tokenizer(const json& node, const std::string& where, std::vector<std::string>& patterns,
                           bool& byte_level) {
  if (node.is_null()) return;
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    const json& list = node.at("pretokenizers");
    for (size_t i = 0; i < list.size(); ++i) {
      collect_pre_tokenizer(list[i], where + ".pretokenizers[" + std::to_string(i) + "]", patterns, byte_level);
    }
  } else if (type == "Split") {
    const json& pat = node.at("pattern");
    const std::string behavior = node.value("behavior", "");
    if (behavior != "Isolated" || node.value("invert", false)) {
      throw Error(where + ": Split with behavior '" + behavior + "'" + (node.value("invert", false) ? " inverted" : "") +
                  " is not supported (only Isolated, not inverted)");
    }
    if (pat.contains("Regex")) {
      patterns.push_back(pat.at("Regex").get<std::string>());
    } else if (pat.contains("String")) {
      patterns.push_back(quote_regex(pat.at("String").get<std::string>()));
    } else {
      throw Error(where + ": Split pattern is neither Regex nor String");
    }
  } else if (type == "ByteLevel") {
    if (node.value("add_prefix_space", false)) throw Error(where + ": ByteLevel with add_prefix_space is not supported");
    if (node.value("use_regex", true)) patterns.push_back(kGpt2Pattern);
    byte_level = true;
  } else if (type == "Digits") {
    patterns.push_back(node.value("individual_digits", false) ? "[0-9]" : "[0-9]+");
  } else {
    throw Error(where + ": pre-tokenizer type '" + type + "' is not supported (Sequence, Split, ByteLevel, Digits)");
  }
}

// The normalizer of a SentencePiece-style file: Prepend("▁") sets `prepend`, Replace(" ", "▁")
// sets `escape`; a Sequence of them is read in order.
void read_spm_normalizer(const json& node, const std::string& where, bool& prepend, bool& escape) {
  if (node.is_null()) return;
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    const json& list = node.at("normalizers");
    for (size_t i = 0; i < list.size(); ++i) {
      read_spm_normalizer(list[i], where + ".normalizers[" + std::to_string(i) + "]", prepend, escape);
    }
  } else if (type == "Prepend") {
    const std::string p = node.at("prepend").get<std::string>();
    if (p != kSentencePieceSpace) throw Error(where + ": Prepend of '" + p + "' is not supported (only '▁')");
    prepend = true;
  } else if (type == "Replace") {
    const json& pat = node.at("pattern");
    const std::string content = node.at("content").get<std::string>();
    if (!pat.contains("String") || pat.at("String") != " " || content != kSentencePieceSpace) {
      throw Error(where + ": Replace of " + pat.dump() + " by '" + content + "' is not supported (only ' ' by '▁')");
    }
    escape = true;
  } else {
    throw Error(where + ": normalizer type '" + type +
                "' is not supported in a SentencePiece-style tokenizer.json (Sequence, Prepend('▁'), Replace(' ', '▁'))");
  }
}

// The pre-tokenizer of a SentencePiece-style file: none, or Metaspace without splitting.
// prepend_scheme "first" and "always" both read as llama.cpp's add_space_prefix, which puts "▁"
// before the text and after every special token (llama.cpp has no "first").
void read_spm_pre_tokenizer(const json& node, const std::string& where, bool& prepend, bool& escape) {
  if (node.is_null()) return;
  const std::string type = node.value("type", "");
  if (type == "Sequence") {
    const json& list = node.at("pretokenizers");
    for (size_t i = 0; i < list.size(); ++i) {
      read_spm_pre_tokenizer(list[i], where + ".pretokenizers[" + std::to_string(i) + "]", prepend, escape);
    }
  } else if (type == "Metaspace") {
    const std::string r = node.value("replacement", std::string(kSentencePieceSpace));
    if (r != kSentencePieceSpace) throw Error(where + ": Metaspace replacement '" + r + "' is not supported (only '▁')");
    // Files from before "split" existed split at every "▁".
    if (node.value("split", true)) {
      throw Error(where + ": Metaspace with split (words cut at every '▁') is not supported: llama.cpp merges across them");
    }
    if (node.contains("prepend_scheme")) {
      const std::string scheme = node.at("prepend_scheme").get<std::string>();
      if (scheme != "first" && scheme != "always" && scheme != "never") {
        throw Error(where + ": Metaspace prepend_scheme '" + scheme + "' is not supported (first, always, never)");
      }
      prepend = prepend || scheme != "never";
    } else {
      prepend = prepend || node.value("add_prefix_space", true);
    }
    escape = true;
  } else {
    throw Error(where + ": pre-tokenizer type '" + type +
                "' is not supported in a SentencePiece-style tokenizer.json (Metaspace, or none)");
  }
}

// BPE options qbench does not run.
void check_bpe_options(const json& model, const std::string& path) {
  const json& dropout = model.value("dropout", json());
  if (!dropout.is_null() && !(dropout.is_number() && dropout.get<double>() == 0.0)) {
    throw Error(path + ": model.dropout is " + dropout.dump() + " (BPE dropout is not supported)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json& v = model.value(key, json());
    if (!v.is_null() && !(v.is_string() && v.get<std::string>().empty())) {
      throw Error(path + ": model." + key + " is " + v.dump() + " (not supported)");
    }
  }
}

// One merge as its two parts: "a b" (one space between two non-empty parts) or ["a", "b"].
std::pair<std::string, std::string> merge_parts(const json& m, size_t i, const std::string& path) {
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
    return {m[0].get<std::string>(), m[1].get<std::string>()};
  }
  if (m.is_string()) {
    const std::string s = m.get<std::string>();
    const size_t sp = s.find(' ', 1);
    if (sp != std::string::npos && sp + 1 < s.size() && s.find(' ', sp + 1) == std::string::npos) {
      return {s.substr(0, sp), s.substr(sp + 1)};
    }
  }
  throw Error(path + ": model.merges[" + std::to_string(i) + "] is neither \"a b\" nor [\"a\", \"b\"]");
}

}  // namespace

Tokenizer Tokenizer::from_hf_json(const std::string& path) {
  json j;
  try {
    j = json::parse(read_file(path));
  } catch (const json::exception& e) {
    throw Error(path + ": not a tokenizer.json: " + e.what());
  }
  try {
    if (!j.is_object() || !j.contains("model")) throw Error(path + ": no 'model' object (not a tokenizer.json)");
    const json& model = j.at("model");
    const std::string type = model.value("type", "");
    if (type != "BPE") {
      throw Error(path + ": model.type '" + type + "' is not supported (qbench reads BPE tokenizer.json files)");
    }
    check_bpe_options(model, path);
    const bool byte_fallback = model.value("byte_fallback", false);
    const bool ignore_merges = model.value("ignore_merges", false);
    const json pre_tokenizer = j.value("pre_tokenizer", json());
    const json normalizer = j.value("normalizer", json());

    Tokenizer t;
    std::vector<std::string> patterns;
    if (has_step(pre_tokenizer, "ByteLevel")) {
      if (byte_fallback) {
        throw Error(path + ": model.byte_fallback is set with a ByteLevel pre-tokenizer (a mix qbench does not run)");
      }
      if (!normalizer.is_null() && normalizer.value("type", "") != "NFC") {
        // NFC (Qwen2) is accepted and not applied, as llama.cpp does not apply it either.
        throw Error(path + ": normalizer '" + normalizer.value("type", "") + "' is not supported");
      }
      bool byte_level = false;
      collect_pre_tokenizer(pre_tokenizer, path + ": pre_tokenizer", patterns, byte_level);
      t.kind_ = TokenizerKind::Bpe;
      t.add_space_prefix_ = false;
    } else {
      bool prepend = false, escape = false;
      read_spm_normalizer(normalizer, path + ": normalizer", prepend, escape);
      read_spm_pre_tokenizer(pre_tokenizer, path + ": pre_tokenizer", prepend, escape);
      if (!escape) {
        throw Error(path + ": neither normalizer nor pre_tokenizer writes ' ' as '▁' (qbench reads byte-level BPE, "
                    "with a ByteLevel pre-tokenizer, and SentencePiece-style BPE)");
      }
      if (ignore_merges) throw Error(path + ": model.ignore_merges in a SentencePiece-style tokenizer.json is not supported");
      t.kind_ = TokenizerKind::Spm;
      t.add_space_prefix_ = prepend;
    }

    const json& vocab = model.at("vocab");
    if (!vocab.is_object() || vocab.empty()) throw Error(path + ": model.vocab is not a non-empty object");
    int64_t n = 0;
    for (const auto& [piece, id] : vocab.items()) n = std::max<int64_t>(n, id.get<int64_t>() + 1);
    const json added = j.value("added_tokens", json::array());
    for (const json& a : added) n = std::max<int64_t>(n, a.at("id").get<int64_t>() + 1);
    if (n > (int64_t(1) << 24)) throw Error(path + ": token ids up to " + std::to_string(n - 1) + " (too large)");

    t.pieces_.assign(size_t(n), std::string());
    t.types_.assign(size_t(n), TokenType::Unused);
    for (int64_t i = 0; i < n; ++i) t.pieces_[size_t(i)] = "[PAD" + std::to_string(i) + "]";
    auto place = [&](int64_t id, const std::string& piece, TokenType ty, const char* what) {
      if (id < 0 || id >= n) throw Error(path + ": " + what + " '" + piece + "' has id " + std::to_string(id));
      t.pieces_[size_t(id)] = piece;
      t.types_[size_t(id)] = ty;
    };
    for (const auto& [piece, id] : vocab.items()) {
      const bool byte = byte_fallback && t.kind_ == TokenizerKind::Spm && parse_byte_piece(piece) >= 0;
      place(id.get<int64_t>(), piece, byte ? TokenType::Byte : TokenType::Normal, "model.vocab token");
    }
    std::vector<uint8_t> rstrip(size_t(n), 0);
    bool any_rstrip = false;
    for (const json& a : added) {
      const int64_t id = a.at("id").get<int64_t>();
      place(id, a.at("content").get<std::string>(),
            a.value("special", false) ? TokenType::Control : TokenType::UserDefined, "added token");
      // Hugging Face's rstrip (white space after the token goes with it) is llama.cpp's RSTRIP.
      if (a.value("rstrip", false)) rstrip[size_t(id)] = 1, any_rstrip = true;
    }
    if (any_rstrip) t.rstrip_ = std::move(rstrip);
    t.scores_.assign(size_t(n), 0.0f);
    t.bos_ = t.eos_ = t.unk_ = -1;
    t.add_bos_ = t.add_eos_ = false;
    t.build_index();

    const json& mj = model.at("merges");
    if (!mj.is_array()) throw Error(path + ": model.merges is not an array");
    if (t.kind_ == TokenizerKind::Bpe) {
      std::vector<std::string> merges;
      merges.reserve(mj.size());
      for (size_t i = 0; i < mj.size(); ++i) {
        const json& m = mj[i];
        if (m.is_string()) {
          merges.push_back(m.get<std::string>());
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
          merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
        } else {
          throw Error(path + ": model.merges[" + std::to_string(i) + "] is neither \"a b\" nor [\"a\", \"b\"]");
        }
      }
      t.bpe_ = make_bpe_model(merges, nullptr, patterns, ignore_merges, path + ": model.merges");
      t.pre_name_ = pre_tokenizer_name(patterns, ignore_merges);
    } else {
      // Scores from merge ranks (see the top of this file). A piece no merge makes (a single
      // character, a byte or special token) is scored below every merge: llama.cpp's loop
      // looks it up only if two symbols spell it, which Hugging Face's BPE never merges.
      if (mj.size() >= (size_t(1) << 24)) throw Error(path + ": model.merges has more than 2^24 entries");
      const float no_merge = -float(mj.size());
      t.scores_.assign(size_t(n), no_merge);
      std::string joined;
      for (size_t i = 0; i < mj.size(); ++i) {
        const auto [left, right] = merge_parts(mj[i], i, path);
        for (const std::string* part : {&left, &right}) {
          if (t.find(*part) < 0) {
            throw Error(path + ": model.merges[" + std::to_string(i) + "]: '" + *part + "' is not a token");
          }
        }
        joined = left + right;
        const int32_t id = t.find(joined);
        if (id < 0) {
          throw Error(path + ": model.merges[" + std::to_string(i) + "] makes '" + joined + "', which is not a token");
        }
        if (t.scores_[size_t(id)] == no_merge) t.scores_[size_t(id)] = -float(i);
      }
      const json& unk = model.value("unk_token", json());
      if (unk.is_string()) {
        t.unk_ = t.find(unk.get<std::string>());
        if (t.unk_ < 0) throw Error(path + ": model.unk_token '" + unk.get<std::string>() + "' is not a token");
        t.types_[size_t(t.unk_)] = TokenType::Unknown;
      }
    }

    // BOS/EOS: tokenizer_config.json beside the file (bos_token, eos_token, pad_token,
    // unk_token, add_bos_token, add_eos_token) when it is there; else the post-processor's template
    // (TemplateProcessing, alone or in a Sequence) adds its first special token as BOS.
    auto token_of = [&](const json& v) -> int32_t {
      if (v.is_string()) return t.find(v.get<std::string>());
      if (v.is_object() && v.contains("content") && v.at("content").is_string()) {
        return t.find(v.at("content").get<std::string>());
      }
      return -1;
    };
    std::vector<json> posts;
    const json post = j.value("post_processor", json());
    if (post.is_object() && post.value("type", "") == "Sequence" && post.contains("processors")) {
      for (const json& p : post.at("processors")) posts.push_back(p);
    } else if (post.is_object()) {
      posts.push_back(post);
    }
    for (const json& p : posts) {
      if (p.value("type", "") != "TemplateProcessing" || !p.contains("single") || p.at("single").empty()) continue;
      const json& first = p.at("single")[0];
      if (first.contains("SpecialToken")) {
        t.bos_ = token_of(first.at("SpecialToken").at("id"));
        t.add_bos_ = t.bos_ >= 0;
      }
    }
    const std::filesystem::path config = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
    if (std::filesystem::is_regular_file(config)) {
      json c;
      try {
        c = json::parse(read_file(config.string()));
      } catch (const json::exception& e) {
        throw Error(config.string() + ": not JSON: " + e.what());
      }
      if (c.contains("bos_token")) t.bos_ = token_of(c.at("bos_token"));
      if (c.contains("eos_token")) t.eos_ = token_of(c.at("eos_token"));
      if (c.contains("pad_token")) t.pad_ = token_of(c.at("pad_token"));
      // Byte-level BPE never emits it; SentencePiece-style files name it in model.unk_token.
      if (c.contains("unk_token") && t.kind_ == TokenizerKind::Bpe) t.unk_ = token_of(c.at("unk_token"));
      if (c.contains("add_bos_token") && c.at("add_bos_token").is_boolean()) t.add_bos_ = c.at("add_bos_token").get<bool>();
      if (c.contains("add_eos_token") && c.at("add_eos_token").is_boolean()) t.add_eos_ = c.at("add_eos_token").get<bool>();
      if (t.add_bos_ && t.bos_ < 0) throw Error(config.string() + ": add_bos_token without a bos_token of the vocabulary");
      if (t.add_eos_ && t.eos_ < 0) throw Error(config.string() + ": add_eos_token without an eos_token of the vocabulary");
    }
    t.build_index();
    return t;
  } catch (const json::exception& e) {
    throw Error(path + ": malformed tokenizer.json: " + e.what());
  }
}

namespace {

ojson added_token(int32_t id, const std::string& content, bool special, bool rstrip) {
  return ojson{{"id", id},         {"content", content},  {"single_word", false}, {"lstrip", false},
               {"rstrip", rstrip}, {"normalized", false}, {"special", special}};
}

// Appends a key to an ordered_json object without its look-up for an existing key (linear in
// ordered_json, quadratic over a vocabulary); the caller ensures keys are distinct.
void append_unique(ojson& object, const std::string& key, ojson value) {
  auto& entries = object.get_ref<ojson::object_t&>();
  static_cast<std::vector<std::pair<const std::string, ojson>>&>(entries).emplace_back(key, std::move(value));
}

ojson replace_node(std::string_view from, std::string_view to) {
  return ojson{{"type", "Replace"}, {"pattern", {{"String", std::string(from)}}}, {"content", std::string(to)}};
}

// Hugging Face's TemplateProcessing for the BOS/EOS a tokenizer adds (null when it adds none).
ojson template_processing(const Tokenizer& tok) {
  const bool bos = tok.add_bos() && tok.bos() >= 0, eos = tok.add_eos() && tok.eos() >= 0;
  if (!bos && !eos) return nullptr;
  auto special = [&](int32_t id, int type_id) {
    return ojson{{"SpecialToken", {{"id", tok.piece(id)}, {"type_id", type_id}}}};
  };
  auto sequence = [](const char* name, int type_id) { return ojson{{"Sequence", {{"id", name}, {"type_id", type_id}}}}; };
  ojson single = ojson::array(), pair = ojson::array();
  for (int part = 0; part < 2; ++part) {
    ojson& list = part == 0 ? single : pair;
    for (int seq = 0; seq <= part; ++seq) {
      if (bos) list.push_back(special(tok.bos(), seq));
      list.push_back(sequence(seq == 0 ? "A" : "B", seq));
      if (eos) list.push_back(special(tok.eos(), seq));
    }
  }
  ojson specials = ojson::object();
  for (const int32_t id : {bos ? tok.bos() : -1, eos ? tok.eos() : -1}) {
    if (id < 0 || specials.contains(tok.piece(id))) continue;
    specials[tok.piece(id)] = {{"id", tok.piece(id)}, {"ids", {id}}, {"tokens", {tok.piece(id)}}};
  }
  return ojson{{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
}

// The merges Hugging Face's SentencePiece converter writes for these pieces and scores: for each
// piece in falling order of score (ties: lower id first), every split into two pieces of the
// vocabulary at a character boundary, ordered by the id of the left part, then the right.
std::vector<std::pair<int32_t, int32_t>> spm_merges(const Tokenizer& tok) {
  std::vector<int32_t> order(size_t(tok.n_tokens()));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return tok.score(a) > tok.score(b); });
  std::vector<std::pair<int32_t, int32_t>> merges, local;
  for (const int32_t id : order) {
    const std::string_view p = tok.piece(id);
    local.clear();
    for (size_t k = p.empty() ? 0 : utf8_len(uint8_t(p[0])); k < p.size(); k += utf8_len(uint8_t(p[k]))) {
      const int32_t left = tok.token_id(p.substr(0, k)), right = tok.token_id(p.substr(k));
      if (left >= 0 && right >= 0) local.emplace_back(left, right);
    }
    std::sort(local.begin(), local.end());
    merges.insert(merges.end(), local.begin(), local.end());
  }
  return merges;
}

}  // namespace

std::string hf_tokenizer_json(const Tokenizer& tok) {
  if (tok.empty()) throw Error("tokenizer.json: the tokenizer has no tokens");
  const int32_t n = tok.n_tokens();
  const bool spm = tok.kind() == TokenizerKind::Spm;
  for (int32_t i = 0; i < n; ++i) {
    const std::string& p = tok.piece(i);
    if (find_invalid_utf8(p)) {
      throw Error("tokenizer.json: token " + std::to_string(i) + " is not valid UTF-8 (JSON cannot hold it)");
    }
    if (tok.token_id(p) != i) {
      throw Error("tokenizer.json: tokens " + std::to_string(tok.token_id(p)) + " and " + std::to_string(i) +
                  " are both '" + p + "' (tokenizer.json maps a spelling to one id)");
    }
    if (std::isnan(tok.score(i))) throw Error("tokenizer.json: token " + std::to_string(i) + " has a NaN score");
  }

  // Control and unknown tokens are special added tokens, user-defined tokens plain added
  // tokens. The SentencePiece form keeps them in model.vocab too, as the converter does.
  ojson added = ojson::array();
  ojson vocab = ojson::object();
  bool byte_tokens = false;
  for (int32_t i = 0; i < n; ++i) {
    const TokenType ty = tok.type(i);
    const bool is_added = ty == TokenType::Control || ty == TokenType::Unknown || ty == TokenType::UserDefined;
    if (is_added) {
      const bool rstrip = !tok.rstrip_.empty() && tok.rstrip_[size_t(i)];
      added.push_back(added_token(i, tok.piece(i), ty != TokenType::UserDefined, rstrip));
    }
    if (spm || !is_added) append_unique(vocab, tok.piece(i), i);
    byte_tokens = byte_tokens || (ty == TokenType::Byte && parse_byte_piece(tok.piece(i)) >= 0);
  }

  ojson model = ojson::object();
  model["type"] = "BPE";
  model["dropout"] = nullptr;
  ojson merges = ojson::array();
  if (spm) {
    model["unk_token"] = tok.unk() >= 0 ? ojson(tok.piece(tok.unk())) : ojson(nullptr);
    model["continuing_subword_prefix"] = nullptr;
    model["end_of_word_suffix"] = nullptr;
    model["fuse_unk"] = true;
    model["byte_fallback"] = byte_tokens;
    model["ignore_merges"] = false;
    const auto pairs = spm_merges(tok);
    // "a b" as Llama 2's file has them, unless a part holds a space: then ["a", "b"] (newer form).
    const bool as_arrays = std::any_of(pairs.begin(), pairs.end(), [&](const auto& m) {
      return tok.piece(m.first).find(' ') != std::string::npos || tok.piece(m.second).find(' ') != std::string::npos;
    });
    for (const auto& [l, r] : pairs) {
      if (as_arrays) {
        merges.push_back(ojson::array({tok.piece(l), tok.piece(r)}));
      } else {
        merges.push_back(tok.piece(l) + " " + tok.piece(r));
      }
    }
  } else {
    model["unk_token"] = nullptr;
    model["continuing_subword_prefix"] = "";
    model["end_of_word_suffix"] = "";
    model["fuse_unk"] = false;
    model["byte_fallback"] = false;
    model["ignore_merges"] = tok.bpe_->ignore_merges;
    for (const std::string& m : tok.bpe_->merges) merges.push_back(m);
  }
  model["vocab"] = std::move(vocab);
  model["merges"] = std::move(merges);

  ojson normalizer = nullptr, pre_tokenizer = nullptr, decoder;
  if (spm) {
    // Prepend applies to every stretch of text between added tokens, as llama.cpp puts its
    // space prefix after every special token.
    normalizer = tok.add_space_prefix()
                     ? ojson{{"type", "Sequence"},
                             {"normalizers", {{{"type", "Prepend"}, {"prepend", std::string(kSentencePieceSpace)}},
                                              replace_node(" ", kSentencePieceSpace)}}}
                     : replace_node(" ", kSentencePieceSpace);
    decoder = ojson{{"type", "Sequence"},
                    {"decoders", {replace_node(kSentencePieceSpace, " "), {{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
    if (tok.add_space_prefix()) {
      decoder["decoders"].push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    }
  } else {
    std::vector<std::string> patterns = tok.bpe_->splitter.patterns();
    for (const HfPattern& h : kHfPatterns) {
      if (tok.pre_tokenizer() == h.name) patterns = {h.pattern};
    }
    ojson steps = ojson::array();
    for (const std::string& p : patterns) {
      steps.push_back({{"type", "Split"}, {"pattern", {{"Regex", p}}}, {"behavior", "Isolated"}, {"invert", false}});
    }
    steps.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}});
    pre_tokenizer = ojson{{"type", "Sequence"}, {"pretokenizers", std::move(steps)}};
    decoder = ojson{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  }

  ojson out = ojson::object();
  out["version"] = "1.0";
  out["truncation"] = nullptr;
  out["padding"] = nullptr;
  out["added_tokens"] = std::move(added);
  out["normalizer"] = std::move(normalizer);
  out["pre_tokenizer"] = std::move(pre_tokenizer);
  out["post_processor"] = template_processing(tok);
  out["decoder"] = std::move(decoder);
  out["model"] = std::move(model);
  return out.dump(2) + "\n";
}

std::string hf_tokenizer_config_json(const Tokenizer& tok, std::string_view chat_template) {
  if (find_invalid_utf8(chat_template)) throw Error("tokenizer_config.json: the chat template is not valid UTF-8");
  auto token = [&](int32_t id) { return id >= 0 ? ojson(tok.piece(id)) : ojson(nullptr); };
  ojson c = ojson::object();
  c["add_bos_token"] = tok.add_bos();
  c["add_eos_token"] = tok.add_eos();
  c["bos_token"] = token(tok.bos());
  c["eos_token"] = token(tok.eos());
  c["unk_token"] = token(tok.unk());
  c["pad_token"] = token(tok.pad());
  c["clean_up_tokenization_spaces"] = false;
  c["tokenizer_class"] = tok.kind() == TokenizerKind::Spm ? "LlamaTokenizerFast" : "PreTrainedTokenizerFast";
  if (!chat_template.empty()) c["chat_template"] = std::string(chat_template);
  return c.dump(2) + "\n";
}

}  // namespace qbench
