// Hugging Face tokenizer.json files of both kinds, read and written.
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
//
// Writing (hf_tokenizer_json): GGUF vocabularies -> tokenizer.json -> from_hf_json, and
// tokenizer.json -> tokenizer.json, must encode as the source does.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <sstream>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/io/gguf.h"
#include "engine/tokenizer/pre_tokenizer.h"
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
using test::tokenizer_error_of;

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

// Large texts compared without gtest's line diff (quadratic in memory on megabytes of JSON):
// the first differing line is reported.
void expect_same_text(const std::string& got, const std::string& expected, const std::string& what) {
  if (got == expected) return;
  size_t i = 0;
  while (i < got.size() && i < expected.size() && got[i] == expected[i]) ++i;
  const size_t line = expected.rfind('\n', i == 0 ? 0 : i - 1);
  const size_t from = line == std::string::npos ? 0 : line + 1;
  ADD_FAILURE() << what << " differs at byte " << i << ":\n  got:      " << got.substr(from, std::min<size_t>(200, got.size() - from))
                << "\n  expected: " << expected.substr(from, 200);
}

// Generation ends at EOS and at the end-of-turn tokens instruct models emit (llama.cpp's EOG
// set), never at other control tokens.
TEST(HfTokenizer, EndOfGenerationTokens) {
  QBENCH_SHARED_FILE(llama3, "tokenizers/hf/llama3/tokenizer.json");
  QBENCH_SHARED_FILE(qwen2, "tokenizers/hf/qwen2/tokenizer.json");
  const Tokenizer l = Tokenizer::from_file(llama3), q = Tokenizer::from_file(qwen2);
  EXPECT_TRUE(l.is_eog(l.token_id("<|eot_id|>")));
  EXPECT_TRUE(l.is_eog(l.token_id("<|end_of_text|>")));
  EXPECT_FALSE(l.is_eog(l.token_id("<|start_header_id|>")));
  EXPECT_FALSE(l.is_eog(l.token_id("<|begin_of_text|>")));
  EXPECT_TRUE(q.is_eog(q.token_id("<|im_end|>")));
  EXPECT_TRUE(q.is_eog(q.token_id("<|endoftext|>")));
  EXPECT_FALSE(q.is_eog(q.token_id("<|im_start|>")));
  EXPECT_FALSE(q.is_eog(q.token_id("hello")));
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
    const std::string e = tokenizer_error_of(path);
    EXPECT_NE(e.find(path), std::string::npos) << b.name << ": " << e;
    for (const std::string& w : b.words) EXPECT_NE(e.find(w), std::string::npos) << b.name << ": " << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << b.name << ": one line: " << e;
  }
}

// The writer's SentencePiece merges are the converter's, merge for merge.
TEST(HfWrite, SpmMergesAreTheConverters) {
  QBENCH_SHARED_FILE(gguf, "tokenizers/llama.cpp/ggml-vocab-llama-spm.gguf");
  const SpmVocab v = read_spm_vocab(gguf);
  const json written = json::parse(hf_tokenizer_json(Tokenizer::from_file(gguf)));
  const json expected = convert_like_hf(v, false);
  const json& got = written.at("model").at("merges");
  const json& want = expected.at("model").at("merges");
  EXPECT_EQ(got.size(), want.size());
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    if (got[i] != want[i]) {
      ADD_FAILURE() << "merge " << i << " is " << got[i] << ", the converter's is " << want[i];
      break;
    }
  }
  EXPECT_TRUE(written.at("model").at("vocab") == expected.at("model").at("vocab"));
  EXPECT_EQ(written.at("normalizer"), expected.at("normalizer"));
  EXPECT_EQ(written.at("decoder"), expected.at("decoder"));
  EXPECT_EQ(written.at("post_processor").at("single"), expected.at("post_processor").at("single"));
  EXPECT_GT(written.at("model").at("merges").size(), 60000u);
}

// A GGUF vocabulary written as tokenizer.json + tokenizer_config.json reads back to a tokenizer
// with the fixture ids and the GGUF's ids everywhere; writing that again gives the same files.
class GgufToHf : public ::testing::TestWithParam<const char*> {};

