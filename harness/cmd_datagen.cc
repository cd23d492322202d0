// qbench datagen: items of the built-in generators as text or JSONL (training corpora,
// held-out perplexity texts, inspection).
#include <iostream>
#include <sstream>

#include "datasets/corpus.h"
#include "datasets/generators/generators.h"
#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "harness/cli.h"
#include "harness/commands.h"

namespace qbench::cli {

int cmd_datagen(const std::vector<std::string>& args) {
  std::string generators, out, format = "text";
  int64_t count = 100;
  uint64_t seed = kEvalSeed;
  bool json = false;
  int threads = 0;
  po::options_description desc("qbench datagen options");
  desc.add_options()
      ("generator,g", po::value(&generators)->required()->value_name("A,B"), "comma-separated generators (see qbench tasks)")
      ("count,n", po::value(&count)->default_value(100)->value_name("N"), "items per generator")
      ("seed", po::value(&seed)->default_value(kEvalSeed)->value_name("S"),
       "generator seed (1000: the suites' evaluation items, 2000: the default model's training pool)")
      ("format", po::value(&format)->default_value("text")->value_name("F"), "text (training text, one item per line) or jsonl")
      ("out,o", po::value(&out)->value_name("FILE"), "write to FILE (atomically) instead of stdout");
  add_output_options(desc, json, threads);
  po::variables_map vm;
  if (!parse(args, desc, "usage: qbench datagen --generator story,dialogue [-n N] [--seed S] [--format text|jsonl] [--out FILE]", vm)) {
    return 0;
  }
  if (format != "text" && format != "jsonl") throw Error("--format must be text or jsonl, got '" + format + "'");
  if (count <= 0) throw Error("--count must be positive");
  std::string text;
  std::stringstream ss(generators);
  for (std::string g; std::getline(ss, g, ',');) {
    if (g.empty()) continue;
    for (const Example& e : builtin_generators().get(g).generate(count, seed)) {
      if (format == "text") {
        text += training_text(e);
      } else {
        text += json_text({{"id", e.id}, {"task", e.task}, {"context", e.context}, {"target", e.target},
                           {"choices", e.choices}, {"gold", e.gold}, {"answer", e.answer}, {"meta", e.meta}}) + "\n";
      }
    }
  }
  write_output(out, text);
  return 0;
}

}  // namespace qbench::cli
