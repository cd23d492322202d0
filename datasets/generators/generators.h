// Project-written item generators: seeded, reproducible, byte-identical on every platform.
//
// Their items are both the evaluation items of the built-in suites and the training corpus of
// qbench's small default model (a character-level Llama with a 128-character context), so the
// formats are fixed (datasets/README.md lists them) and every item is short: context + target
// at most 100 characters for math/reasoning items (110 for word problems), 120 for chat
// items. Text is printable ASCII
// plus '\n' only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "datasets/example.h"

namespace qbench {

// Seeds the built-in suites use: evaluation items come from kEvalSeed, the default model's
// training corpus from kTrainSeed (then dedup_against() the evaluation items).
inline constexpr uint64_t kEvalSeed = 1000;
inline constexpr uint64_t kTrainSeed = 2000;

// Longest context + target a generator may produce, per family (word problems: kMaxWordChars).
inline constexpr size_t kMaxMathChars = 100;
inline constexpr size_t kMaxWordChars = 110;
inline constexpr size_t kMaxChatChars = 120;

// Generates `count` items from `seed`. Prefix-stable: the first k items of generate(n, s) are
// generate(k, s). Item ids are "<name>-<seed>-<index>".
using GenerateFn = std::function<std::vector<Example>(int64_t count, uint64_t seed)>;

struct Generator {
  std::string name;
  std::string family;       // "math" or "chat"
  std::string description;  // one line, with an example
  GenerateFn generate;
};

class GeneratorRegistry {
 public:
  // Throws qbench::Error when `name` is already registered.
  void add(Generator generator);
  // Throws qbench::Error naming the unknown generator and the known ones.
  const Generator& get(const std::string& name) const;
  bool contains(const std::string& name) const { return generators_.count(name) != 0; }
  std::vector<std::string> names() const;  // sorted

 private:
  std::map<std::string, Generator> generators_;
};

// Adds every built-in generator: add2 add3 sub2 sub3 mul word compare sort count logic
// (family "math"), dialogue reply_select instruct story (family "chat").
void register_builtin_generators(GeneratorRegistry& registry);

// The built-in registry, filled once (thread-safe) and immutable afterwards.
const GeneratorRegistry& builtin_generators();

// Individual generators (also reachable through the registry).
std::vector<Example> generate_add2(int64_t count, uint64_t seed);
std::vector<Example> generate_add3(int64_t count, uint64_t seed);
std::vector<Example> generate_sub2(int64_t count, uint64_t seed);
std::vector<Example> generate_sub3(int64_t count, uint64_t seed);
std::vector<Example> generate_mul(int64_t count, uint64_t seed);
std::vector<Example> generate_word(int64_t count, uint64_t seed);
std::vector<Example> generate_compare(int64_t count, uint64_t seed);
std::vector<Example> generate_sort(int64_t count, uint64_t seed);
std::vector<Example> generate_count(int64_t count, uint64_t seed);
std::vector<Example> generate_logic(int64_t count, uint64_t seed);
std::vector<Example> generate_dialogue(int64_t count, uint64_t seed);
std::vector<Example> generate_reply_select(int64_t count, uint64_t seed);
std::vector<Example> generate_instruct(int64_t count, uint64_t seed);
std::vector<Example> generate_story(int64_t count, uint64_t seed);

// `n` written least-significant digit first, zero-padded on the right to `width` digits:
// reversed_padded(432, 4) == "2340". The answer format of the arithmetic generators.
std::string reversed_padded(int64_t n, int width);

}  // namespace qbench
