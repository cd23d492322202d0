// Tasks as data (lm-evaluation-harness style): each task is a JSON file under tasks/defs/
// naming its kind, where its items come from, the prompt rules and the metric. A suite
// (tasks/suites/*.json) is a list of task names. Task kinds are built only on the three
// requests of tasks/lm.h.
//
// Task file fields (unknown fields are an error, so typos do not pass silently):
//   name, version (int), description
//   kind: "multiple_choice"   acc (highest summed log-likelihood) and acc_norm (each divided by
//                              the choice's length in bytes, lm-eval's acc_norm)
//         "exact_match"       greedy generation until a stop string, answer extraction, exact match
//         "instruction"       greedy generation, then the IFEval-style checker named in the item
//         "target_loglik"     log-probability of the reference target: mean log p per item and
//                              bits per byte (-sum log p / (bytes ln 2))
//         "rolling_loglik"    lm-eval's rolling log-likelihood of each item's text: word and byte
//                              perplexity, bits per byte
//   source: {"generator": NAME, "count": N, "seed": S} | {"loader": NAME, "path": optional}
//   few_shot (int, default 0), few_shot_seed (int): k solved items of the same source (never the
//            item itself), each context + target, prepended to the context
//   stop (strings, default ["\n"]), max_tokens (default 32): for generation kinds
//   extract: "exact" (trimmed first line) | "first_number" | "last_number" | "reversed_digits"
//            (digits written least-significant first: reversed, leading zeros dropped)
//            | "gsm8k" (the number after "#### ", commas removed; lm-eval's strict match)
//            | "regex:<ECMAScript regex, first capture group>"
//   chat: bool — the prompt is the item's user turn written in the model's chat template
//         (tasks/chat_template.h; the turn is meta "user" of generated chat items, else the
//         context: raw user turns of loaders); targets and choices follow it unchanged, as with
//         lm-evaluation-harness's --apply_chat_template. Not with few_shot or rolling_loglik.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "datasets/example.h"

namespace qbench {

enum class TaskKind { MultipleChoice, ExactMatch, Instruction, TargetLoglik, RollingLoglik };
const char* task_kind_name(TaskKind k);

struct TaskSource {
  std::string generator;  // or
  std::string loader;
  std::string path;       // loader's file; empty: $QBENCH_SHARED/datasets default
  int64_t count = 0;
  uint64_t seed = 0;
};

struct TaskDef {
  std::string name;
  int version = 1;
  std::string description;
  TaskKind kind = TaskKind::ExactMatch;
  TaskSource source;
  int few_shot = 0;
  uint64_t few_shot_seed = 1234;
  std::vector<std::string> stop = {"\n"};
  int64_t max_tokens = 32;
  std::string extract = "exact";
  bool chat = false;
  std::string file;  // where it was read from

  nlohmann::json to_json() const;
};

// Parses a task definition. Throws qbench::Error naming `where` and the field.
TaskDef parse_task(const nlohmann::json& j, const std::string& where);
TaskDef load_task_file(const std::string& path);

// The built-in tasks and suites shipped in tasks/defs and tasks/suites (read from the source
// tree, or $QBENCH_TASKS_DIR when set).
std::string tasks_dir();
std::vector<TaskDef> builtin_tasks();
const TaskDef& find_task(const std::vector<TaskDef>& tasks, const std::string& name);
std::vector<std::string> suite_names();
std::vector<std::string> suite_tasks(const std::string& suite);  // throws for an unknown suite

// The items of a task (generated or loaded), at most `limit` (<= 0: all), with few-shot
// contexts applied.
std::vector<Example> task_items(const TaskDef& t, int64_t limit);

// Applies `extract` to a model output; "" when nothing could be extracted.
std::string extract_answer(const std::string& rule, const std::string& output);

}  // namespace qbench
