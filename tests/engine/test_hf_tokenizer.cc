// Hugging Face tokenizer.json files, SentencePiece-style.
//
// SentencePiece-style (Llama 2's form): there is no such file in the shared folder, so the test
// builds one from llama.cpp's Llama 2 vocabulary (ggml-vocab-llama-spm.gguf: pieces, scores,
// types) the way Hugging Face's converter does (transformers' LlamaConverter with
// SentencePieceExtractor, written here from its description): vocab piece -> id; merges: for
// each piece in falling order of score (ties: lower id first), every split into two pieces of the
// vocabulary at a character boundary, ordered by the ids of the parts; normalizer
// Sequence[Prepend("▁"), Replace(" ", "▁")] (or, newer files, pre-tokenizer Metaspace); control
// and unknown pieces as special added tokens. Read back, it must give llama.cpp's fixture ids and
// the GGUF's ids on generated text.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <sstream>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/io/gguf.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/engine/generated_text.h"
#include "tests/engine/tokenizer_cases.h"
#include "tests/test_util.h"

namespace qbench {
namespace {

using nlohmann::json;
using test::Case;
using test::read_cases;
using test::show;

const std::string kSpace = "\xE2\x96\x81";  // "▁"

// The SentencePiece vocabulary of a GGUF, read without the Tokenizer class.
struct SpmVocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<int> types;
};

SpmVocab read_spm_vocab(const std::string& gguf_path) {
  const auto f = gguf::File::open(gguf_path);
  SpmVocab v;
  for (const auto& x : f->require_array("tokenizer.ggml.tokens", gguf::ValueType::STRING).items) {
    v.pieces.push_back(*x.as_string());
  }
  for (const auto& x : f->require_array("tokenizer.ggml.scores", gguf::ValueType::FLOAT32).items) {
    v.scores.push_back(float(*x.as_float()));
  }
  for (const auto& x : f->require_array("tokenizer.ggml.token_type", gguf::ValueType::INT32).items) {
    v.types.push_back(int(*x.as_int()));
  }
  return v;
}

// The merges of Hugging Face's converter for `v`, as [left, right] pairs of pieces.
std::vector<std::pair<std::string, std::string>> converter_merges(const SpmVocab& v) {
  std::map<std::string, int> id;
  for (size_t i = 0; i < v.pieces.size(); ++i) id.emplace(v.pieces[i], int(i));
  std::vector<size_t> order(v.pieces.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v.scores[a] > v.scores[b]; });
  std::vector<std::pair<std::string, std::string>> merges;
  for (const size_t i : order) {
    const std::string& p = v.pieces[i];
    std::vector<std::pair<std::pair<int, int>, size_t>> splits;  // ((left id, right id), cut)
    for (size_t cut = 1; cut < p.size(); ++cut) {
      if ((uint8_t(p[cut]) & 0xC0) == 0x80) continue;  // inside a character
      const auto l = id.find(p.substr(0, cut)), r = id.find(p.substr(cut));
      if (l != id.end() && r != id.end()) splits.push_back({{l->second, r->second}, cut});
    }
    std::sort(splits.begin(), splits.end());
    for (const auto& s : splits) merges.emplace_back(p.substr(0, s.second), p.substr(s.second));
  }
  return merges;
}

