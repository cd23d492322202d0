// Speed of one model variant, measured alone: prefill (one batch of N tokens from an empty
// cache) and decode (M single-token evals after that prefill), each repeated after warm-up
// repetitions, inside a TBB arena of a fixed thread count. Tokens are fixed pseudo-random ids,
// so every scheme sees the same input.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

#include "engine/model/model.h"

namespace qbench::run {

struct SpeedOptions {
  int64_t prefill = 128;
  int64_t decode = 32;
  int64_t reps = 5;
  int64_t warmup = 1;
  int threads = 0;  // 0: one per core
  uint64_t seed = 1000;
};

// Tokens per second of the repetitions and their summary.
struct RateStats {
  std::vector<double> per_rep;  // tokens/s of each measured repetition, in order
  double median = 0, mean = 0, sd = 0, min = 0, max = 0;
  static RateStats of(std::vector<double> rates);
  // (max - min) / median: the relative spread the comparison treats as noise.
  double relative_spread() const { return median > 0 ? (max - min) / median : 0.0; }
  nlohmann::json to_json() const;
  static RateStats from_json(const nlohmann::json& j);  // throws qbench::Error on missing fields
};

struct SpeedResult {
  int64_t prefill_tokens = 0, decode_tokens = 0, reps = 0, warmup = 0;
  int threads = 0;
  RateStats prefill, decode;
  size_t kv_cache_bytes = 0;  // of the Forward used (prefill + decode tokens)
  nlohmann::json to_json() const;
};

// Throws qbench::Error when prefill + decode exceed what the model can take.
SpeedResult measure_speed(const Model& model, const SpeedOptions& opt);

}  // namespace qbench::run
