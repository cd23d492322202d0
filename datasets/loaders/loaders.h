// Loaders for standard evaluation formats, reading the user's local copies (nothing is
// downloaded or bundled). Each returns items with lm-evaluation-harness's prompt conventions
// where it has them (see datasets/README.md for every format and prompt).
//
// Errors: a missing or unreadable file, invalid UTF-8, or a malformed record throws
// qbench::Error "<path>:<line>: <what is wrong> (<value>)".
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "datasets/example.h"

namespace qbench {

std::vector<Example> load_gsm8k(const std::string& path);          // jsonl {question, answer "... #### N"}
std::vector<Example> load_svamp(const std::string& path);          // JSON array {ID, Body, Question, Answer, ...}
std::vector<Example> load_math500(const std::string& path);        // jsonl {problem, solution, answer, subject, level, unique_id}
std::vector<Example> load_arc(const std::string& path, const std::string& task = "arc");  // HF ai2_arc jsonl
std::vector<Example> load_hellaswag(const std::string& path);      // llama.cpp 6-line text layout
std::vector<Example> load_piqa(const std::string& path);           // jsonl {goal, sol1, sol2, label}
std::vector<Example> load_winogrande(const std::string& path);     // jsonl {sentence, option1, option2, answer}
std::vector<Example> load_lambada(const std::string& path);        // jsonl {text}
std::vector<Example> load_mt_bench(const std::string& path);       // jsonl {question_id, category, turns[, reference]}
std::vector<Example> load_vicuna_bench(const std::string& path);   // jsonl {question_id, category, turns}
std::vector<Example> load_ifeval(const std::string& path);         // jsonl {key, prompt, instruction_id_list, kwargs}

struct Loader {
  std::string name;
  std::string default_path;  // relative to $QBENCH_SHARED/datasets
  std::string description;
  std::function<std::vector<Example>(const std::string& path)> load;
};

class LoaderRegistry {
 public:
  void add(Loader loader);  // throws qbench::Error on a duplicate name
  const Loader& get(const std::string& name) const;  // throws naming the known loaders
  bool contains(const std::string& name) const { return loaders_.count(name) != 0; }
  std::vector<std::string> names() const;

 private:
  std::map<std::string, Loader> loaders_;
};

// gsm8k svamp math500 arc_easy arc_challenge hellaswag piqa winogrande lambada mt_bench
// vicuna_bench ifeval.
void register_builtin_loaders(LoaderRegistry& registry);
const LoaderRegistry& builtin_loaders();

// Where a loader reads from: `explicit_path` when given, else $QBENCH_SHARED/datasets/<default>.
// Throws qbench::Error when neither is available.
std::string resolve_dataset_path(const Loader& loader, const std::string& explicit_path = "");

}  // namespace qbench