// The tokenizer.json Hugging Face's converter writes for `v`: the legacy normalizer form, or
// (`metaspace`) the newer pre-tokenizer form.
json convert_like_hf(const SpmVocab& v, bool metaspace) {
  json vocab = json::object();
  json added = json::array();
  for (size_t i = 0; i < v.pieces.size(); ++i) {
    vocab[v.pieces[i]] = i;
    if (v.types[i] == 2 || v.types[i] == 3) {
      added.push_back({{"id", i}, {"content", v.pieces[i]}, {"single_word", false}, {"lstrip", false},
                       {"rstrip", false}, {"normalized", false}, {"special", true}});
    }
  }
  json merges = json::array();
  for (const auto& [l, r] : converter_merges(v)) merges.push_back(l + " " + r);
  json t;
  t["version"] = "1.0";
  t["added_tokens"] = added;
  const json replace = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}};
  if (metaspace) {
    t["normalizer"] = nullptr;
    t["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", kSpace}, {"prepend_scheme", "first"}, {"split", false}};
  } else {
    t["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", kSpace}}, replace}}};
    t["pre_tokenizer"] = nullptr;
  }
  t["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}};
  t["decoder"] = {{"type", "Sequence"},
                  {"decoders", {{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}},
                                {{"type", "ByteFallback"}}, {{"type", "Fuse"}},
                                {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  t["model"] = {{"type", "BPE"},         {"dropout", nullptr}, {"unk_token", "<unk>"},
                {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                {"fuse_unk", true},      {"byte_fallback", true}, {"vocab", vocab}, {"merges", merges}};
  return t;
}

// Writes tokenizer.json (and tokenizer_config.json when `config` is not empty) to a new folder;
// returns the tokenizer.json path.
std::string write_folder(const std::string& name, const std::string& tokenizer_json, const std::string& config = {}) {
  const std::string dir = test::temp_dir("hf-tok-" + name);
  write_file_atomic(dir + "/tokenizer.json", tokenizer_json);
  if (!config.empty()) write_file_atomic(dir + "/tokenizer_config.json", config);
  return dir + "/tokenizer.json";
}

const char* kLlamaConfig = R"({"add_bos_token": true, "add_eos_token": false,
  "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
  "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
  "unk_token": "<unk>", "legacy": true, "tokenizer_class": "LlamaTokenizer"})";

// Texts to compare two tokenizers on: the fixture strings, generated strings one by one (each
// starts a text, where the space prefix goes), the generated strings as one text, and white
// space, byte-token and special-token spellings.
std::vector<std::string> probe_texts(const std::vector<Case>& cases, uint64_t seed) {
  std::vector<std::string> texts;
  for (const Case& c : cases) texts.push_back(c.text);
  const std::string gen = test::generate_text(seed, 1500);
  std::istringstream lines(gen);
  for (std::string line; std::getline(lines, line);) texts.push_back(line);
  texts.push_back(gen);
  for (int k = 1; k <= 40; ++k) {
    texts.push_back(std::string(size_t(k), ' '));
    texts.push_back(std::string(size_t(k), ' ') + "x" + std::string(size_t(k % 7), ' ') + "Hello" + std::string(size_t(k), ' '));
  }
  for (const char* s : {"<0x41>", "<0x0A>B", "<s>", "</s>x</s>", "<unk>", "a<s>b", "\t\n \t", "▁", "▁▁ ▁", "\xC3\xA9t\xC3\xA9"}) {
    texts.push_back(s);
  }
  return texts;
}

// Compares two tokenizers on every text, with and without special tokens added and parsed;
// reports the first few differences.
void expect_same_ids(const Tokenizer& expected, const Tokenizer& got, const std::vector<std::string>& texts,
                     const std::string& name) {
  int differences = 0;
  for (const std::string& text : texts) {
    for (const bool special : {false, true}) {
      const auto want = expected.encode(text, special, special);
      const auto have = got.encode(text, special, special);
      if (want != have && ++differences <= 5) {
        ADD_FAILURE() << name << (special ? " (special)" : "") << ": '" << text.substr(0, 200) << "'\n  expected:" << show(want)
                      << "\n  got:     " << show(have);
      }
    }
  }
  EXPECT_EQ(differences, 0) << name << ": texts with other ids, of " << 2 * texts.size();
}

TEST(HfSpm, ConvertedLlamaVocabularyReproducesTheFixturesAndTheGguf) {
  const std::string base = "tokenizers/llama.cpp/ggml-vocab-llama-spm.gguf";
  QBENCH_SHARED_FILE(gguf, base);
  QBENCH_SHARED_FILE(inp, base + ".inp");
  QBENCH_SHARED_FILE(out, base + ".out");
  const std::vector<Case> cases = read_cases(inp, out);
  ASSERT_EQ(cases.size(), 46u);
  const SpmVocab v = read_spm_vocab(gguf);
  const Tokenizer from_gguf = Tokenizer::from_file(gguf);
  const std::vector<std::string> texts = probe_texts(cases, 12);
  for (const bool metaspace : {false, true}) {
    const std::string name = metaspace ? "metaspace" : "normalizer";
    const std::string path = write_folder("llama-" + name, convert_like_hf(v, metaspace).dump(), kLlamaConfig);
    const Tokenizer tok = Tokenizer::from_file(path);
    ASSERT_EQ(tok.kind(), TokenizerKind::Spm);
    ASSERT_EQ(tok.n_tokens(), 32000);
    EXPECT_EQ(tok.type(0), TokenType::Unknown);
    EXPECT_EQ(tok.type(1), TokenType::Control);
    EXPECT_EQ(tok.type(2), TokenType::Control);
    EXPECT_EQ(tok.type(3), TokenType::Byte);
    EXPECT_EQ(tok.type(258), TokenType::Byte);
    EXPECT_EQ(tok.type(259), TokenType::Normal);
    EXPECT_EQ(tok.unk(), 0);
    EXPECT_EQ(tok.bos(), 1);
    EXPECT_EQ(tok.eos(), 2);
    EXPECT_TRUE(tok.add_bos());
    EXPECT_FALSE(tok.add_eos());
    EXPECT_TRUE(tok.add_space_prefix());
    int matched = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
      const auto got = tok.encode(cases[i].text, false);
      EXPECT_EQ(show(got), show(cases[i].ids)) << name << " case " << i << ": '" << cases[i].text << "'";
      matched += got == cases[i].ids;
    }
    EXPECT_EQ(matched, 46) << name;
    expect_same_ids(from_gguf, tok, texts, name);
    EXPECT_EQ(tok.decode(tok.encode("Hello  world\n\xF0\x9F\x98\x80", false)), " Hello  world\n\xF0\x9F\x98\x80");
  }
}

// Scores come from merge ranks: the earlier merge wins, whatever the position. Hand-checked on
// a small vocabulary: "abc" is "ab" "c" when "a b" ranks first, "a" "bc" when "b c" does.
TEST(HfSpm, MergeRankDecidesAndPrefixFollowsTheFile) {
  auto file = [](const json& merges, const json& normalizer, const json& pre) {
    json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}, {kSpace, 3}, {"a", 4}, {"b", 5},
                  {"c", 6},     {"ab", 7},  {"bc", 8},   {kSpace + "a", 9}};
    return json{{"added_tokens", json::array()},
                {"normalizer", normalizer},
                {"pre_tokenizer", pre},
                {"model", {{"type", "BPE"}, {"unk_token", "<unk>"}, {"byte_fallback", true}, {"vocab", vocab}, {"merges", merges}}}}
        .dump();
  };
  const json replace = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}};
  const json prepend = {{"type", "Prepend"}, {"prepend", kSpace}};
  const json sequence = {{"type", "Sequence"}, {"normalizers", {prepend, replace}}};
  const Tokenizer ab = Tokenizer::from_file(write_folder("rank-ab", file({"a b", "b c", "▁ a"}, replace, nullptr)));
  EXPECT_FALSE(ab.add_space_prefix());
  EXPECT_EQ(ab.encode("abc", false), (std::vector<int32_t>{7, 6}));
  EXPECT_EQ(ab.encode("abc abc", false), (std::vector<int32_t>{7, 6, 3, 7, 6}));  // "▁ a" ranks after "a b"
  const Tokenizer bc = Tokenizer::from_file(write_folder("rank-bc", file({"▁ a", "b c", "a b"}, sequence, nullptr)));
  EXPECT_TRUE(bc.add_space_prefix());
  EXPECT_EQ(bc.encode("abc", false), (std::vector<int32_t>{9, 8}));
  EXPECT_EQ(bc.encode("abc abc", false), (std::vector<int32_t>{9, 8, 9, 8}));
  // Unknown characters: "<unk>" (no byte tokens in this vocabulary) once per byte, as llama.cpp.
  EXPECT_EQ(bc.encode("é", false), (std::vector<int32_t>{3, 0, 0}));
  const json never = {{"type", "Metaspace"}, {"replacement", kSpace}, {"prepend_scheme", "never"}, {"split", false}};
  const Tokenizer ms = Tokenizer::from_file(write_folder("rank-never", file(json::array({"a b"}), nullptr, never)));
  EXPECT_FALSE(ms.add_space_prefix());
  EXPECT_EQ(ms.encode("ab c", false), (std::vector<int32_t>{7, 3, 6}));
  // No BOS without a template or tokenizer_config.json.
  EXPECT_FALSE(ms.add_bos());
  EXPECT_EQ(ms.bos(), -1);
}

