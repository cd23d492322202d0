
#include "datasets/generators/generators.h"
#include "engine/core/error.h"

namespace qbench {

void GeneratorRegistry::add(Generator generator) {
  if (generator.name.empty()) throw Error("generator registry: empty generator name");
  const std::string name = generator.name;
  if (!generators_.emplace(name, std::move(generator)).second) {
    throw Error("generator registry: duplicate generator name '" + name + "'");
  }
}

const Generator& GeneratorRegistry::get(const std::string& name) const {
  auto it = generators_.find(name);
  if (it == generators_.end()) {
    std::string known;
    for (const auto& [n, g] : generators_) known += (known.empty() ? "" : ", ") + n;
    throw Error("unknown generator '" + name + "' (known: " + known + ")");
  }
  return it->second;
}

std::vector<std::string> GeneratorRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [n, g] : generators_) out.push_back(n);
  return out;
}

void register_builtin_generators(GeneratorRegistry& r) {
  r.add({"add2", "math", "2-digit addition, sum reversed: 'Q: 47+85=? A:' -> ' 231\\n'", generate_add2});
  r.add({"add3", "math", "3-digit addition, sum reversed: 'Q: 347+85=? A:' -> ' 2340\\n'", generate_add3});
  r.add({"sub2", "math", "2-digit subtraction, reversed: 'Q: 85-47=? A:' -> ' 83\\n'", generate_sub2});
  r.add({"sub3", "math", "3-digit subtraction, reversed: 'Q: 347-85=? A:' -> ' 262\\n'", generate_sub3});
  r.add({"mul", "math", "2-digit x 1-digit, reversed: 'Q: 47*8=? A:' -> ' 673\\n'", generate_mul});
  r.add({"word", "math", "one/two-step word problems, answer reversed to 3 digits", generate_word});
  r.add({"compare", "math", "'Q: Which is larger, 347 or 374? A:' -> ' 374\\n'", generate_compare});
  r.add({"sort", "math", "'Q: Sort 52 17 38. A:' -> ' 17 38 52\\n'", generate_sort});
  r.add({"count", "math", "'Q: How many a in banana? A:' -> ' 3\\n'", generate_count});
  r.add({"logic", "math", "syllogisms and if-then over nonsense words, yes/no", generate_logic});
  r.add({"dialogue", "chat", "'User: hi there!\\nBot:' -> ' Hello! Nice to see you.\\n'", generate_dialogue});
  r.add({"reply_select", "chat", "pick the bot reply that fits the user turn (4 choices)", generate_reply_select});
  r.add({"instruct", "chat", "checkable IFEval-style instructions on simple requests", generate_instruct});
  r.add({"story", "chat", "tiny template stories (training text, held-out perplexity)", generate_story});
}

const GeneratorRegistry& builtin_generators() {
  static const GeneratorRegistry registry = [] {
    GeneratorRegistry r;
    register_builtin_generators(r);
    return r;
  }();
  return registry;
}

}  // namespace qbench
