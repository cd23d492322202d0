// IFEval-style instruction checkers: positive and negative responses per id, kwargs errors, and
// every supported instruction in the real IFEval prompts has kwargs the checkers accept.
#include <gtest/gtest.h>

#include <map>

#include "datasets/instructions.h"
#include "datasets/loaders/loaders.h"
#include "engine/core/error.h"
#include "tests/test_util.h"

namespace qbench {
namespace {

using nlohmann::json;

bool check(const std::string& id, const json& kw, const std::string& r) { return check_instruction(id, kw, r); }

TEST(Instructions, CountWords) {
  EXPECT_EQ(count_words_ifeval(""), 0);
  EXPECT_EQ(count_words_ifeval("The sky is blue."), 4);
  EXPECT_EQ(count_words_ifeval("it's a well-known fact_1"), 6);  // it s a well known fact_1
  EXPECT_EQ(count_words_ifeval("caf\xc3\xa9 \xe2\x80\x94 ok"), 2);  // an em dash is not a word
}

TEST(Instructions, EnglishCapital) {
  const std::string id = "change_case:english_capital";
  EXPECT_TRUE(check(id, json::object(), "THE SKY IS BLUE."));
  EXPECT_TRUE(check(id, json::object(), " 42 IS THE ANSWER!\n"));
  EXPECT_FALSE(check(id, json::object(), "THE SKY IS Blue."));
  EXPECT_FALSE(check(id, json::object(), "123 ..."));  // no cased letter (Python isupper)
}

TEST(Instructions, EnglishLowercase) {
  const std::string id = "change_case:english_lowercase";
  EXPECT_TRUE(check(id, json::object(), "the sky is blue."));
  EXPECT_FALSE(check(id, json::object(), "The sky is blue."));
  EXPECT_FALSE(check(id, json::object(), "42"));
}

TEST(Instructions, NumberWords) {
  const std::string id = "length_constraints:number_words";
  EXPECT_TRUE(check(id, {{"relation", "exactly"}, {"num_words", 3}}, "It is blue."));
  EXPECT_FALSE(check(id, {{"relation", "exactly"}, {"num_words", 3}}, "The sky is blue."));
  EXPECT_TRUE(check(id, {{"relation", "less than"}, {"num_words", 5}}, "The sky is blue."));
  EXPECT_FALSE(check(id, {{"relation", "less than"}, {"num_words", 4}}, "The sky is blue."));
  EXPECT_TRUE(check(id, {{"relation", "at least"}, {"num_words", 4}}, "The sky is blue."));
  EXPECT_FALSE(check(id, {{"relation", "at least"}, {"num_words", 5}}, "The sky is blue."));
  EXPECT_THROW(check(id, {{"relation", "about"}, {"num_words", 5}}, "x"), Error);
  EXPECT_THROW(check(id, {{"relation", "at least"}}, "x"), Error);
  EXPECT_THROW(check(id, {{"relation", "at least"}, {"num_words", "5"}}, "x"), Error);
}

TEST(Instructions, EndChecker) {
  const std::string id = "startend:end_checker";
  const json kw = {{"end_phrase", "Have a nice day."}};
  EXPECT_TRUE(check(id, kw, "The sky is blue. Have a nice day."));
  EXPECT_TRUE(check(id, kw, "\"The sky is blue. have a nice DAY.\"\n"));  // case-insensitive, quotes stripped
  EXPECT_FALSE(check(id, kw, "Have a nice day. The sky is blue."));
  EXPECT_FALSE(check(id, kw, "The sky is blue. Have a nice day"));
  EXPECT_THROW(check(id, json::object(), "x"), Error);
}

TEST(Instructions, JsonFormat) {
  const std::string id = "detectable_format:json_format";
  EXPECT_TRUE(check(id, json::object(), "{\"answer\": \"blue\"}"));
  EXPECT_TRUE(check(id, json::object(), "```json\n{\"answer\": [1, 2]}\n```"));
  EXPECT_TRUE(check(id, json::object(), "  [1, 2, 3] "));
  EXPECT_FALSE(check(id, json::object(), "The answer is {\"answer\": \"blue\"}"));
  EXPECT_FALSE(check(id, json::object(), "{answer: blue}"));
}

TEST(Instructions, NoComma) {
  const std::string id = "punctuation:no_comma";
  EXPECT_TRUE(check(id, json::object(), "Red and blue and green."));
  EXPECT_FALSE(check(id, json::object(), "Red, blue and green."));
}

TEST(Instructions, NthParagraphFirstWord) {
  const std::string id = "length_constraints:nth_paragraph_first_word";
  const json one = {{"num_paragraphs", 1}, {"nth_paragraph", 1}, {"first_word", "well"}};
  EXPECT_TRUE(check(id, one, "Well, the sky is blue."));
  EXPECT_TRUE(check(id, one, "\"Well.\" the sky is blue."));
  EXPECT_FALSE(check(id, one, "Wellness, the sky is blue."));
  EXPECT_FALSE(check(id, one, "Well, the sky is blue.\n\nAnd grass is green."));  // 2 paragraphs
  const json second = {{"num_paragraphs", 2}, {"nth_paragraph", 2}, {"first_word", "And"}};
  EXPECT_TRUE(check(id, second, "Well, the sky is blue.\n\nand grass is green."));
  EXPECT_FALSE(check(id, second, "Well, the sky is blue.\n\nBut grass is green."));
  EXPECT_FALSE(check(id, second, "Only one paragraph."));
}

TEST(Instructions, Quotation) {
  const std::string id = "startend:quotation";
  EXPECT_TRUE(check(id, json::object(), " \"The sky is blue.\"\n"));
  EXPECT_FALSE(check(id, json::object(), "\"The sky is blue."));
  EXPECT_FALSE(check(id, json::object(), "\""));
}

TEST(Instructions, UnknownIdAndBadKwargs) {
  EXPECT_THROW(check("language:response_language", {{"language", "en"}}, "hi"), Error);
  try {
    check("no:such_id", json::object(), "x");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no:such_id"), std::string::npos);
  }
  EXPECT_THROW(check("punctuation:no_comma", {{"extra", 1}}, "x"), Error);
  EXPECT_TRUE(check("punctuation:no_comma", {{"extra", nullptr}}, "x"));  // HF-style null kwargs
  EXPECT_FALSE(is_supported_instruction("detectable_format:title"));
  EXPECT_EQ(supported_instructions().size(), 8u);
}

TEST(Instructions, RealIfevalKwargsAreAccepted) {
  QBENCH_SHARED_FILE(path, "datasets/ifeval/input_data.jsonl");
  std::map<std::string, int> seen;
  for (const auto& e : load_ifeval(path)) {
    const auto& ids = e.meta.at("instruction_id_list");
    const auto& kwargs = e.meta.at("kwargs");
    for (size_t i = 0; i < ids.size(); ++i) {
      const std::string id = ids[i];
      if (!is_supported_instruction(id)) continue;
      EXPECT_NO_THROW(validate_instruction_kwargs(id, kwargs[i])) << e.id << " " << id << " " << kwargs[i].dump();
      EXPECT_NO_THROW(check_instruction(id, kwargs[i], "Some response."));
      seen[id]++;
    }
  }
  // Instances per supported id in the 541 prompts (counted independently from the file).
  const std::map<std::string, int> want = {{"change_case:english_capital", 25},
                                           {"change_case:english_lowercase", 39},
                                           {"detectable_format:json_format", 17},
                                           {"length_constraints:nth_paragraph_first_word", 12},
                                           {"length_constraints:number_words", 52},
                                           {"punctuation:no_comma", 66},
                                           {"startend:end_checker", 26},
                                           {"startend:quotation", 41}};
  EXPECT_EQ(seen, want);
}

}  // namespace
}  // namespace qbench
