// Tokenizer::from_hf_json: a Hugging Face tokenizer.json with a byte-level BPE model.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/tokenizer.h"

namespace qbench {
namespace {

using nlohmann::json;

// PCRE2 literal for a Split pattern given as {"String": ...}.
std::string quote_regex(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
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
      throw Error(path + ": model.type '" + type + "' is not supported (qbench reads byte-level BPE tokenizer.json files)");
    }
    if (model.value("byte_fallback", false)) {
      throw Error(path + ": model.byte_fallback is set (a SentencePiece-style BPE); only byte-level BPE is supported");
    }
    const json& normalizer = j.value("normalizer", json());
    if (!normalizer.is_null() && normalizer.value("type", "") != "NFC") {
      // NFC (Qwen2) is accepted and not applied, as llama.cpp does not apply it either.
      throw Error(path + ": normalizer '" + normalizer.value("type", "") + "' is not supported");
    }
    std::vector<std::string> patterns;
    bool byte_level = false;
    collect_pre_tokenizer(j.value("pre_tokenizer", json()), path + ": pre_tokenizer", patterns, byte_level);
    if (!byte_level) throw Error(path + ": pre_tokenizer has no ByteLevel step (not a byte-level BPE)");

    const json& vocab = model.at("vocab");
    if (!vocab.is_object() || vocab.empty()) throw Error(path + ": model.vocab is not a non-empty object");
    int64_t n = 0;
    for (const auto& [piece, id] : vocab.items()) n = std::max<int64_t>(n, id.get<int64_t>() + 1);
    const json& added = j.value("added_tokens", json::array());
    for (const json& a : added) n = std::max<int64_t>(n, a.at("id").get<int64_t>() + 1);
    if (n > (int64_t(1) << 24)) throw Error(path + ": token ids up to " + std::to_string(n - 1) + " (too large)");

    Tokenizer t;
    t.kind_ = TokenizerKind::Bpe;
    t.pieces_.assign(size_t(n), std::string());
    t.types_.assign(size_t(n), TokenType::Unused);
    for (int64_t i = 0; i < n; ++i) t.pieces_[size_t(i)] = "[PAD" + std::to_string(i) + "]";
    auto place = [&](int64_t id, const std::string& piece, TokenType ty, const char* what) {
      if (id < 0 || id >= n) throw Error(path + ": " + what + " '" + piece + "' has id " + std::to_string(id));
      t.pieces_[size_t(id)] = piece;
      t.types_[size_t(id)] = ty;
    };
    for (const auto& [piece, id] : vocab.items()) place(id.get<int64_t>(), piece, TokenType::Normal, "model.vocab token");
    for (const json& a : added) {
      place(a.at("id").get<int64_t>(), a.at("content").get<std::string>(),
            a.value("special", false) ? TokenType::Control : TokenType::UserDefined, "added token");
    }
    t.scores_.assign(size_t(n), 0.0f);

    std::vector<std::string> merges;
    const json& mj = model.at("merges");
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
    t.bpe_ = make_bpe_model(merges, nullptr, patterns, model.value("ignore_merges", false), path + ": model.merges");
    // The GGUF pre-tokenizer name llama.cpp's converter would write, when the regexes are those
    // of a known tokenizer; "custom" otherwise (then only qbench can run it).
    t.pre_name_ = "custom";
    const std::string hf_llama3 =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
        "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    const std::string hf_qwen2 =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
        "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    const bool ignore_merges = model.value("ignore_merges", false);
    if (patterns == std::vector<std::string>{hf_llama3} && ignore_merges) t.pre_name_ = "llama-bpe";
    if (patterns == std::vector<std::string>{hf_qwen2} && !ignore_merges) t.pre_name_ = "qwen2";
    if (patterns == std::vector<std::string>{kGpt2Pattern} && !ignore_merges) t.pre_name_ = "gpt-2";

    // BOS/EOS: tokenizer_config.json beside the file (bos_token, eos_token, add_bos_token,
    // add_eos_token) when it is there; else the post-processor's template (TemplateProcessing,
    // alone or in a Sequence) adds its first special token as BOS.
    t.bos_ = t.eos_ = t.unk_ = -1;
    t.add_bos_ = t.add_eos_ = false;
    t.add_space_prefix_ = false;
    t.build_index();
    auto token_of = [&](const json& v) -> int32_t {
      if (v.is_string()) return t.find(v.get<std::string>());
      if (v.is_object() && v.contains("content") && v.at("content").is_string()) {
        return t.find(v.at("content").get<std::string>());
      }
      return -1;
    };
    std::vector<json> posts;
    const json& post = j.value("post_processor", json());
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

}  // namespace qbench