TEST_P(GgufToHf, ReadsBackToTheSameIds) {
  const std::string base = std::string("tokenizers/llama.cpp/ggml-vocab-") + GetParam() + ".gguf";
  QBENCH_SHARED_FILE(gguf, base);
  QBENCH_SHARED_FILE(inp, base + ".inp");
  QBENCH_SHARED_FILE(out, base + ".out");
  const std::vector<Case> cases = read_cases(inp, out);
  const Tokenizer src = Tokenizer::from_file(gguf);
  const std::string text = hf_tokenizer_json(src), config = hf_tokenizer_config_json(src);
  const Tokenizer back = Tokenizer::from_file(write_folder(std::string("gguf-") + GetParam(), text, config));
  EXPECT_EQ(back.kind(), src.kind());
  EXPECT_EQ(back.n_tokens(), src.n_tokens());
  // The name may become another of the same regexes (starcoder's are smollm's).
  if (src.kind() == TokenizerKind::Bpe) {
    const PreTokenizerInfo& a = find_pre_tokenizer(src.pre_tokenizer());
    const PreTokenizerInfo& b = find_pre_tokenizer(back.pre_tokenizer());
    EXPECT_EQ(b.patterns, a.patterns) << back.pre_tokenizer();
    EXPECT_EQ(b.ignore_merges, a.ignore_merges) << back.pre_tokenizer();
  }
  EXPECT_EQ(back.bos(), src.bos());
  EXPECT_EQ(back.eos(), src.eos());
  EXPECT_EQ(back.add_bos(), src.add_bos());
  EXPECT_EQ(back.add_eos(), src.add_eos());
  int matched = 0;
  for (const Case& c : cases) matched += back.encode(c.text, false) == c.ids;
  EXPECT_EQ(matched, 46);
  expect_same_ids(src, back, probe_texts(cases, 21), GetParam());
  expect_same_text(hf_tokenizer_json(back), text, "tokenizer.json written again");
  expect_same_text(hf_tokenizer_config_json(back), config, "tokenizer_config.json written again");
}

INSTANTIATE_TEST_SUITE_P(Vocabs, GgufToHf,
                         ::testing::ValuesIn(test::kFixtureVocabs), test::vocab_test_name);

// Hugging Face's own files: read, write, read again: the same ids, names and special tokens.
struct HfFile {
  const char* name;
  const char* inp;
  const char* out;
};
class HfToHf : public ::testing::TestWithParam<HfFile> {};

TEST_P(HfToHf, ReadWriteReadGivesTheSameIds) {
  const HfFile& f = GetParam();
  QBENCH_SHARED_FILE(json_path, std::string("tokenizers/hf/") + f.name + "/tokenizer.json");
  QBENCH_SHARED_FILE(inp, f.inp);
  QBENCH_SHARED_FILE(out, f.out);
  const std::vector<Case> cases = read_cases(inp, out);
  const Tokenizer src = Tokenizer::from_file(json_path);
  const std::string text = hf_tokenizer_json(src), config = hf_tokenizer_config_json(src);
  const Tokenizer back = Tokenizer::from_file(write_folder(std::string("hf-") + f.name, text, config));
  EXPECT_EQ(back.kind(), TokenizerKind::Bpe);
  EXPECT_EQ(back.n_tokens(), src.n_tokens());
  EXPECT_EQ(back.pre_tokenizer(), src.pre_tokenizer());
  EXPECT_EQ(back.bos(), src.bos());
  EXPECT_EQ(back.eos(), src.eos());
  EXPECT_EQ(back.pad(), src.pad());
  EXPECT_EQ(back.add_bos(), src.add_bos());
  int matched = 0;
  for (const Case& c : cases) matched += back.encode(c.text, false) == c.ids;
  EXPECT_EQ(matched, 46);
  expect_same_ids(src, back, probe_texts(cases, 33), f.name);
  expect_same_text(hf_tokenizer_json(back), text, "tokenizer.json written again");
}

INSTANTIATE_TEST_SUITE_P(
    Files, HfToHf,
    ::testing::Values(HfFile{"llama3", "tokenizers/llama.cpp/ggml-vocab-llama-bpe.gguf.inp",
                             "tokenizers/llama.cpp/ggml-vocab-llama-bpe.gguf.out"},
                      HfFile{"qwen2", "tokenizers/llama.cpp/ggml-vocab-qwen2.gguf.inp",
                             "tokenizers/llama.cpp/ggml-vocab-qwen2.gguf.out"},
                      HfFile{"gpt2", "tokenizers/llama.cpp/ggml-vocab-gpt-2.gguf.inp",
                             "tokenizers/llama.cpp/ggml-vocab-gpt-2.gguf.out"},
                      HfFile{"smollm", "tokenizers/hf/smollm/ggml-vocab-test.inp",
                             "tokenizers/hf/smollm/ggml-vocab-test.out.transformersjs"}),
    [](const auto& info) { return std::string(info.param.name); });