std::string error_of(const std::string& path) {
  try {
    Tokenizer::from_file(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(HfSpm, UnsupportedFormsAreOneLineErrorsNamingTheFileAndField) {
  const json replace = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}};
  auto file = [&](const std::function<void(json&)>& edit) {
    json t = {{"added_tokens", json::array()},
              {"normalizer", replace},
              {"pre_tokenizer", nullptr},
              {"model",
               {{"type", "BPE"},
                {"unk_token", "<unk>"},
                {"byte_fallback", true},
                {"vocab", {{"<unk>", 0}, {"a", 1}, {"b", 2}, {"ab", 3}}},
                {"merges", json::array({"a b"})}}}};
    edit(t);
    return t.dump();
  };
  struct Bad {
    const char* name;
    std::function<void(json&)> edit;
    std::vector<std::string> words;  // all in the message
  };
  const std::vector<Bad> bad = {
      {"lowercase", [](json& t) { t["normalizer"] = {{"type", "Lowercase"}}; }, {"normalizer", "'Lowercase'"}},
      {"nfkc-in-sequence",
       [&](json& t) { t["normalizer"] = {{"type", "Sequence"}, {"normalizers", {replace, {{"type", "NFKC"}}}}}; },
       {"normalizer.normalizers[1]", "'NFKC'"}},
      {"replace-other", [](json& t) { t["normalizer"]["content"] = "_"; }, {"normalizer", "Replace"}},
      {"prepend-other",
       [&](json& t) { t["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", "_"}}, replace}}}; },
       {"normalizer.normalizers[0]", "Prepend"}},
      {"whitespace", [](json& t) { t["pre_tokenizer"] = {{"type", "Whitespace"}}; }, {"pre_tokenizer", "'Whitespace'"}},
      {"metaspace-split",
       [](json& t) { t["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", kSpace}, {"add_prefix_space", true}}; },
       {"pre_tokenizer", "Metaspace", "split"}},
      {"metaspace-scheme",
       [](json& t) {
         t["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", kSpace}, {"prepend_scheme", "twice"}, {"split", false}};
       },
       {"pre_tokenizer", "prepend_scheme 'twice'"}},
      {"no-escape", [](json& t) { t["normalizer"] = nullptr; }, {"neither normalizer nor pre_tokenizer"}},
      {"merge-result", [](json& t) { t["model"]["merges"] = json::array({"b a"}); }, {"model.merges[0]", "'ba'"}},
      {"merge-part", [](json& t) { t["model"]["merges"] = json::array({"a c"}); }, {"model.merges[0]", "'c'"}},
      {"merge-form", [](json& t) { t["model"]["merges"] = json::array({"ab"}); }, {"model.merges[0]"}},
      {"unk", [](json& t) { t["model"]["unk_token"] = "<unknown>"; }, {"model.unk_token", "'<unknown>'"}},
      {"dropout", [](json& t) { t["model"]["dropout"] = 0.1; }, {"model.dropout"}},
      {"suffix", [](json& t) { t["model"]["end_of_word_suffix"] = "</w>"; }, {"model.end_of_word_suffix"}},
      {"unigram", [](json& t) { t["model"]["type"] = "Unigram"; }, {"model.type", "'Unigram'"}},
  };
  const std::string good = write_folder("spm-good", file([](json&) {}));
  EXPECT_EQ(Tokenizer::from_file(good).encode("ab", false), (std::vector<int32_t>{3}));
  for (const Bad& b : bad) {
    const std::string path = write_folder(std::string("spm-bad-") + b.name, file(b.edit));
    const std::string e = error_of(path);
    EXPECT_NE(e.find(path), std::string::npos) << b.name << ": " << e;
    for (const std::string& w : b.words) EXPECT_NE(e.find(w), std::string::npos) << b.name << ": " << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << b.name << ": one line: " << e;
  }
}

}  // namespace
}  // namespace qbench
