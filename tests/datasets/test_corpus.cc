// training_text and the de-duplication of training items against evaluation items.
#include <gtest/gtest.h>

#include <set>

#include "datasets/corpus.h"
#include "datasets/generators/generators.h"

namespace qbench {
namespace {

Example item(std::string context, std::string target) {
  Example e;
  e.context = std::move(context);
  e.target = std::move(target);
  return e;
}

TEST(Corpus, TrainingText) {
  EXPECT_EQ(training_text(item("Q: 1+1=? A:", " 20\n")), "Q: 1+1=? A: 20\n");
  EXPECT_EQ(training_text(item("abc", " def")), "abc def\n");  // newline appended once
  Example mc = item("User: hi!\nBot:", "");
  mc.choices = {" A.", " B."};
  mc.gold = 1;
  EXPECT_EQ(training_text(mc), "User: hi!\nBot: B.\n");
  Example partial = item("The cup fell so _ broke.", " broke.");
  partial.choices = {"The cup fell so the cup", "The cup fell so the table"};
  partial.gold = 0;
  partial.meta = {{"scoring", "partial"}};
  EXPECT_EQ(training_text(partial), "The cup fell so the cup broke.\n");
}

TEST(Corpus, DedupRemovesByContextOrText) {
  std::vector<Example> eval = {item("Q: 1+1=? A:", " 20\n"), item("", "A story.\n")};
  std::vector<Example> train = {item("Q: 1+1=? A:", " 30\n"),  // same context, other target
                                item("Q: 2+2=? A:", " 40\n"),
                                item("", "A story.\n"),        // same text, empty context
                                item("", "Another story.\n")};
  EXPECT_EQ(dedup_against(train, eval), 2u);
  ASSERT_EQ(train.size(), 2u);
  EXPECT_EQ(train[0].context, "Q: 2+2=? A:");
  EXPECT_EQ(train[1].target, "Another story.\n");
  EXPECT_EQ(dedup_against(train, eval), 0u);
}

// The built-in suites evaluate on kEvalSeed items and train the default model on kTrainSeed
// items; after dedup_against() no training item shares a context or a text with an evaluation
// item, across all generators (reply_select contexts are dialogue contexts too).
TEST(Corpus, TrainAndEvalSeedsAreDisjointAfterDedup) {
  std::vector<Example> eval, train;
  for (const auto& name : builtin_generators().names()) {
    const auto& g = builtin_generators().get(name);
    auto e = g.generate(200, kEvalSeed);
    auto t = g.generate(5000, kTrainSeed);
    eval.insert(eval.end(), e.begin(), e.end());
    train.insert(train.end(), t.begin(), t.end());
  }
  const size_t before = train.size();
  const size_t removed = dedup_against(train, eval);
  EXPECT_EQ(before - removed, train.size());
  EXPECT_GT(removed, 0u);                // small spaces (mul, count, dialogue) do overlap
  EXPECT_LT(removed, before / 4);        // but most of the corpus survives
  std::set<std::string> eval_contexts, eval_texts;
  for (const auto& e : eval) {
    if (!e.context.empty()) eval_contexts.insert(e.context);
    eval_texts.insert(training_text(e));
  }
  for (const auto& t : train) {
    EXPECT_EQ(eval_contexts.count(t.context), 0u) << t.id;
    EXPECT_EQ(eval_texts.count(training_text(t)), 0u) << t.id;
  }
  std::printf("dedup removed %zu of %zu training items\n", removed, before);
}

}  // namespace
}  // namespace qbench
