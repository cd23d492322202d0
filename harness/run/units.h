// The quality measurements `qbench run` schedules, one function per unit kind. Each returns the
// unit's result (stored in the results JSON) and its per-item records (the JSONL that
// `qbench compare` pairs item by item). Pure with respect to the results document: the runner
// decides when they run and where their output goes.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "datasets/example.h"
#include "engine/model/model.h"
#include "tasks/chat_template.h"
#include "tasks/kl.h"
#include "tasks/perplexity.h"
#include "tasks/task.h"

namespace qbench::run {

struct UnitOutput {
  nlohmann::json result;
  std::vector<nlohmann::json> records;
};

// The tasks of a suite with their items (generator seeds replaced by `seed`, at most `limit`
// per task), and the sha256 of the items' content (ids, contexts, targets, answers, choices).
struct SuiteData {
  std::string name;
  std::vector<TaskDef> tasks;
  std::vector<std::vector<Example>> items;
  std::string items_sha;
  nlohmann::json task_defs = nlohmann::json::array();  // as evaluated, with their versions
  bool has_chat = false;  // some task is a chat task (its prompts depend on the chat template)
};
SuiteData build_suite(const std::string& name, const std::vector<TaskDef>& all_tasks, uint64_t seed, int64_t limit);

// llama.cpp's perplexity; records: one per chunk {"chunk", "nll_sum", "count"}.
UnitOutput perplexity_unit(const Model& m, const std::vector<int32_t>& tokens, const PerplexityOptions& opt);
// KL(reference || m) on the same chunks; records: one per chunk {"chunk", "kld_sum", "count"}.
UnitOutput kl_unit(const Model& m, const ReferenceLogits& ref, const std::vector<int32_t>& tokens,
                   const PerplexityOptions& opt);
// Every task of the suite (concurrently); records: evaluate_task's item records with "task".
// `chat`: the template of its chat tasks (required when suite.has_chat).
UnitOutput suite_unit(const Model& m, const SuiteData& suite, int64_t n_ctx, const ChatTemplate* chat);

}  // namespace qbench::run
