#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "engine/core/error.h"
#include "tasks/evaluate.h"
#include "tasks/task.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

namespace qbench {
namespace {

TEST(Extract, Rules) {
  EXPECT_EQ(extract_answer("reversed_digits", " 2340\n"), "432");
  EXPECT_EQ(extract_answer("reversed_digits", " 000"), "0");
  EXPECT_EQ(extract_answer("reversed_digits", " 1"), "1");
  EXPECT_EQ(extract_answer("reversed_digits", " none"), "");
  EXPECT_EQ(extract_answer("exact", "  yes  \nno"), "yes");
  EXPECT_EQ(extract_answer("gsm8k", "so 3 + 4 = 7\n#### 1,234."), "1234");
  EXPECT_EQ(extract_answer("gsm8k", "The answer is 7"), "");  // strict: needs "#### "
  EXPECT_EQ(extract_answer("last_number", "3 apples and 1,250 pears."), "1250");
  EXPECT_EQ(extract_answer("first_number", "-3 apples and 12 pears"), "-3");
  EXPECT_EQ(extract_answer("regex:answer is (\\w+)", "the answer is blue."), "blue");
  EXPECT_THROW(extract_answer("median", "x"), Error);
  EXPECT_THROW(extract_answer("regex:(", "x"), Error);
}

TEST(TaskDefs, ParseErrorsNameTheFileAndField) {
  auto err = [](const nlohmann::json& j) {
    try {
      parse_task(j, "t.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const nlohmann::json ok = {{"name", "x"}, {"kind", "exact_match"}, {"source", {{"generator", "add2"}, {"count", 5}}}};
  EXPECT_NO_THROW(parse_task(ok, "t.json"));
  auto with = [&](const char* k, nlohmann::json v) {
    nlohmann::json j = ok;
    j[k] = v;
    return j;
  };
  EXPECT_EQ(err(with("colour", 1)), "t.json: unknown field 'colour'");
  EXPECT_EQ(err(with("kind", "essay")), "t.json: unknown task kind 'essay'");
  EXPECT_EQ(err(with("source", {{"generator", "nope"}, {"count", 5}})), "t.json: unknown generator 'nope'");
  EXPECT_EQ(err(with("source", {{"generator", "add2"}})), "t.json: a generator source needs a positive 'count'");
  EXPECT_EQ(err(with("max_tokens", "many")), "t.json: field 'max_tokens' has the wrong type (\"many\")");
  EXPECT_NE(err(with("extract", "median")).find("unknown answer extraction rule"), std::string::npos);
}

TEST(TaskDefs, ShippedTasksAndSuitesAreConsistent) {
  const auto tasks = builtin_tasks();
  EXPECT_GE(tasks.size(), 20u);
  for (const auto& s : {"math_reasoning", "chat"}) {
    for (const auto& t : suite_tasks(s)) {
      const TaskDef& d = find_task(tasks, t);
      EXPECT_FALSE(d.source.generator.empty()) << t << ": built-in suites run without downloads";
      EXPECT_EQ(task_items(d, 0).size(), size_t(d.source.count)) << t;
    }
  }
  EXPECT_THROW(suite_tasks("no_such_suite"), Error);
}

TEST(TaskDefs, FewShotPrependsSolvedItemsButNeverTheItemItself) {
  TaskDef t = find_task(builtin_tasks(), "add3");
  t.few_shot = 3;
  const auto items = task_items(t, 20);
  for (const auto& e : items) {
    EXPECT_EQ(std::count(e.context.begin(), e.context.end(), '\n'), 3) << e.context;
    const std::string own = e.context.substr(e.context.rfind('\n') + 1);
    EXPECT_EQ(e.context.find(own), e.context.size() - own.size()) << "the item appears among its own shots";
  }
}

// A bigram model where choice tokens have known log-probabilities: acc and acc_norm disagree.
class Scoring : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<std::vector<float>> table(300, std::vector<float>(300, 0.0f));
    model_ = load_model(test::write_bigram_model(test::temp_dir("scoring") + "/m.gguf", table));
  }
  Model model_;
};

TEST_F(Scoring, AccAndAccNormFollowTheirDefinitions) {
  const LanguageModel lm(model_);
  // Uniform bigram: every token costs log(300). A short choice (fewer tokens) wins acc; per
  // byte, a long choice made of multi-byte-per-token pieces ("the" is one token) can win acc_norm.
  Example e;
  e.id = "x";
  e.context = "Q:";
  e.choices = {" x", " the the the"};  // " x": 2 byte-ish tokens for 2 bytes; long: 3 tokens for 12 bytes
  e.gold = 1;
  TaskDef t;
  t.name = "mc";
  t.kind = TaskKind::MultipleChoice;
  const auto ll = lm.loglikelihoods(e.context, e.choices);
  const TaskResult r = evaluate_task(lm, t, {e});
  const int acc_pick = ll[0].logprob >= ll[1].logprob ? 0 : 1;
  const int norm_pick = ll[0].logprob / 2.0 >= ll[1].logprob / 12.0 ? 0 : 1;
  ASSERT_NE(acc_pick, norm_pick) << "the fixture should make acc and acc_norm disagree";
  EXPECT_EQ(r.items[0]["prediction"], acc_pick);
  EXPECT_EQ(r.items[0]["prediction_norm"], norm_pick);
  EXPECT_EQ(r.metric("acc").value, acc_pick == 1 ? 1.0 : 0.0);
  EXPECT_EQ(r.metric("acc_norm").value, norm_pick == 1 ? 1.0 : 0.0);
}

TEST(Statistics, MeanStderrAndBootstrap) {
  const MetricValue m = mean_metric("acc", {1, 0, 1, 1});
  EXPECT_DOUBLE_EQ(m.value, 0.75);
  EXPECT_DOUBLE_EQ(m.stderr, std::sqrt(0.75 * 0.25 * 4 / 3 / 4));  // sample std / sqrt(n)
  // Bootstrap of the mean approaches the analytic stderr.
  std::vector<double> x(400);
  std::mt19937 rng(1);
  for (auto& v : x) v = double(rng() % 2);
  const MetricValue a = mean_metric("m", x);
  const double b = bootstrap_stderr(x.size(), [&](const std::vector<size_t>& idx) {
    double s = 0;
    for (size_t i : idx) s += x[i];
    return s / double(idx.size());
  });
  EXPECT_NEAR(b, a.stderr, 0.15 * a.stderr);
  EXPECT_EQ(b, bootstrap_stderr(x.size(), [&](const std::vector<size_t>& idx) {
              double s = 0;
              for (size_t i : idx) s += x[i];
              return s / double(idx.size());
            }));  // fixed seed: deterministic
}

TEST(Evaluate, SerialAndParallelGiveIdenticalResults) {
  const Model m = load_model(test::write_tiny_model(test::temp_dir("eval-par") + "/m.gguf"));
  const LanguageModel lm(m);
  const auto tasks = builtin_tasks();
  for (const char* name : {"add2", "reply_select", "instruct", "dialogue_reply", "story_ppl"}) {
    const TaskDef& t = find_task(tasks, name);
    const auto items = task_items(t, 12);
    const TaskResult a = evaluate_task(lm, t, items, false), b = evaluate_task(lm, t, items, true);
    EXPECT_EQ(a.items, b.items) << name;
    for (size_t i = 0; i < a.metrics.size(); ++i) {
      EXPECT_EQ(a.metrics[i].value, b.metrics[i].value) << name;
      EXPECT_EQ(a.metrics[i].stderr, b.metrics[i].stderr) << name;
    }
  }
}

// A model whose chat template is not recognised is evaluated with qbench's own turn format, and
// every chat item's record says so (qbench run counts these notes; report flags the run).
TEST(Evaluate, GuessedChatTemplateIsNotedPerItem) {
  Model m = load_model(test::write_tiny_model(test::temp_dir("eval-tpl") + "/m.gguf"));
  const auto tasks = builtin_tasks();
  TaskDef t = find_task(tasks, "reply_select");
  t.chat = true;  // as ifeval's raw user turns
  const auto items = task_items(t, 3);
  m.chat_template = "{% for message in messages %}{{ message.content }}{% endfor %}";
  for (const auto& rec : evaluate_task(LanguageModel(m), t, items, false).items) {
    ASSERT_TRUE(rec.contains("notes")) << rec.dump();
    EXPECT_EQ(rec["notes"][0], kChatTemplateGuessed);
  }
  m.chat_template = "{{ '<|im_start|>' + message['role'] }}";
  for (const auto& rec : evaluate_task(LanguageModel(m), t, items, false).items) EXPECT_FALSE(rec.contains("notes"));
  m.chat_template.clear();  // qbench's own models: its own format, nothing guessed
  for (const auto& rec : evaluate_task(LanguageModel(m), t, items, false).items) EXPECT_FALSE(rec.contains("notes"));
}

}  // namespace
}  // namespace qbench