// stories260K (a 512-token SentencePiece vocabulary) as a Hugging Face folder's tokenizer: the
// GGUF's ids on TinyStories text and the fixture strings.
TEST(HfWrite, Stories260KTokenizerAsHfFolder) {
  QBENCH_SHARED_FILE(model, "models/stories260K.gguf");
  QBENCH_SHARED_FILE(stories, "datasets/tinystories/tinystories_validation_head.txt");
  QBENCH_SHARED_FILE(inp, "tokenizers/llama.cpp/ggml-vocab-llama-spm.gguf.inp");
  QBENCH_SHARED_FILE(out, "tokenizers/llama.cpp/ggml-vocab-llama-spm.gguf.out");
  const Tokenizer src = Tokenizer::from_file(model);
  ASSERT_EQ(src.n_tokens(), 512);
  const std::string text = hf_tokenizer_json(src);
  const json j = json::parse(text);
  EXPECT_TRUE(j.at("model").at("byte_fallback").get<bool>());
  EXPECT_GT(j.at("model").at("merges").size(), 100u);
  const Tokenizer back =
      Tokenizer::from_file(write_folder("stories260K", text, hf_tokenizer_config_json(src, "{{ messages }}")));
  EXPECT_EQ(back.kind(), TokenizerKind::Spm);
  EXPECT_TRUE(back.add_bos());
  std::vector<std::string> texts = probe_texts(read_cases(inp, out), 44);
  std::istringstream lines(test::read_file(stories));
  int n_lines = 0;
  for (std::string line; std::getline(lines, line) && n_lines < 3000; ++n_lines) texts.push_back(line);
  EXPECT_EQ(n_lines, 3000);
  expect_same_ids(src, back, texts, "stories260K");
  const std::string story = test::read_file(stories).substr(0, 200000);
  EXPECT_EQ(back.encode(story, true), src.encode(story, true));
}

TEST(HfWrite, ConfigCarriesSpecialTokensAndTheChatTemplate) {
  const Tokenizer tok = Tokenizer::byte_fallback({"▁a", "b"});
  const json c = json::parse(hf_tokenizer_config_json(tok, "{% for m in messages %}{{ m.content }}{% endfor %}"));
  EXPECT_EQ(c.at("bos_token"), "<s>");
  EXPECT_EQ(c.at("eos_token"), "</s>");
  EXPECT_EQ(c.at("unk_token"), "<unk>");
  EXPECT_TRUE(c.at("pad_token").is_null());
  EXPECT_TRUE(c.at("add_bos_token").get<bool>());
  EXPECT_FALSE(c.at("add_eos_token").get<bool>());
  EXPECT_EQ(c.at("chat_template"), "{% for m in messages %}{{ m.content }}{% endfor %}");
  EXPECT_FALSE(json::parse(hf_tokenizer_config_json(tok)).contains("chat_template"));
  EXPECT_THROW(hf_tokenizer_config_json(tok, "\xFF"), Error);
}

TEST(HfWrite, VocabulariesJsonCannotHoldAreOneLineErrors) {
  const auto types = std::vector<TokenType>(4, TokenType::Normal);
  const Tokenizer dup = Tokenizer::from_pieces({"<unk>", "a", "b", "a"}, {0, 0, 0, 0}, types, -1, -1, 0);
  const Tokenizer bad_utf8 = Tokenizer::from_pieces({"<unk>", "a", "\xC3", "b"}, {0, 0, 0, 0}, types, -1, -1, 0);
  for (const auto& [tok, words] : {std::pair{&dup, std::vector<std::string>{"tokens 1 and 3", "'a'"}},
                                   std::pair{&bad_utf8, std::vector<std::string>{"token 2", "UTF-8"}}}) {
    try {
      hf_tokenizer_json(*tok);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      const std::string m = e.what();
      for (const std::string& w : words) EXPECT_NE(m.find(w), std::string::npos) << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    }
  }
}

}  // namespace
}  // namespace qbench
