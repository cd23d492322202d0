// `qbench compare`: is a new results file worse than a baseline beyond noise?
//  - accuracies (per-item "correct"): McNemar's exact test, one-sided mid-p, on the discordant
//    pairs of items matched by task and id;
//  - log-likelihoods (per-item "logprob"/"tokens"), perplexity (per-chunk NLL sums) and KL
//    divergence (per-chunk KLD sums): a paired bootstrap over items/chunks (fixed seed) of the
//    difference of the ratio statistic;
//  - speed: ratio of medians, with a noise allowance equal to the larger relative spread
//    ((max - min) / median) of the two measurements.
// A quality regression needs both significance (p < alpha) and a drop beyond the tolerance, so
// that neither noise nor a negligible but consistent shift fails a comparison.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace qbench::run {

struct CompareOptions {
  double max_quality_drop = 0.01;  // relative (0.01: 1% of the baseline's value)
  double max_kld_increase = 0.01;  // nats (KLD's baseline is near zero, so absolute)
  double max_slowdown = 0.05;      // relative, on top of the measured noise
  double alpha = 0.05;             // one-sided significance level
  int bootstrap = 2000;
  uint64_t seed = 1234;
  // Runs to compare as (baseline scheme, new scheme); besides these, runs pair by canonical
  // scheme, and two single-run files pair whatever their schemes.
  std::vector<std::pair<std::string, std::string>> pairs;  // see split_pair
};

struct Finding {
  std::string scheme;
  std::string what;    // "perplexity", "kld", "suite math_reasoning / add2 exact_match", "speed decode"
  std::string detail;  // values, test, p-value
  bool regression = false;
  nlohmann::json to_json() const;
};

struct CompareReport {
  std::vector<Finding> findings;
  std::vector<std::string> notes;  // schemes in one file only, different models, ...
  bool regression() const;
  nlohmann::json to_json() const;
};

// One-sided exact McNemar mid-p that the new run is worse: b items right only in the baseline,
// c right only in the new run.
double mcnemar_mid_p(int64_t b, int64_t c);

// `*_path` locate the per-item files (relative to each results file). Throws qbench::Error
// naming the file on unreadable or inconsistent per-item records.
// "BASE=NEW" of --pair into its two schemes; specs may contain '=', so the split is the one whose
// sides name runs of `base` and `cand` (else the first '='). Throws on a malformed argument.
std::pair<std::string, std::string> split_pair(const std::string& arg, const nlohmann::json& base,
                                               const nlohmann::json& cand);

CompareReport compare_results(const nlohmann::json& baseline, const std::string& baseline_path,
                              const nlohmann::json& candidate, const std::string& candidate_path,
                              const CompareOptions& opt);

}  // namespace qbench::run
