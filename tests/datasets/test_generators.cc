// Project-written generators: registry, determinism (pinned content), formats and correctness.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <regex>
#include <set>

#include "datasets/corpus.h"
#include "datasets/generators/generators.h"
#include "engine/core/rng.h"
#include "datasets/instructions.h"
#include "engine/core/error.h"

namespace qbench {
namespace {

uint64_t content_hash(const std::vector<Example>& items) {
  uint64_t h = fnv1a64("");
  for (const auto& e : items) {
    h = fnv1a64(e.id + '\x1f' + e.task + '\x1f' + e.context + '\x1f' + e.target + '\x1f', h);
    for (const auto& c : e.choices) h = fnv1a64(c + '\x1e', h);
    h = fnv1a64(std::to_string(e.gold) + '\x1f' + e.answer + '\x1f' + e.meta.dump() + '\x1d', h);
  }
  return h;
}

TEST(Rng, PinnedStream) {
  Rng rng(42);
  // xoshiro256** seeded by splitmix64(42): fixed forever (items depend on it).
  const uint64_t first = rng.next();
  Rng again(42);
  EXPECT_EQ(first, again.next());
  Rng r2(7);
  std::map<int64_t, int> counts;
  for (int i = 0; i < 60000; ++i) counts[r2.uniform(1, 6)]++;
  ASSERT_EQ(counts.size(), 6u);
  for (const auto& [v, n] : counts) EXPECT_NEAR(n, 10000, 500) << v;
}

TEST(Generators, ReversedPadded) {
  EXPECT_EQ(reversed_padded(432, 4), "2340");
  EXPECT_EQ(reversed_padded(262, 3), "262");
  EXPECT_EQ(reversed_padded(376, 3), "673");
  EXPECT_EQ(reversed_padded(68, 3), "860");
  EXPECT_EQ(reversed_padded(0, 2), "00");
}

TEST(Generators, RegistryHasAllBuiltinsAndRejectsDuplicates) {
  const auto& reg = builtin_generators();
  const std::vector<std::string> want = {"add2", "add3", "compare", "count", "dialogue", "instruct", "logic",
                                         "mul", "reply_select", "sort", "story", "sub2", "sub3", "word"};
  EXPECT_EQ(reg.names(), want);
  GeneratorRegistry r;
  register_builtin_generators(r);
  EXPECT_THROW(register_builtin_generators(r), Error);
  EXPECT_THROW(r.add({"add2", "math", "", generate_add2}), Error);
  try {
    reg.get("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("add2"), std::string::npos);
  }
}

TEST(Generators, DeterministicAndPrefixStable) {
  for (const auto& name : builtin_generators().names()) {
    const auto& g = builtin_generators().get(name);
    const auto a = g.generate(300, kEvalSeed);
    const auto b = g.generate(300, kEvalSeed);
    EXPECT_EQ(a, b) << name;
    const auto prefix = g.generate(50, kEvalSeed);
    EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), a.begin())) << name;
    const auto other = g.generate(300, kEvalSeed + 1);
    size_t same = 0;
    for (size_t i = 0; i < a.size(); ++i) same += training_text(a[i]) == training_text(other[i]);
    EXPECT_LT(same, 150u) << name << ": another seed should give other items";
    EXPECT_TRUE(g.generate(0, 1).empty());
  }
}

// Pinned content of the first 200 evaluation items of every generator: any change of format,
// word list or RNG shows up here (and changes the default model's training data).
TEST(Generators, PinnedContentHashes) {
  const std::map<std::string, uint64_t> pinned = {
#include "pinned_hashes.inc"
  };
  for (const auto& name : builtin_generators().names()) {
    const uint64_t h = content_hash(builtin_generators().get(name).generate(200, kEvalSeed));
    auto it = pinned.find(name);
    if (it == pinned.end() || it->second != h) {
      // The line to put into pinned_hashes.inc once the change is intended.
      std::printf("    {\"%s\", 0x%016llxull},\n", name.c_str(), static_cast<unsigned long long>(h));
    }
    ASSERT_NE(it, pinned.end()) << name;
    EXPECT_EQ(h, it->second) << name;
  }
}

TEST(Generators, PinnedItems) {
  const auto add3 = generate_add3(1, kEvalSeed)[0];
  EXPECT_EQ(add3.id, "add3-1000-0");
  EXPECT_EQ(add3.context, "Q: 649+770=? A:");
  EXPECT_EQ(add3.target, " 9141\n");
  EXPECT_EQ(add3.answer, "1419");
  const auto logic = generate_logic(1, kEvalSeed)[0];
  EXPECT_EQ(logic.context, "Q: If Dax vops, the bell rings. The bell does not ring. Does Dax vop? A:");
  EXPECT_EQ(logic.target, " no\n");
  const auto dialogue = generate_dialogue(1, kEvalSeed)[0];
  EXPECT_EQ(dialogue.context, "User: hello friend, what do you do for fun?\nBot:");
  EXPECT_EQ(dialogue.target, " My hobby is learning new words.\n");
  EXPECT_EQ(dialogue.meta, (nlohmann::json{{"intent", "hobby"}, {"user", "hello friend, what do you do for fun?"}}));
}

