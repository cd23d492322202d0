// Loaders of standard formats: record counts and two items per format on the real files under
// $QBENCH_SHARED/datasets (never copied into the project), and errors on small bad files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "datasets/loaders/loaders.h"
#include "engine/core/error.h"
#include "tests/test_util.h"

namespace qbench {
namespace {

TEST(Loaders, Gsm8k) {
  QBENCH_SHARED_FILE(path, "datasets/gsm8k/test.jsonl");
  const auto items = load_gsm8k(path);
  ASSERT_EQ(items.size(), 1319u);
  const auto& a = items[0];
  EXPECT_EQ(a.id, "gsm8k-0");
  EXPECT_EQ(a.task, "gsm8k");
  EXPECT_TRUE(a.context.starts_with("Question: Janet\xE2\x80\x99s ducks lay 16 eggs per day."));
  EXPECT_TRUE(a.context.ends_with("How much in dollars does she make every day at the farmers' market?\nAnswer:"));
  EXPECT_TRUE(a.target.starts_with(" Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"));
  EXPECT_TRUE(a.target.ends_with("\n#### 18"));
  EXPECT_EQ(a.answer, "18");
  EXPECT_FALSE(a.is_multiple_choice());
  const auto& b = items[1];
  EXPECT_EQ(b.context, "Question: A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in total does it take?\nAnswer:");
  EXPECT_EQ(b.answer, "3");
  // Thousands separators are removed (14 answers have one).
  int with_comma = 0;
  for (const auto& e : items) {
    EXPECT_EQ(e.answer.find(','), std::string::npos);
    with_comma += e.target.substr(e.target.rfind("#### ")).find(',') != std::string::npos;
  }
  EXPECT_EQ(with_comma, 14);
}

TEST(Loaders, Svamp) {
  QBENCH_SHARED_FILE(path, "datasets/svamp/SVAMP.json");
  const auto items = load_svamp(path);
  ASSERT_EQ(items.size(), 1000u);
  EXPECT_EQ(items[0].id, "chal-1");
  EXPECT_EQ(items[0].context, "Question: Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each pack How much do you have to pay to buy each pack?\nAnswer:");
  EXPECT_EQ(items[0].answer, "51");
  EXPECT_EQ(items[0].target, " 51");
  EXPECT_EQ(items[0].meta.at("equation"), "( 76.0 - 25.0 )");
  EXPECT_EQ(items[0].meta.at("type"), "Subtraction");
  EXPECT_EQ(items[999].id, "chal-1000");
  EXPECT_EQ(items[999].context, "Question: The grasshopper and the frog had a jumping contest. The grasshopper jumped 13 inches. The grasshopper jumped 2 inches farther than the grasshopper. How far did the frog jump?\nAnswer:");
  EXPECT_EQ(items[999].answer, "11");
}

TEST(Loaders, Math500) {
  QBENCH_SHARED_FILE(path, "datasets/math500/test.jsonl");
  const auto items = load_math500(path);
  ASSERT_EQ(items.size(), 500u);
  const auto& a = items[0];
  EXPECT_EQ(a.id, "test/precalculus/807.json");
  EXPECT_EQ(a.context, "Problem: Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.  Enter your answer in the form $(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$\nAnswer:");
  EXPECT_EQ(a.answer, "\\left( 3, \\frac{\\pi}{2} \\right)");
  EXPECT_TRUE(a.target.starts_with(" We have that $r = \\sqrt{0^2 + 3^2} = 3.$"));
  EXPECT_EQ(a.meta.at("subject"), "Precalculus");
  EXPECT_EQ(a.meta.at("level"), 2);
  EXPECT_EQ(items[1].id, "test/intermediate_algebra/1994.json");
  EXPECT_EQ(items[1].answer, "p - q");
  EXPECT_EQ(items[1].meta.at("level"), 5);
}

TEST(Loaders, Arc) {
  QBENCH_SHARED_FILE(challenge, "datasets/arc/ARC-Challenge-test.jsonl");
  QBENCH_SHARED_FILE(easy, "datasets/arc/ARC-Easy-test.jsonl");
  const auto c = load_arc(challenge, "arc_challenge");
  const auto e = load_arc(easy, "arc_easy");
  ASSERT_EQ(c.size(), 1172u);
  ASSERT_EQ(e.size(), 2376u);
  EXPECT_EQ(c[0].id, "Mercury_7175875");
  EXPECT_EQ(c[0].task, "arc_challenge");
  EXPECT_EQ(c[0].context, "Question: An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most likely effect of this increase in rotation?\nAnswer:");
  EXPECT_EQ(c[0].choices, (std::vector<std::string>{" Planetary density will decrease.", " Planetary years will become longer.",
                                                    " Planetary days will become shorter.", " Planetary gravity will become stronger."}));
  EXPECT_EQ(c[0].gold, 2);
  EXPECT_EQ(c[0].answer, "Planetary days will become shorter.");
  EXPECT_EQ(e[1].id, "Mercury_7081673");
  EXPECT_EQ(e[1].choices, (std::vector<std::string>{" safety goggles", " breathing mask", " rubber gloves", " lead apron"}));
  EXPECT_EQ(e[1].gold, 1);
  // Numeric labels "1".."4" (22 answer keys in Challenge, 97 in Easy) and 3 or 5 choices.
  auto numeric = [](const std::vector<Example>& v) {
    int n = 0;
    for (const auto& x : v) n += x.meta.at("labels")[0] == "1";
    return n;
  };
  EXPECT_EQ(numeric(c), 22);
  EXPECT_EQ(numeric(e), 97);
  const auto nysed = std::find_if(c.begin(), c.end(), [](const Example& x) { return x.id == "NYSEDREGENTS_2008_8_34"; });
  ASSERT_NE(nysed, c.end());
  EXPECT_EQ(nysed->gold, 1);
  EXPECT_EQ(nysed->answer, "Kinetic energy increases and potential energy decreases.");
  size_t three = 0, five = 0;
  for (const auto& x : c) {
    three += x.choices.size() == 3;
    five += x.choices.size() == 5;
  }
  EXPECT_EQ(three, 4u);
  EXPECT_EQ(five, 3u);
}

TEST(Loaders, Hellaswag) {
  QBENCH_SHARED_FILE(path, "datasets/hellaswag/hellaswag_val_full.txt");
  const auto items = load_hellaswag(path);
  ASSERT_EQ(items.size(), 10042u);
  EXPECT_EQ(items[0].context, "Roof shingle removal: A man is sitting on a roof. he");
  EXPECT_EQ(items[0].choices, (std::vector<std::string>{" is using wrap to wrap a pair of skis.", " is ripping level tiles off.",
                                                        " is holding a rubik's cube.", " starts pulling up roofing on a roof."}));
  EXPECT_EQ(items[0].gold, 3);
  EXPECT_EQ(items[0].answer, "starts pulling up roofing on a roof.");
  EXPECT_EQ(items[1].context, "Clean and jerk: A lady walks to a barbell. She bends down and grabs the pole. the lady");
  EXPECT_EQ(items[1].gold, 3);
  EXPECT_EQ(items[1].choices[3], " stands and lifts the weight over her head.");
  int labels[4] = {0, 0, 0, 0};
  for (const auto& e : items) labels[e.gold]++;
  EXPECT_EQ(labels[0], 2515);
  EXPECT_EQ(labels[1], 2485);
  EXPECT_EQ(labels[2], 2584);
  EXPECT_EQ(labels[3], 2458);
}

TEST(Loaders, Piqa) {
  QBENCH_SHARED_FILE(path, "datasets/piqa/valid.jsonl");
  const auto items = load_piqa(path);
  ASSERT_EQ(items.size(), 1838u);
  EXPECT_EQ(items[0].context, "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:");
  EXPECT_EQ(items[0].choices[0], " Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips, you will also need to supply it with a water bottle and a food dish.");
  EXPECT_EQ(items[0].gold, 0);
  EXPECT_EQ(items[1].context, "Question: dresser\nAnswer:");
  EXPECT_EQ(items[1].choices, (std::vector<std::string>{" replace drawer with bobby pin ", " finish, woodgrain with  bobby pin "}));
  EXPECT_EQ(items[1].gold, 1);
  EXPECT_EQ(items[1].answer, "finish, woodgrain with  bobby pin ");
  int ones = 0;
  for (const auto& e : items) ones += e.gold;
  EXPECT_EQ(ones, 928);
}

TEST(Loaders, Winogrande) {
  QBENCH_SHARED_FILE(path, "datasets/winogrande/dev.jsonl");
  const auto items = load_winogrande(path);
  ASSERT_EQ(items.size(), 1267u);
  const auto& a = items[0];
  EXPECT_TRUE(choices_are_contexts(a));
  EXPECT_EQ(a.choices, (std::vector<std::string>{"Sarah was a much better surgeon than Maria so Sarah",
                                                 "Sarah was a much better surgeon than Maria so Maria"}));
  EXPECT_EQ(a.target, " always got the easier cases.");
  EXPECT_EQ(a.gold, 1);
  EXPECT_EQ(a.answer, "Maria");
  EXPECT_EQ(items[1].target, " always got the harder cases.");
  EXPECT_EQ(items[1].gold, 0);
  EXPECT_EQ(items[1].answer, "Sarah");
  const auto& last = items.back();
  EXPECT_EQ(last.choices[1], "She chose the black car over the green car, because the green car");
  EXPECT_EQ(last.target, " has more brighter color.");
  int twos = 0;
  for (const auto& e : items) twos += e.gold;
  EXPECT_EQ(twos, 639);
}

TEST(Loaders, Lambada) {
  QBENCH_SHARED_FILE(path, "datasets/lambada/lambada_test.jsonl");
  const auto items = load_lambada(path);
  ASSERT_EQ(items.size(), 5153u);
  EXPECT_TRUE(items[0].context.starts_with("In my palm is a clear stone, and inside it is a small ivory statuette."));
  EXPECT_TRUE(items[0].context.ends_with("his mouth curved in a confident grin, I don't care about"));
  EXPECT_EQ(items[0].target, " signs");
  EXPECT_EQ(items[0].answer, "signs");
  EXPECT_TRUE(items[1].context.ends_with("\"I can make it there on my own,"));
  EXPECT_EQ(items[1].target, " Shane");
}

TEST(Loaders, ChatPromptSets) {
  QBENCH_SHARED_FILE(mt, "datasets/mt_bench/question.jsonl");
  QBENCH_SHARED_FILE(vic, "datasets/vicuna_bench/question.jsonl");
  const auto m = load_mt_bench(mt);
  ASSERT_EQ(m.size(), 80u);
  EXPECT_EQ(m[0].id, "mt_bench-81");
  EXPECT_EQ(m[0].context, "Compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural experiences and must-see attractions.");
  EXPECT_EQ(m[0].meta.at("category"), "writing");
  EXPECT_EQ(m[0].meta.at("turns").size(), 2u);
  EXPECT_EQ(m[0].meta.at("turns")[1], "Rewrite your previous response. Start every sentence with the letter A.");
  EXPECT_EQ(m[1].id, "mt_bench-82");
  EXPECT_EQ(m[1].meta.at("turns")[1], "Take a moment to evaluate and critique your own response.");
  int with_reference = 0;
  for (const auto& e : m) with_reference += e.meta.contains("reference");
  EXPECT_EQ(with_reference, 39);
  const auto v = load_vicuna_bench(vic);
  ASSERT_EQ(v.size(), 80u);
  EXPECT_EQ(v[0].id, "vicuna_bench-1");
  EXPECT_EQ(v[0].context, "How can I improve my time management skills?");
  EXPECT_EQ(v[0].meta.at("category"), "generic");
  EXPECT_EQ(v[1].context, "What are the most effective ways to deal with stress?");
  EXPECT_EQ(v[1].meta.at("turns").size(), 1u);
}

TEST(Loaders, Ifeval) {
  QBENCH_SHARED_FILE(path, "datasets/ifeval/input_data.jsonl");
  const auto items = load_ifeval(path);
  ASSERT_EQ(items.size(), 541u);
  EXPECT_EQ(items[0].id, "ifeval-1000");
  EXPECT_TRUE(items[0].context.starts_with("Write a 300+ word summary of the wikipedia page \"https://en.wikipedia.org/wiki/Raymond_III,_Count_of_Tripoli\"."));
  EXPECT_EQ(items[0].meta.at("instruction_id_list"),
            (nlohmann::json{"punctuation:no_comma", "detectable_format:number_highlighted_sections", "length_constraints:number_words"}));
  EXPECT_EQ(items[0].meta.at("kwargs")[2], (nlohmann::json{{"relation", "at least"}, {"num_words", 300}}));
  EXPECT_EQ(items[1].id, "ifeval-1001");
  EXPECT_EQ(items[1].meta.at("instruction_id_list"), (nlohmann::json{"punctuation:no_comma"}));
  size_t instructions = 0;
  for (const auto& e : items) instructions += e.meta.at("instruction_id_list").size();
  EXPECT_EQ(instructions, 834u);
}

TEST(Loaders, RegistryAndPaths) {
  const auto& reg = builtin_loaders();
  EXPECT_EQ(reg.names().size(), 12u);
  EXPECT_EQ(reg.get("arc_easy").default_path, "arc/ARC-Easy-test.jsonl");
  EXPECT_THROW(reg.get("boolq"), Error);
  LoaderRegistry r;
  register_builtin_loaders(r);
  EXPECT_THROW(register_builtin_loaders(r), Error);
  EXPECT_EQ(resolve_dataset_path(reg.get("gsm8k"), "/my/copy.jsonl"), "/my/copy.jsonl");
  QBENCH_SHARED_FILE(path, "datasets/gsm8k/test.jsonl");
  EXPECT_TRUE(std::filesystem::equivalent(resolve_dataset_path(reg.get("gsm8k")), path));
  for (const auto& name : reg.names()) {
    const auto& loader = reg.get(name);
    const auto items = loader.load(resolve_dataset_path(loader));
    EXPECT_FALSE(items.empty()) << name;
    for (const auto& e : items) EXPECT_EQ(e.task, name == "arc_easy" || name == "arc_challenge" ? name : loader.name);
  }
}

// ---- bad input ----

class BadFiles : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test::temp_dir("datasets-bad"); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& contents) {
    const std::string p = dir_ + "/" + name;
    std::ofstream(p, std::ios::binary) << contents;
    return p;
  }
  // Runs `load` and checks the Error names the file, the line and the problem.
  template <typename Fn>
  void expect_error(Fn load, const std::string& path, const std::string& where, const std::string& what) {
    try {
      load(path);
      ADD_FAILURE() << "no error for " << path;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path + where), std::string::npos) << msg;
      EXPECT_NE(msg.find(what), std::string::npos) << msg;
    }
  }
  std::string dir_;
};

