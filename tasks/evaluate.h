// Scoring items of a task with a model, lm-evaluation-harness style, with standard errors and
// per-item records (for item-by-item comparison of two runs).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "datasets/example.h"
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

  const MetricValue& metric(const std::string& name) const;  // asserts it exists
  nlohmann::json to_json() const;  // without the per-item records
};

// Evaluates `items` of task `t`. With `parallel`, items run concurrently (TBB); the result is
// identical either way (each item's computation is independent and deterministic).
TaskResult evaluate_task(const LanguageModel& lm, const TaskDef& t, const std::vector<Example>& items,
                         bool parallel = true);

// Wraps a raw user turn in the model's chat template: the GGUF's tokenizer.chat_template when
// it is one of the common families (ChatML, Llama-2 [INST], Llama-3 headers, Zephyr/Gemma),
// else qbench's role-tagged "User: ...\nBot:".
std::string apply_chat_template(const Model& model, const std::string& user_turn);
// Whether apply_chat_template recognises `tpl` (a model's tokenizer.chat_template). An unknown
// template falls back to qbench's own turn format, and each chat item's record then carries
// kChatTemplateGuessed in its "notes" (counted by qbench run, flagged by report).
bool chat_template_known(const std::string& tpl);
inline constexpr const char* kChatTemplateGuessed = "chat template not recognised; qbench's own turn format used";

// Mean of 0/1 or real scores with lm-eval's standard error (sample std / sqrt(n)).
MetricValue mean_metric(const std::string& name, const std::vector<double>& x, bool higher_is_better = true);
// Standard error of a statistic of the items by bootstrap (fixed seed, `resamples` draws).
double bootstrap_stderr(size_t n, const std::function<double(const std::vector<size_t>&)>& statistic,
                        int resamples = 1000, uint64_t seed = 1234);

}  // namespace qbench