bool printable(const std::string& s) {
  for (char c : s) {
    if (c != '\n' && (c < 0x20 || c > 0x7E)) return false;
  }
  return true;
}

TEST(Generators, TextIsPrintableAsciiAndShort) {
  for (const auto& name : builtin_generators().names()) {
    const auto& g = builtin_generators().get(name);
    const size_t limit = name == "word" ? kMaxWordChars : g.family == "math" ? kMaxMathChars : kMaxChatChars;
    std::set<std::string> ids;
    for (const auto& e : g.generate(3000, kTrainSeed)) {
      EXPECT_EQ(e.task, name);
      EXPECT_TRUE(ids.insert(e.id).second) << e.id;
      for (const auto* s : {&e.context, &e.target, &e.answer}) EXPECT_TRUE(printable(*s)) << e.id << ": " << *s;
      for (const auto& c : e.choices) EXPECT_TRUE(printable(c)) << e.id;
      if (e.is_multiple_choice()) {
        for (const auto& c : e.choices) EXPECT_LE(e.context.size() + c.size(), limit) << e.id;
      } else {
        EXPECT_LE(e.context.size() + e.target.size(), limit) << e.id << ": " << e.context << e.target;
        EXPECT_TRUE(e.target.ends_with("\n")) << e.id;
        EXPECT_EQ(e.target.find('\n'), e.target.size() - 1) << e.id;
      }
    }
  }
}

TEST(Generators, ArithmeticAnswersAreRight) {
  const std::regex re(R"(Q: (\d+)([-+*])(\d+)=\? A:)");
  for (const auto& name : {"add2", "add3", "sub2", "sub3", "mul"}) {
    const std::string n = name;
    for (const auto& e : builtin_generators().get(n).generate(2000, kEvalSeed)) {
      std::smatch m;
      ASSERT_TRUE(std::regex_match(e.context, m, re)) << e.context;
      const int64_t a = std::stoll(m[1]), b = std::stoll(m[3]);
      const char op = m[2].str()[0];
      const int64_t r = op == '+' ? a + b : op == '-' ? a - b : a * b;
      EXPECT_EQ(e.answer, std::to_string(r));
      std::string digits = e.target.substr(1, e.target.size() - 2);
      const int width = op == '*' ? 3 : op == '-' ? static_cast<int>(m[1].length())
                                                  : static_cast<int>(std::max(m[1].length(), m[3].length())) + 1;
      EXPECT_EQ(static_cast<int>(digits.size()), width) << e.context << e.target;
      std::reverse(digits.begin(), digits.end());
      EXPECT_EQ(std::stoll(digits), r) << e.context << e.target;
      if (n == "add2") {
        EXPECT_TRUE(a >= 10 && a <= 99 && b >= 10 && b <= 99);
      }
      if (n == "add3") {
        EXPECT_TRUE((a >= 100 || b >= 100) && a >= 10 && b >= 10 && a <= 999 && b <= 999);
      }
      if (n == "sub2" || n == "sub3") {
        EXPECT_GE(a, b);
      }
      if (n == "sub3") {
        EXPECT_GE(a, 100);
      }
      if (n == "mul") {
        EXPECT_TRUE(a >= 10 && a <= 99 && b >= 2 && b <= 9);
      }
    }
  }
  // The brief's own examples.
  EXPECT_EQ(reversed_padded(347 + 85, 4), "2340");
}

TEST(Generators, WordProblemsAreRight) {
  const std::regex start(R"(^Q: ([A-Z][a-z]+) has (\d+) ([a-z]+)\.)");
  const std::regex step(R"((?:She|He|Then she|Then he) (buys|gets|finds|gives away|loses|sells) (\d+)( more)?\.)");
  std::set<int> steps;
  for (const auto& e : generate_word(2000, kEvalSeed)) {
    std::smatch m;
    ASSERT_TRUE(std::regex_search(e.context, m, start)) << e.context;
    int64_t value = std::stoll(m[2]);
    const std::string name = m[1], obj = m[3];
    int n = 0;
    for (auto it = std::sregex_iterator(e.context.begin(), e.context.end(), step); it != std::sregex_iterator(); ++it) {
      const std::string verb = (*it)[1];
      const bool gain = verb == "buys" || verb == "gets" || verb == "finds";
      EXPECT_EQ(gain, (*it)[3].matched) << e.context;
      value += (gain ? 1 : -1) * std::stoll((*it)[2]);
      EXPECT_GE(value, 0);
      ++n;
    }
    steps.insert(n);
    EXPECT_TRUE(e.context.ends_with(" How many " + obj + " does " + name + " have? A:")) << e.context;
    EXPECT_EQ(e.answer, std::to_string(value)) << e.context;
    EXPECT_EQ(e.target, " " + reversed_padded(value, 3) + "\n");
  }
  EXPECT_EQ(steps, (std::set<int>{1, 2}));
}

