#include "harness/run/speed.h"

#include <tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <thread>

#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/model/forward.h"

namespace qbench::run {

RateStats RateStats::of(std::vector<double> rates) {
  QB_ASSERT(!rates.empty());
  RateStats s;
  s.per_rep = rates;
  std::sort(rates.begin(), rates.end());
  const size_t n = rates.size();
  s.median = n % 2 ? rates[n / 2] : 0.5 * (rates[n / 2 - 1] + rates[n / 2]);
  s.min = rates.front();
  s.max = rates.back();
  s.mean = std::accumulate(rates.begin(), rates.end(), 0.0) / double(n);
  double ss = 0;
  for (double r : rates) ss += (r - s.mean) * (r - s.mean);
  s.sd = n > 1 ? std::sqrt(ss / double(n - 1)) : 0.0;
  return s;
}

nlohmann::json RateStats::to_json() const {
  return {{"tokens_per_second_median", median}, {"tokens_per_second_mean", mean}, {"tokens_per_second_sd", sd},
          {"tokens_per_second_min", min}, {"tokens_per_second_max", max}, {"tokens_per_second", per_rep}};
}

RateStats RateStats::from_json(const nlohmann::json& j) {
  for (const char* k : {"tokens_per_second_median", "tokens_per_second_mean", "tokens_per_second_sd",
                        "tokens_per_second_min", "tokens_per_second_max"}) {
    if (!j.is_object() || !j.contains(k) || !j[k].is_number()) throw Error(std::string("speed: missing number '") + k + "'");
  }
  RateStats s;
  s.median = j["tokens_per_second_median"];
  s.mean = j["tokens_per_second_mean"];
  s.sd = j["tokens_per_second_sd"];
  s.min = j["tokens_per_second_min"];
  s.max = j["tokens_per_second_max"];
  if (j.contains("tokens_per_second") && j["tokens_per_second"].is_array()) {
    for (const auto& v : j["tokens_per_second"]) s.per_rep.push_back(v.get<double>());
  }
  return s;
}

nlohmann::json SpeedResult::to_json() const {
  return {{"prefill_tokens", prefill_tokens}, {"decode_tokens", decode_tokens}, {"reps", reps}, {"warmup", warmup},
          {"threads", threads}, {"prefill", prefill.to_json()}, {"decode", decode.to_json()},
          {"kv_cache_bytes", kv_cache_bytes}};
}

SpeedResult measure_speed(const Model& model, const SpeedOptions& opt) {
  QB_ASSERT(opt.prefill >= 1 && opt.decode >= 1 && opt.reps >= 1 && opt.warmup >= 0);
  const int64_t n_ctx = opt.prefill + opt.decode;
  if (n_ctx > 4 * std::max<int64_t>(model.config.n_ctx_train, 1) && model.config.n_ctx_train > 0) {
    throw Error("speed: prefill + decode = " + std::to_string(n_ctx) + " tokens exceeds 4x the model's context (" +
                std::to_string(model.config.n_ctx_train) + ")");
  }
  Rng rng(opt.seed, "speed-tokens");
  std::vector<int32_t> tokens(static_cast<size_t>(n_ctx));
  for (auto& t : tokens) t = int32_t(rng.below(uint64_t(model.config.n_vocab)));
  const int threads = opt.threads > 0 ? opt.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  SpeedResult r;
  r.prefill_tokens = opt.prefill;
  r.decode_tokens = opt.decode;
  r.reps = opt.reps;
  r.warmup = opt.warmup;
  r.threads = threads;
  std::vector<double> pp, tg;
  tbb::task_arena arena(threads);
  arena.execute([&] {
    Forward f(model, n_ctx);
    r.kv_cache_bytes = f.kv_cache_bytes();
    std::vector<float> logits;
    using clock = std::chrono::steady_clock;
    for (int64_t rep = 0; rep < opt.warmup + opt.reps; ++rep) {
      f.reset();
      const auto t0 = clock::now();
      f.eval_last(std::span<const int32_t>(tokens.data(), size_t(opt.prefill)), logits);
      const auto t1 = clock::now();
      for (int64_t i = 0; i < opt.decode; ++i) {
        f.eval_last(std::span<const int32_t>(tokens.data() + opt.prefill + i, 1), logits);
      }
      const auto t2 = clock::now();
      if (rep < opt.warmup) continue;
      pp.push_back(double(opt.prefill) / std::max(1e-9, std::chrono::duration<double>(t1 - t0).count()));
      tg.push_back(double(opt.decode) / std::max(1e-9, std::chrono::duration<double>(t2 - t1).count()));
    }
  });
  r.prefill = RateStats::of(pp);
  r.decode = RateStats::of(tg);
  return r;
}

}  // namespace qbench::run
