// Math and reasoning generators. Formats are fixed: qbench's default model is trained on them.
// Arithmetic answers are written least-significant digit first and zero-padded, which a small
// left-to-right model can learn (each output digit depends only on digits already seen).
#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "datasets/generators/common.h"
#include "datasets/generators/generators.h"

namespace qbench {

using gen::generate_items;
using gen::num_digits;

std::string reversed_padded(int64_t n, int width) {
  QB_ASSERT(n >= 0);
  std::string s = std::to_string(n);
  QB_ASSERT(static_cast<int>(s.size()) <= width);
  std::reverse(s.begin(), s.end());
  s.append(static_cast<size_t>(width) - s.size(), '0');
  return s;
}

namespace {

void set_reversed(Example& e, const std::string& question, int64_t result, int width) {
  e.context = "Q: " + question + " A:";
  e.target = " " + reversed_padded(result, width) + "\n";
  e.answer = std::to_string(result);
}

void addition(Rng& rng, Example& e, bool three_digit) {
  int64_t a, b;
  if (three_digit) {
    a = rng.uniform(100, 999);
    b = rng.uniform(10, 999);
    if (rng.coin()) std::swap(a, b);
  } else {
    a = rng.uniform(10, 99);
    b = rng.uniform(10, 99);
  }
  const int width = std::max(num_digits(a), num_digits(b)) + 1;
  set_reversed(e, std::to_string(a) + "+" + std::to_string(b) + "=?", a + b, width);
}

void subtraction(Rng& rng, Example& e, bool three_digit) {
  int64_t a, b;
  if (three_digit) {
    a = rng.uniform(100, 999);
    b = rng.uniform(10, a);
  } else {
    a = rng.uniform(10, 99);
    b = rng.uniform(10, a);
  }
  set_reversed(e, std::to_string(a) + "-" + std::to_string(b) + "=?", a - b, num_digits(a));
}

// ---- word problems ----
struct Person {
  const char* name;
  const char* pronoun;  // "She" / "He"
};
const std::vector<Person> kPeople = {
    {"Ann", "She"}, {"Tom", "He"}, {"Mia", "She"}, {"Sam", "He"}, {"Eva", "She"}, {"Ben", "He"},
    {"Lily", "She"}, {"Max", "He"}, {"Zoe", "She"}, {"Leo", "He"}, {"Ada", "She"}, {"Jack", "He"}};
const std::vector<std::string> kObjects = {"apples", "pens", "cards", "books", "eggs", "stamps",
                                           "shells", "coins", "cups", "toys", "rocks", "plums"};

struct Step {
  const char* text;  // "buys %d more" / "gives away %d"
  int sign;
};
const std::vector<Step> kGains = {{"buys", +1}, {"gets", +1}, {"finds", +1}};
const std::vector<Step> kLosses = {{"gives away", -1}, {"loses", -1}, {"sells", -1}};

std::string step_sentence(const std::string& subject, const Step& s, int64_t n) {
  std::string t = subject + " " + s.text + " " + std::to_string(n);
  if (s.sign > 0) t += " more";
  return t + ".";
}

void word_problem(Rng& rng, Example& e) {
  const Person& p = rng.pick(kPeople);
  const std::string& obj = rng.pick(kObjects);
  const int steps = rng.coin() ? 1 : 2;
  int64_t value = rng.uniform(10, 99);
  std::string q = std::string(p.name) + " has " + std::to_string(value) + " " + obj + ".";
  for (int i = 0; i < steps; ++i) {
    // A loss is only drawn when at least 10 remain to give away, so values stay >= 0.
    const bool gain = value < 10 || rng.coin();
    const Step& s = gain ? rng.pick(kGains) : rng.pick(kLosses);
    const int64_t n = gain ? rng.uniform(10, 99) : rng.uniform(10, std::min<int64_t>(value, 99));
    value += s.sign * n;
    std::string subject = p.pronoun;
    if (i > 0) subject = "Then " + std::string(1, static_cast<char>(subject[0] + ('a' - 'A'))) + subject.substr(1);
    q += " " + step_sentence(subject, s, n);
  }
  q += " How many " + obj + " does " + p.name + " have?";
  set_reversed(e, q, value, 3);
  e.meta = {{"steps", steps}};
}

// ---- compare ----
int64_t digit_permutation(Rng& rng, int64_t a) {
  std::string s = std::to_string(a);
  for (int tries = 0; tries < 8; ++tries) {
    std::string t = s;
    std::vector<char> v(t.begin(), t.end());
    rng.shuffle(v);
    t.assign(v.begin(), v.end());
    if (t[0] != '0' && t != s) return std::stoll(t);
  }
  return -1;
}

void compare(Rng& rng, Example& e) {
  const bool larger = rng.coin();
  const int64_t lo = rng.coin() ? 10 : 100;
  int64_t a = rng.uniform(lo, 999), b = -1;
  if (rng.coin()) b = digit_permutation(rng, a);  // the hard case: same digits, different order
  while (b < 0 || b == a) b = rng.uniform(lo, 999);
  const int64_t result = larger ? std::max(a, b) : std::min(a, b);
  e.context = "Q: Which is " + std::string(larger ? "larger" : "smaller") + ", " + std::to_string(a) +
              " or " + std::to_string(b) + "? A:";
  e.answer = std::to_string(result);
  e.target = " " + e.answer + "\n";
}

// ---- sort ----
void sort_numbers(Rng& rng, Example& e) {
  const int n = static_cast<int>(rng.uniform(3, 5));
  std::vector<int64_t> v;
  while (static_cast<int>(v.size()) < n) {
    const int64_t x = rng.uniform(10, 99);
    if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
  }
  std::string q = "Q: Sort";
  for (int64_t x : v) q += " " + std::to_string(x);
  std::sort(v.begin(), v.end());
  std::string a;
  for (int64_t x : v) a += (a.empty() ? "" : " ") + std::to_string(x);
  e.context = q + ". A:";
  e.answer = a;
  e.target = " " + a + "\n";
}

// ---- count ----
// Short words, several with letters repeated up to 5 times so that every count 0..5 occurs.
const std::vector<std::string> kCountWords = {
    "banana", "apple", "papaya", "cherry", "lemon", "melon", "orange", "grape", "kiwi", "mango",
    "coconut", "tomato", "potato", "letter", "coffee", "bubble", "puppy", "kitten", "rabbit",
    "yellow", "hello", "balloon", "pepper", "summer", "little", "giggle", "cookie", "bookkeeper",
    "mississippi", "abracadabra", "assesses", "possesses", "referee", "cheerleader", "successes",
    "engineer", "committee", "tattoo", "voodoo", "cocoon", "seesaw", "bamboo", "happy", "pizza"};

void count_letters(Rng& rng, Example& e) {
  // Draw the count first (uniform over 0..5), then a (word, letter) pair with that count.
  const int want = static_cast<int>(rng.uniform(0, 5));
  std::vector<std::pair<const std::string*, char>> pairs;
  for (const auto& w : kCountWords) {
    for (char c = 'a'; c <= 'z'; ++c) {
      if (std::count(w.begin(), w.end(), c) == want) pairs.push_back({&w, c});
    }
  }
  QB_ASSERT(!pairs.empty());
  const auto& [word, letter] = rng.pick(pairs);
  e.context = std::string("Q: How many ") + letter + " in " + *word + "? A:";
  e.answer = std::to_string(want);
  e.target = " " + e.answer + "\n";
}

// ---- logic ----
// Nonsense categories so that the answer must follow from the premises, not from world knowledge.
// Only entailed conclusions are asked (no "unknown" cases); yes and no are equally likely.
const std::vector<std::string> kCategories = {"blicket", "wug", "dup", "fep", "tove", "zorp",
                                              "glim", "quib", "snerk", "frap", "mib", "toma",
                                              "kern", "vop", "lorp", "jub"};
const std::vector<std::string> kNames = {"Zod", "Mip", "Tal", "Kip", "Rue", "Bex",
                                         "Nim", "Pog", "Fen", "Yul", "Dax", "Oli"};
const std::vector<std::string> kProperties = {"red", "blue", "big", "small", "soft", "loud",
                                              "cold", "round", "shiny", "fast", "green", "warm"};
// If-then over nonsense events: condition clause, result (statement, question, negation).
struct Event {
  const char* happens;      // "Zod glims"   (used as "If Zod glims," and "Zod glims.")
  const char* not_happens;  // "Zod does not glim"
  const char* ask;          // "Does Zod glim?"
};
struct Outcome {
  const char* holds;      // "the lamp is on"
  const char* not_holds;  // "the lamp is not on"
  const char* ask;        // "Is the lamp on?"
};
const std::vector<Outcome> kOutcomes = {
    {"the grass is wet", "the grass is not wet", "Is the grass wet?"},
    {"the lamp is on", "the lamp is not on", "Is the lamp on?"},
    {"the door is open", "the door is not open", "Is the door open?"},
    {"the bell rings", "the bell does not ring", "Does the bell ring?"},
    {"the box is red", "the box is not red", "Is the box red?"},
    {"the dog barks", "the dog does not bark", "Does the dog bark?"}};
const std::vector<std::string> kVerbs = {"glims", "zorps", "flurbs", "mips", "snerks", "daxes", "vops"};

std::string cap(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

void logic(Rng& rng, Example& e) {
  const bool yes = rng.coin();
  const int form = static_cast<int>(rng.uniform(0, 2));
  std::string x = rng.pick(kCategories), y = rng.pick(kCategories);
  while (y == x) y = rng.pick(kCategories);
  const std::string& n = rng.pick(kNames);
  const std::string& p = rng.pick(kProperties);
  std::string q;
  if (form == 0) {
    // Syllogism. yes: All X are P. N is a X. Is N P?
    //            no:  All X are P. N is not P. Is N a X?   (modus tollens)
    //            or   No X are P. N is a X. Is N P?
    if (yes) {
      q = "All " + x + "s are " + p + ". " + n + " is a " + x + ". Is " + n + " " + p + "?";
    } else if (rng.coin()) {
      q = "All " + x + "s are " + p + ". " + n + " is not " + p + ". Is " + n + " a " + x + "?";
    } else {
      q = "No " + x + "s are " + p + ". " + n + " is a " + x + ". Is " + n + " " + p + "?";
    }
  } else if (form == 1) {
    // Chain. yes: All X are Y. All Y are P. N is a X. Is N P?
    //        no:  All X are Y. No Y are P. N is a X. Is N P?
    q = "All " + x + "s are " + y + "s. " + (yes ? "All " : "No ") + y + "s are " + p + ". " + n +
        " is a " + x + ". Is " + n + " " + p + "?";
  } else {
    // If-then. yes: If N V, O. N V. O?              (modus ponens)
    //          no:  If N V, O. not O. Does N V?     (modus tollens)
    const Outcome& o = rng.pick(kOutcomes);
    std::string verb = rng.pick(kVerbs);
    std::string base = verb.substr(0, verb.size() - (verb.ends_with("es") ? 2 : 1));
    if (yes) {
      q = "If " + n + " " + verb + ", " + o.holds + ". " + n + " " + verb + ". " + o.ask;
    } else {
      q = "If " + n + " " + verb + ", " + o.holds + ". " + cap(o.not_holds) + ". Does " + n + " " +
          base + "?";
    }
  }
  e.context = "Q: " + q + " A:";
  e.answer = yes ? "yes" : "no";
  e.target = " " + e.answer + "\n";
  e.meta = {{"form", form}};
}

}  // namespace

std::vector<Example> generate_add2(int64_t count, uint64_t seed) {
  return generate_items("add2", count, seed, [](Rng& r, Example& e) { addition(r, e, false); });
}
std::vector<Example> generate_add3(int64_t count, uint64_t seed) {
  return generate_items("add3", count, seed, [](Rng& r, Example& e) { addition(r, e, true); });
}
std::vector<Example> generate_sub2(int64_t count, uint64_t seed) {
  return generate_items("sub2", count, seed, [](Rng& r, Example& e) { subtraction(r, e, false); });
}
std::vector<Example> generate_sub3(int64_t count, uint64_t seed) {
  return generate_items("sub3", count, seed, [](Rng& r, Example& e) { subtraction(r, e, true); });
}
std::vector<Example> generate_mul(int64_t count, uint64_t seed) {
  return generate_items("mul", count, seed, [](Rng& r, Example& e) {
    const int64_t a = r.uniform(10, 99), b = r.uniform(2, 9);
    set_reversed(e, std::to_string(a) + "*" + std::to_string(b) + "=?", a * b, 3);
  });
}
std::vector<Example> generate_word(int64_t count, uint64_t seed) {
  return generate_items("word", count, seed, word_problem);
}
std::vector<Example> generate_compare(int64_t count, uint64_t seed) {
  return generate_items("compare", count, seed, compare);
}
std::vector<Example> generate_sort(int64_t count, uint64_t seed) {
  return generate_items("sort", count, seed, sort_numbers);
}
std::vector<Example> generate_count(int64_t count, uint64_t seed) {
  return generate_items("count", count, seed, count_letters);
}
std::vector<Example> generate_logic(int64_t count, uint64_t seed) {
  return generate_items("logic", count, seed, logic);
}

}  // namespace qbench