TEST(Generators, CompareSortCount) {
  const std::regex cmp(R"(Q: Which is (larger|smaller), (\d+) or (\d+)\? A:)");
  for (const auto& e : generate_compare(1000, kEvalSeed)) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(e.context, m, cmp)) << e.context;
    const int64_t a = std::stoll(m[2]), b = std::stoll(m[3]);
    EXPECT_NE(a, b);
    EXPECT_EQ(e.answer, std::to_string(m[1] == "larger" ? std::max(a, b) : std::min(a, b)));
    EXPECT_EQ(e.target, " " + e.answer + "\n");
  }
  for (const auto& e : generate_sort(1000, kEvalSeed)) {
    ASSERT_TRUE(e.context.starts_with("Q: Sort ") && e.context.ends_with(". A:")) << e.context;
    std::vector<int> v;
    std::istringstream in(e.context.substr(8, e.context.size() - 12));
    for (int x; in >> x;) v.push_back(x);
    EXPECT_GE(v.size(), 3u);
    std::sort(v.begin(), v.end());
    std::string want;
    for (int x : v) {
      if (!want.empty()) want += ' ';
      want += std::to_string(x);
    }
    EXPECT_EQ(e.answer, want);
    EXPECT_EQ(e.target, " " + want + "\n");
  }
  std::map<std::string, int> counts;
  const std::regex cnt(R"(Q: How many ([a-z]) in ([a-z]+)\? A:)");
  for (const auto& e : generate_count(3000, kEvalSeed)) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(e.context, m, cnt)) << e.context;
    const std::string word = m[2];
    EXPECT_EQ(e.answer, std::to_string(std::count(word.begin(), word.end(), m[1].str()[0])));
    counts[e.answer]++;
  }
  ASSERT_EQ(counts.size(), 6u);  // 0..5, about evenly
  for (const auto& [a, n] : counts) EXPECT_NEAR(n, 500, 100) << a;
}

TEST(Generators, LogicIsBalancedAndMatchesTheForms) {
  int yes = 0, no = 0;
  for (const auto& e : generate_logic(4000, kEvalSeed)) {
    EXPECT_TRUE(e.answer == "yes" || e.answer == "no");
    (e.answer == "yes" ? yes : no)++;
    const std::string& c = e.context;
    // Negative premises only appear in "no" items; "no" items always have one.
    const bool negative = c.find(" not ") != std::string::npos || c.find("No ") != std::string::npos;
    EXPECT_EQ(negative, e.answer == "no") << c;
  }
  EXPECT_NEAR(yes, 2000, 150);
  EXPECT_NEAR(no, 2000, 150);
  EXPECT_EQ(yes + no, 4000);
}

TEST(Generators, ChatItems) {
  for (const auto& e : generate_dialogue(500, kEvalSeed)) {
    EXPECT_TRUE(e.context.starts_with("User: ") && e.context.ends_with("\nBot:")) << e.context;
    EXPECT_EQ(e.target, " " + e.answer + "\n");
    EXPECT_TRUE(e.meta.contains("intent"));
  }
  for (const auto& e : generate_reply_select(500, kEvalSeed)) {
    ASSERT_EQ(e.choices.size(), 4u);
    ASSERT_GE(e.gold, 0);
    ASSERT_LT(e.gold, 4);
    EXPECT_EQ(e.choices[static_cast<size_t>(e.gold)], " " + e.answer);
    EXPECT_EQ(std::set<std::string>(e.choices.begin(), e.choices.end()).size(), 4u) << e.id;
  }
  std::set<std::string> kinds;
  for (const auto& e : generate_instruct(1000, kEvalSeed)) {
    const std::string id = e.meta.at("instruction_id");
    kinds.insert(id);
    EXPECT_TRUE(check_instruction(id, e.meta.at("kwargs"), e.answer)) << e.context << e.target;
    EXPECT_EQ(e.target, " " + e.answer + "\n");
  }
  EXPECT_EQ(kinds.size(), 8u);
  for (const auto& e : generate_story(500, kEvalSeed)) {
    EXPECT_TRUE(e.context.empty());
    EXPECT_GT(e.target.size(), 40u);
  }
}

}  // namespace
}  // namespace qbench
