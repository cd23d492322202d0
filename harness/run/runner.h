// `qbench run`: one experiment (a model x schemes x measurements) end to end.
//
// Order of work (docs/architecture.md, "Data flow of qbench run"):
//  1. load the model once, hash it, build the task items and the perplexity tokens;
//  2. quantize each scheme once (a scheme that fails is recorded as failed, the rest go on);
//  3. compute the reference logits for KL once (the unquantized model), then run every quality
//     unit — perplexity, KL, one per suite — of every scheme concurrently (TBB);
//  4. measure speed scheme by scheme, alone;
//  5. after every completed unit the whole results document is rewritten atomically, so an
//     interruption (SIGINT) leaves a valid file that a rerun or --resume continues from.
// Units are cached by content: a unit whose key (sha256 of model file, data, canonical scheme,
// task definitions, settings and qbench version) matches one already in the output file is
// reused instead of measured again, unless `force`.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <string>

#include "harness/run/config.h"

namespace qbench::run {

struct RunOptions {
  std::string out;            // results JSON path (per-item JSONL files go next to it)
  bool force = false;         // measure everything again
  bool resume = false;        // the output file must exist (an interrupted run to continue)
  bool reuse_stale = false;   // reuse units measured by other code (recorded as stale in the file)
  bool progress = false;      // progress lines on stderr
  std::string command_line;   // recorded in meta
  const std::atomic<bool>* stop = nullptr;  // set (e.g. by SIGINT): start no new unit
};

struct RunOutcome {
  nlohmann::json results;
  bool interrupted = false;
  int failed_units = 0;  // runs and units recorded as failed
  int measured_units = 0, cached_units = 0;
  int stale_units = 0;   // of the cached ones, measured by other code (--reuse-stale)
};

// Throws qbench::Error on bad input that concerns the whole experiment (model file, config,
// perplexity text file, an unreadable --resume file); failures of one scheme or unit are recorded.
RunOutcome run_experiment(const ExperimentConfig& config, const RunOptions& options);

// The default output path of an experiment: results/runs/NAME.json under the source tree.
std::string default_results_path(const ExperimentConfig& config);

// Helpers shared with compare/report.
std::string slug(const std::string& s);                    // file-name-safe form
// The held-out text named by `ppl_text` ("generated:story,dialogue" or a file path).
std::string perplexity_text(const ExperimentConfig& c);
// The calibration text named by `calib_text`; generated items use the training seed (kTrainSeed),
// so calibration never sees an evaluation item.
std::string calibration_text(const ExperimentConfig& c);

}  // namespace qbench::run