TEST_F(BadFiles, MissingAndEmptyFiles) {
  expect_error(load_gsm8k, dir_ + "/nope.jsonl", "", "cannot open");
  expect_error(load_gsm8k, write("empty.jsonl", ""), "", "empty");
  expect_error(load_hellaswag, dir_ + "/nope.txt", "", "cannot open");
}

TEST_F(BadFiles, JsonLines) {
  const std::string good = R"({"question": "1+1?", "answer": "2\n#### 2"})";
  expect_error(load_gsm8k, write("a.jsonl", good + "\n{\"question\": \"x\", \"answer\": \n"), ":2:", "invalid JSON");
  expect_error(load_gsm8k, write("b.jsonl", good + "\n" + good + "\n[1, 2]\n"), ":3:", "expected a JSON object");
  expect_error(load_gsm8k, write("c.jsonl", good + "\n{\"question\": \"x\"}\n"), ":2:", "missing field \"answer\"");
  expect_error(load_gsm8k, write("d.jsonl", "{\"question\": 5, \"answer\": \"#### 1\"}\n"), ":1:", "\"question\" must be a string, got 5");
  expect_error(load_gsm8k, write("e.jsonl", "{\"question\": \"q\", \"answer\": \"no final\"}\n"), ":1:", "no \"#### \"");
  expect_error(load_gsm8k, write("f.jsonl", "{\"question\": \"q\", \"answer\": \"#### twelve\"}\n"), ":1:", "\"twelve\"");
  expect_error(load_gsm8k, write("g.jsonl", good + "\n\xff\xfe\n"), ":2:", "UTF-8");
  // Blank lines are skipped; CRLF is accepted.
  EXPECT_EQ(load_gsm8k(write("ok.jsonl", good + "\r\n\r\n" + good + "\n")).size(), 2u);
  EXPECT_EQ(load_gsm8k(write("commas.jsonl", R"({"question": "q", "answer": "#### 1,600"})"))[0].answer, "1600");
}

TEST_F(BadFiles, MultipleChoice) {
  const std::string arc_bad_key =
      R"({"id": "x", "question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "C"})";
  expect_error([](const std::string& p) { return load_arc(p); }, write("arc.jsonl", arc_bad_key + "\n"), ":1:", "answerKey \"C\"");
  const std::string arc_mismatch =
      R"({"id": "x", "question": "q", "choices": {"text": ["a", "b"], "label": ["A"]}, "answerKey": "A"})";
  expect_error([](const std::string& p) { return load_arc(p); }, write("arc2.jsonl", arc_mismatch + "\n"), ":1:", "2 texts but 1 labels");
  expect_error(load_piqa, write("piqa.jsonl", R"({"goal": "g", "sol1": "a", "sol2": "b", "label": 2})" "\n"), ":1:", "must be 0 or 1, got 2");
  expect_error(load_winogrande, write("w1.jsonl", R"({"sentence": "no blank", "option1": "a", "option2": "b", "answer": "1"})" "\n"), ":1:", "no \"_\"");
  expect_error(load_winogrande, write("w2.jsonl", R"({"sentence": "a _ b", "option1": "a", "option2": "b", "answer": "3"})" "\n"), ":1:", "\"3\"");
  expect_error(load_lambada, write("l.jsonl", R"({"text": "oneword"})" "\n"), ":1:", "no final");
  expect_error(load_ifeval, write("i.jsonl", R"({"key": 1, "prompt": "p", "instruction_id_list": ["a", "b"], "kwargs": [{}]})" "\n"), ":1:", "one object per instruction");
  expect_error(load_mt_bench, write("m.jsonl", R"({"question_id": 1, "category": "c", "turns": []})" "\n"), ":1:", "\"turns\" is empty");
}

TEST_F(BadFiles, Hellaswag) {
  const std::string item = "Ctx: a man. he\n2\nA.\nB.\nC.\nD.\n";
  EXPECT_EQ(load_hellaswag(write("ok.txt", item + item)).size(), 2u);
  expect_error(load_hellaswag, write("h1.txt", item + "Ctx: x\n7\nA.\nB.\nC.\nD.\n"), ":8:", "label must be 0, 1, 2 or 3, got \"7\"");
  expect_error(load_hellaswag, write("h2.txt", item + "Ctx: x\n1\nA.\n"), ":7:", "incomplete item");
}

TEST_F(BadFiles, SvampArray) {
  const std::string rec1 = "  {\"ID\": \"a\", \"Body\": \"b\", \"Question\": \"q?\", \"Answer\": 2.5}";
  const std::string rec2 = "  {\"ID\": \"b\", \"Body\": \"b\", \"Question\": \"q?\", \"Answer\": \"x\"}";
  expect_error(load_svamp, write("s1.json", "[\n" + rec1 + ",\n" + rec2 + "\n]\n"), ":3:", "\"Answer\" must be a number");
  EXPECT_EQ(load_svamp(write("s2.json", "[\n" + rec1 + "\n]\n"))[0].answer, "2.5");
  expect_error(load_svamp, write("s3.json", "[\n" + rec1 + ",\n  {\"ID\": }\n]\n"), ":3:", "invalid JSON");
  expect_error(load_svamp, write("s4.json", "{\"ID\": 1}\n"), ":1:", "expected one JSON array");
}

}  // namespace
}  // namespace qbench
