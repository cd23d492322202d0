// The results document of `qbench run` (schema: results/SCHEMA.md): its version, a validator of
// the documented required fields and types, and the relative table (quality as % of the baseline
// run, speed x, memory x) derived from the runs.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace qbench::run {

inline constexpr const char* kResultsSchema = "qbench.results";
// 2: build identity (meta.build, units' code_sha256 / measured_by / settings_key), unit
// protocols, matmul paths and activation precision per run, fallback notes, paired errors.
inline constexpr int kResultsSchemaVersion = 2;

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

// The per-item records of a unit (its items_file), or nullptr when they cannot be had.
using ItemsReader = std::function<const std::vector<nlohmann::json>*(const nlohmann::json& unit)>;
// The records of a per-item JSONL file; throws qbench::Error naming the file and line.
std::vector<nlohmann::json> read_items_file(const std::string& path);
// A reader of the per-item records of the units of the results file at `results_path` (their
// items_file, relative to its folder), each file read once; nullptr for a file that cannot be read.
ItemsReader items_reader(const std::string& results_path);

// Index of the run whose scheme (as given or canonical) is `scheme`, or -1.
int find_run(const nlohmann::json& runs, const std::string& scheme);

// {"baseline": canonical scheme or null, "rows": [...]} (SCHEMA.md, "relative"). The error of a
// relative quality is that of the paired difference from the baseline, per chunk (perplexity)
// or per item (a task's primary metric), from the records `items` gives; where they are missing
// or do not pair, the scheme's own error with the baseline held fixed, and the entry says so.
// `baseline`: the run to be relative to (scheme as given or canonical; throws qbench::Error when
// no run has it); empty: the experiment's baseline, else the first run.
nlohmann::json relative_table(const nlohmann::json& results, const ItemsReader& items = {},
                              const std::string& baseline = "");

}  // namespace qbench::run
