// Scoring items of a task with a model, lm-evaluation-harness style, with standard errors and
// per-item records (for item-by-item comparison of two runs).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "datasets/example.h"
#include "tasks/chat_template.h"
#include "tasks/lm.h"
#include "tasks/task.h"

namespace qbench {

struct MetricValue {
  std::string name;
  double value = 0.0;
  double stderr = 0.0;
  bool higher_is_better = true;
  std::string stderr_method;  // "analytic" or "bootstrap"
};

struct TaskResult {
  std::string task;
  int version = 1;
  TaskKind kind = TaskKind::ExactMatch;
  int64_t n_items = 0;
  // Items whose input did not fit the context window and lost tokens from the left (lm-eval's
  // truncation), and among them those whose scored continuation itself was cut: their numbers
  // are measured on less than the item. Per item: "truncated_tokens" / "unscored_tokens".
  int64_t n_truncated = 0, n_unscored = 0;
  std::vector<MetricValue> metrics;
  std::vector<nlohmann::json> items;  // one record per item, in item order
  double seconds = 0.0;
  std::string chat_template;  // chat tasks: the named template their prompts were written in; else empty

  const MetricValue& metric(const std::string& name) const;  // asserts it exists
  nlohmann::json to_json() const;  // without the per-item records ("chat_template" for chat tasks)
};

// Evaluates `items` of task `t`. With `parallel`, items run concurrently (TBB); the result is
// identical either way (each item's computation is independent and deterministic).
// A chat task (t.chat) writes each item's user turn in `chat` with the assistant's turn opened,
// tokenized with special tokens parsed; its targets and choices follow unchanged, as
// lm-evaluation-harness's --apply_chat_template does. `chat` == nullptr: the template
// choose_chat_template picks for lm's model without a name (throws qbench::Error when the model's
// template is not recognised).
TaskResult evaluate_task(const LanguageModel& lm, const TaskDef& t, const std::vector<Example>& items,
                         bool parallel = true, const ChatTemplate* chat = nullptr);

// The user turn of a chat task's item: meta "user" when the item has it (the generated chat
// items, whose context is already qbench's format because it is also training text), else the
// context (loaders of raw user turns: IFEval, MT-Bench).
const std::string& chat_user_turn(const Example& e);

// Mean of 0/1 or real scores with lm-eval's standard error (sample std / sqrt(n)).
MetricValue mean_metric(const std::string& name, const std::vector<double>& x, bool higher_is_better = true);
// Standard error of a statistic of the items by bootstrap (fixed seed, `resamples` draws).
double bootstrap_stderr(size_t n, const std::function<double(const std::vector<size_t>&)>& statistic,
                        int resamples = 1000, uint64_t seed = 1234);

}  // namespace qbench
