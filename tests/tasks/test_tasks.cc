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

// A chat task writes each item's user turn in the chosen template and scores the same targets;
// the result names the template. With qbench's template (a model without one) the prompts are
// exactly the generated contexts, so the numbers equal those of the task read as plain text.
TEST(Evaluate, ChatTasksWriteTheUserTurnInTheChosenTemplate) {
  Model m = load_model(test::write_tiny_model(test::temp_dir("eval-tpl") + "/m.gguf"));
  const LanguageModel lm(m);
  const TaskDef chat = find_task(builtin_tasks(), "reply_select");
  ASSERT_TRUE(chat.chat);
  TaskDef plain = chat;
  plain.chat = false;
  const auto items = task_items(chat, 4);

  const TaskResult own = evaluate_task(lm, chat, items, false);  // no template: qbench's
  EXPECT_EQ(own.chat_template, "qbench");
  EXPECT_EQ(own.to_json()["chat_template"], "qbench");
  const TaskResult as_text = evaluate_task(lm, plain, items, false);
  EXPECT_EQ(as_text.chat_template, "");
  EXPECT_FALSE(as_text.to_json().contains("chat_template"));
  EXPECT_EQ(own.items, as_text.items);

  const ChatTemplate& llama3 = chat_template(ChatTemplateId::Llama3);
  const TaskResult r = evaluate_task(lm, chat, items, false, &llama3);
  EXPECT_EQ(r.chat_template, "llama3");
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string prompt = render_user_turn(llama3, items[i].meta.at("user").get<std::string>());
    std::vector<double> want;
    for (const auto& ll : lm.loglikelihoods(prompt, items[i].choices, SpecialText::Parse)) want.push_back(ll.logprob);
    EXPECT_EQ(r.items[i]["logprobs"].get<std::vector<double>>(), want) << items[i].id;
  }
  EXPECT_NE(r.items, own.items) << "another template is another prompt";
  // A template passed for a task that is not a chat task changes nothing.
  EXPECT_EQ(evaluate_task(lm, plain, items, false, &llama3).items, as_text.items);

  // The model's own template is used when recognised; an unrecognised one stops the evaluation.
  m.chat_template = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                    "'<|im_end|>\\n'}}{% endfor %}";
  EXPECT_EQ(evaluate_task(LanguageModel(m), chat, items, false).chat_template, "chatml");
  m.chat_template = "{% for message in messages %}{{ message.content }}{% endfor %}";
  try {
    evaluate_task(LanguageModel(m), chat, items, false);
    FAIL() << "an unrecognised chat template must be an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pass --chat-template NAME"), std::string::npos) << e.what();
  }
  // ... but not for tasks that use no template.
  EXPECT_NO_THROW(evaluate_task(LanguageModel(m), plain, items, false));
}

TEST(TaskDefs, ChatTasks) {
  const auto tasks = builtin_tasks();
  for (const char* name : {"reply_select", "instruct", "dialogue_reply", "ifeval"}) {
    EXPECT_TRUE(find_task(tasks, name).chat) << name;
  }
  EXPECT_FALSE(find_task(tasks, "dialogue_ppl").chat) << "a transcript's perplexity has no prompt to format";
  // Generated chat items carry the raw user turn; their context is it in qbench's format.
  for (const char* name : {"reply_select", "instruct", "dialogue_reply"}) {
    for (const auto& e : task_items(find_task(tasks, name), 20)) {
      ASSERT_TRUE(e.meta.contains("user")) << e.id;
      EXPECT_EQ(chat_context(chat_user_turn(e)), e.context) << e.id;
    }
  }
  Example raw;
  raw.context = "Write a haiku.";
  EXPECT_EQ(chat_user_turn(raw), "Write a haiku.");  // loaders: the context is the turn

  const nlohmann::json base = {{"name", "x"}, {"kind", "target_loglik"}, {"source", {{"generator", "dialogue"}, {"count", 5}}},
                               {"chat", true}};
  EXPECT_NO_THROW(parse_task(base, "t.json"));
  nlohmann::json j = base;
  j["few_shot"] = 2;
  EXPECT_THROW(parse_task(j, "t.json"), Error);
  j = base;
  j["kind"] = "rolling_loglik";
  EXPECT_THROW(parse_task(j, "t.json"), Error);
}

}  // namespace
}  // namespace qbench
