// The results document of `qbench run` (schema: results/SCHEMA.md): its version, a validator of
// the documented required fields and types, and the relative table (quality as % of the baseline
// run, speed x, memory x) derived from the runs.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace qbench::run {

inline constexpr const char* kResultsSchema = "qbench.results";
inline constexpr int kResultsSchemaVersion = 1;

// Problems with `j` against results/SCHEMA.md, one line each ("runs[2].units.kl.result.kld_mean:
// expected a number"); empty when valid.
std::vector<std::string> validate_results(const nlohmann::json& j);
// Reads, parses and validates a results file; throws qbench::Error naming the file and the
// first problem.
nlohmann::json load_results(const std::string& path);

// The metric a task's quality is summarised by, per task kind ("acc" for multiple_choice, ...).
std::string primary_metric(const std::string& task_kind);
// `value` as a percentage of `ref` such that lower quality is below 100 whatever the metric's
// direction: 100 v/r for higher-is-better positive metrics, 100 r/v otherwise (perplexities,
// negative log-likelihoods). nullopt when undefined (a baseline of 0, mixed signs).
std::optional<double> quality_pct(double value, double ref, bool higher_is_better);

// {"baseline": canonical scheme or null, "rows": [...]} (SCHEMA.md, "relative").
nlohmann::json relative_table(const nlohmann::json& results);

}  // namespace qbench::run
