#include "harness/run/runner.h"

#include <tbb/parallel_for.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <algorithm>

#include "datasets/generators/generators.h"
#include "datasets/text.h"
#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/kernels/quant_dot.h"
#include "harness/cli.h"
#include "harness/run/memory.h"
#include "harness/run/results.h"
#include "harness/run/speed.h"
#include "harness/run/units.h"
#include "harness/sha256.h"
#include "harness/sysinfo.h"
#include "quantizers/quantize_model.h"
#include "tasks/kl.h"
#include "tasks/perplexity.h"

namespace qbench::run {
namespace fs = std::filesystem;
using json = nlohmann::json;

std::string slug(const std::string& s) {
  std::string out;
  for (char ch : s) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                    ch == '-' || ch == '_';
    out += ok ? ch : '_';
  }
  return out;
}

std::string default_results_path(const ExperimentConfig& config) {
  return QBENCH_SOURCE_DIR "/results/runs/" + config.name + ".json";
}

namespace {

// `spec` is a file path or "generated:GEN,GEN,..." (`items` items of each generator at `seed`).
std::string text_source(const std::string& spec, const std::string& field, int64_t items, uint64_t seed) {
  const std::string prefix = "generated:";
  if (spec.rfind(prefix, 0) != 0) return read_text_file(expand_path(spec, field));
  std::string text;
  std::string list = spec.substr(prefix.size());
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string name = list.substr(start, comma - start);
    start = comma + 1;
    if (name.empty()) continue;
    if (!builtin_generators().contains(name)) {
      throw Error(field + ": unknown generator '" + name + "' in '" + spec + "'");
    }
    for (const Example& e : builtin_generators().get(name).generate(items, seed)) {
      text += e.context + e.target;
      if (text.empty() || text.back() != '\n') text += '\n';
    }
  }
  if (text.empty()) throw Error(field + ": '" + spec + "' names no generator");
  return text;
}

}  // namespace

std::string perplexity_text(const ExperimentConfig& c) {
  return text_source(c.ppl_text, "ppl_text", c.ppl_items, uint64_t(c.seed));
}

std::string calibration_text(const ExperimentConfig& c) {
  return text_source(c.calib_text, "calib_text", c.calib_items, kTrainSeed);
}

namespace {

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Progress on stderr: "[done/total] what ... ETA".
class Progress {
 public:
  Progress(bool enabled, int total) : enabled_(enabled), total_(total), t0_(std::chrono::steady_clock::now()) {}
  void started(const std::string& what) {
    if (!enabled_) return;
    std::lock_guard lock(mu_);
    std::fprintf(stderr, "[%d/%d] start %s\n", done_, total_, what.c_str());
  }
  // Units that will not run (their scheme failed).
  void drop(int n) {
    std::lock_guard lock(mu_);
    total_ -= n;
  }
  void finished(const std::string& what, const std::string& outcome) {
    std::lock_guard lock(mu_);
    ++done_;
    if (!enabled_) return;
    const double el = seconds_since(t0_);
    const double eta = done_ > 0 ? el / done_ * (total_ - done_) : 0.0;
    std::fprintf(stderr, "[%d/%d] %s: %s (elapsed %.0f s, ETA %.0f s)\n", done_, total_, what.c_str(), outcome.c_str(),
                 el, eta);
  }

 private:
  bool enabled_;
  int total_, done_ = 0;
  std::chrono::steady_clock::time_point t0_;
  std::mutex mu_;
};

struct Unit {
  size_t run = 0;
  std::string name;  // "perplexity", "kl", "suite:NAME", "speed"
  std::string key;
  const SuiteData* suite = nullptr;
};

// The results document and its file; every change is saved atomically under the lock.
class Document {
 public:
  Document(json doc, std::string path) : doc_(std::move(doc)), path_(std::move(path)) {}
  template <typename Fn>
  void update(Fn fn) {
    std::lock_guard lock(mu_);
    fn(doc_);
    doc_["relative"] = relative_table(doc_);
    write_file_atomic(path_, cli::json_text(doc_, 2) + "\n");
  }
  json snapshot() {
    std::lock_guard lock(mu_);
    return doc_;
  }

 private:
  std::mutex mu_;
  json doc_;
  std::string path_;
};

std::string items_text(const std::vector<json>& records) {
  std::string s;
  for (const auto& r : records) s += cli::json_text(r) + "\n";
  return s;
}

bool stop_requested(const RunOptions& o) { return o.stop != nullptr && o.stop->load(); }

}  // namespace

RunOutcome run_experiment(const ExperimentConfig& c, const RunOptions& o) {
  validate_config(c, "experiment '" + c.name + "'");
  QB_ASSERT(!o.out.empty());
  const auto t_start = std::chrono::steady_clock::now();
  RunOutcome outcome;

  // Previous results (cache and --resume).
  json previous;
  if (fs::exists(o.out) && !o.force) {
    try {
      previous = load_results(o.out);  // never silently overwrite a file that is not ours
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + " (--force overwrites it; or choose another --out)");
    }
    if (o.resume && previous["meta"]["experiment"].value("name", "") != c.name) {
      throw Error(o.out + ": holds experiment '" + previous["meta"]["experiment"].value("name", "") + "', not '" +
                  c.name + "'");
    }
  } else if (o.resume) {
    throw Error(o.out + ": nothing to resume (no results file)" + std::string(o.force ? " (--force given)" : ""));
  }

  // Model, data.
  std::string model_path = expand_path(c.model, "model");
  if (model_path.empty()) {
    model_path = cli::default_model_path();
    if (!fs::exists(model_path)) {
      throw Error("the built-in default model " + model_path +
                  " does not exist yet (train it with 'qbench train', or set \"model\" in a --config)");
    }
  }
  const Model source = load_model(model_path, expand_path(c.tokenizer, "tokenizer"));
  const std::string model_sha = sha256_file(model_path);
  const std::string items_dir_name = fs::path(o.out).stem().string() + ".items";
  const fs::path out_dir = fs::path(o.out).parent_path();
  fs::create_directories(out_dir / items_dir_name);

  const auto all_tasks = builtin_tasks();
  std::vector<SuiteData> suites;
  for (const auto& s : c.suites) suites.push_back(build_suite(s, all_tasks, uint64_t(c.seed), c.limit));
  std::vector<int32_t> ppl_tokens;
  std::string text_sha;
  if (c.perplexity) {
    const std::string text = perplexity_text(c);
    text_sha = sha256_hex(text);
    ppl_tokens = source.require_tokenizer().encode(text, true);
  }
  // Calibration text, only when some scheme needs one (gptq, awq); its hash joins those schemes' keys.
  std::vector<bool> calibrated(c.schemes.size(), false);
  for (size_t i = 0; i < c.schemes.size(); ++i) {
    calibrated[i] = quant::recipe_needs_calibration(source, quant::make_recipe(c.schemes[i]));
  }
  std::optional<quant::Calibration> calibration;
  json calib_json = nullptr;
  if (std::count(calibrated.begin(), calibrated.end(), true) > 0) {
    const Tokenizer& tok = source.require_tokenizer();
    const std::string text = calibration_text(c);
    const quant::CalibConfig cc{"", c.calib_samples, c.calib_ctx, 0};
    calibration.emplace();
    calibration->windows = quant::make_calib_windows(tok.encode(text, true), cc, "calib_text " + c.calib_text,
                                                     tok.add_bos() ? tok.bos() : -1);
    calib_json = {{"calib_text", c.calib_text}, {"calib_text_sha256", sha256_hex(text)},
                  {"samples", c.calib_samples}, {"ctx", c.calib_ctx}, {"item_seed", kTrainSeed},
                  {"description", calibration->windows.description}};
  }
  PerplexityOptions popt;
  popt.n_ctx = c.ppl_ctx;
  popt.max_chunks = c.ppl_chunks;

  const std::string simd_path(isa_name(default_isa()));
  const int speed_threads = c.speed_threads > 0 ? int(c.speed_threads) : int(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::string> canon(c.schemes.size());
  for (size_t i = 0; i < c.schemes.size(); ++i) canon[i] = scheme_canonical(c.schemes[i]);
  // Cache key of scheme i's unit: what it measured, and for calibrated schemes the calibration.
  auto key_of = [&](size_t i, const std::string& unit, const json& extra) {
    json k = {{"qbench_version", QBENCH_VERSION}, {"model_sha256", model_sha}, {"tokenizer", c.tokenizer},
              {"scheme", canon[i]}, {"unit", unit}, {"extra", extra}};
    if (calibrated[i]) k["calibration"] = calib_json;
    return sha256_hex(k.dump());
  };

  json doc = {
      {"schema", kResultsSchema},
      {"schema_version", kResultsSchemaVersion},
      {"status", "running"},
      {"meta",
       {{"qbench_version", QBENCH_VERSION}, {"git_commit", QBENCH_GIT_COMMIT}, {"date", now_utc()},
        {"host", {{"cpu", cpu_name()}, {"simd_compiled", compiled_simd()}, {"simd_path", simd_path},
                  {"hardware_threads", std::thread::hardware_concurrency()}}},
        {"threads", cli::thread_count()}, {"speed_threads", speed_threads}, {"seed", c.seed},
        {"command_line", o.command_line}, {"experiment", c.to_json()}, {"seconds", 0.0}}},
      {"model", cli::model_json(source)},
      {"data",
       {{"ppl_text", c.perplexity ? json(c.ppl_text) : json(nullptr)}, {"ppl_text_sha256", text_sha},
        {"ppl_tokens", ppl_tokens.size()}, {"calibration", calib_json}, {"suites", json::object()}}},
      {"reference", {{"kl", "the unquantized model as loaded (" + std::string(type_traits(source.output.type).name) +
                                " weights)"}}},
      {"runs", json::array()},
  };
  doc["model"]["sha256"] = model_sha;
  doc["model"]["path"] = model_path;
  for (const auto& sd : suites) {
    doc["data"]["suites"][sd.name] = {{"items_sha256", sd.items_sha}, {"tasks", sd.task_defs}, {"limit", c.limit}};
  }

  // Runs and their units; reuse cached units.
  std::vector<Unit> quality_units, speed_units;
  std::vector<bool> needs_model(c.schemes.size(), false);
  for (size_t i = 0; i < c.schemes.size(); ++i) {
    json run = {{"scheme", c.schemes[i]}, {"scheme_canonical", canon[i]}, {"status", "pending"},
                {"quantization", nullptr}, {"memory", nullptr}, {"units", json::object()}};
    const json* prev_run = nullptr;
    if (previous.is_object()) {
      for (const auto& pr : previous["runs"]) {
        if (pr.value("scheme_canonical", "") == canon[i]) prev_run = &pr;
      }
    }
    std::vector<Unit> units;
    if (c.perplexity) {
      units.push_back({i, "perplexity", key_of(i, "perplexity", {{"text_sha256", text_sha}, {"ctx", c.ppl_ctx},
                                                                          {"chunks", c.ppl_chunks}})});
    }
    if (c.kl) {
      units.push_back({i, "kl", key_of(i, "kl", {{"text_sha256", text_sha}, {"ctx", c.ppl_ctx},
                                                          {"chunks", c.ppl_chunks}, {"top_k", c.kl_top_k}})});
    }
    for (const auto& sd : suites) {
      units.push_back({i, "suite:" + sd.name,
                       key_of(i, "suite:" + sd.name, {{"items_sha256", sd.items_sha}, {"tasks", sd.task_defs},
                                                             {"ctx", c.ctx}}),
                       &sd});
    }
    if (c.speed) {
      units.push_back({i, "speed", key_of(i, "speed", {{"prefill", c.speed_prefill}, {"decode", c.speed_decode},
                                                                {"reps", c.speed_reps}, {"warmup", c.speed_warmup},
                                                                {"threads", speed_threads}, {"cpu", cpu_name()},
                                                                {"simd_path", simd_path}})});
    }
    for (auto& u : units) {
      if (prev_run && prev_run->contains("units") && (*prev_run)["units"].contains(u.name)) {
        const json& pu = (*prev_run)["units"][u.name];
        if (pu.value("key", "") == u.key && pu.value("status", "") == "ok") {
          json reused = pu;
          reused["cached"] = true;
          run["units"][u.name] = reused;
          ++outcome.cached_units;
          continue;
        }
      }
      run["units"][u.name] = {{"key", u.key}, {"status", "pending"}};
      needs_model[i] = true;
      (u.name == "speed" ? speed_units : quality_units).push_back(u);
    }
    if (!needs_model[i] && prev_run) {
      run["quantization"] = (*prev_run)["quantization"];
      run["memory"] = (*prev_run)["memory"];
      run["status"] = (*prev_run)["status"];
    }
    doc["runs"].push_back(run);
  }

  Document document(std::move(doc), o.out);
  document.update([](json&) {});
  Progress progress(o.progress, int(quality_units.size() + speed_units.size()) +
                                    int(std::count(needs_model.begin(), needs_model.end(), true)));

  // 2. Quantize each scheme once.
  std::vector<std::unique_ptr<Model>> variants(c.schemes.size());
  std::vector<bool> failed(c.schemes.size(), false);
  for (size_t i = 0; i < c.schemes.size() && !stop_requested(o); ++i) {
    if (!needs_model[i]) continue;
    progress.started("quantize " + c.schemes[i]);
    try {
      quant::QuantizeReport rep;
      variants[i] = std::make_unique<Model>(quant::quantize_model(
          source, quant::make_recipe(c.schemes[i]), &rep, calibrated[i] ? &*calibration : nullptr));
      const double linear_bpw = linear_bits_per_weight(rep, source.tied_output);
      const int64_t kv_ctx = c.perplexity ? c.ppl_ctx : (c.ctx > 0 ? c.ctx : source.config.n_ctx_train);
      document.update([&](json& d) {
        json& run = d["runs"][i];
        run["quantization"] = {{"seconds", rep.seconds}, {"bits_per_weight", rep.bits_per_weight},
                               {"bytes", rep.bytes}, {"n_weights", rep.n_weights}, {"all_ggml", rep.all_ggml},
                               {"calibration", rep.calibration.empty() ? json(nullptr) : json(rep.calibration)},
                               {"calib_seconds", rep.calib_seconds}};
        run["memory"] = {{"weight_bytes", variants[i]->weight_bytes()}, {"linear_weight_bytes", rep.bytes},
                         {"bits_per_weight", linear_bpw}, {"all_weights_bits_per_weight", rep.bits_per_weight},
                         {"kv_cache_bytes", kv_cache_bytes(source.config, kv_ctx)},
                         {"kv_ctx", kv_ctx}, {"peak_rss_bytes", peak_rss_bytes()}};
        run["status"] = "running";
      });
      progress.finished("quantize " + c.schemes[i], "ok, " + std::to_string(linear_bpw).substr(0, 5) + " bits/weight");
    } catch (const Error& e) {
      failed[i] = true;
      ++outcome.failed_units;
      document.update([&](json& d) {
        d["runs"][i]["status"] = "failed";
        d["runs"][i]["error"] = e.what();
        for (auto& [name, u] : d["runs"][i]["units"].items()) {
          if (u["status"] == "pending") u = {{"key", u["key"]}, {"status", "skipped"}, {"error", "scheme failed"}};
        }
      });
      progress.finished("quantize " + c.schemes[i], std::string("FAILED: ") + e.what());
      progress.drop(int(std::count_if(quality_units.begin(), quality_units.end(), [&](const Unit& u) { return u.run == i; }) +
                        std::count_if(speed_units.begin(), speed_units.end(), [&](const Unit& u) { return u.run == i; })));
    }
  }

  // 3. Quality, concurrently; the KL reference once.
  std::optional<ReferenceLogits> reference;
  std::string reference_error;
  const bool any_kl = std::any_of(quality_units.begin(), quality_units.end(),
                                  [&](const Unit& u) { return u.name == "kl" && !failed[u.run]; });
  if (any_kl && !stop_requested(o)) {
    try {
      reference = compute_reference_logits(source, ppl_tokens, popt, c.kl_top_k);
    } catch (const Error& e) {
      reference_error = std::string("reference logits: ") + e.what();
    }
  }
  auto run_quality = [&](const Unit& u) -> UnitOutput {
    const Model& m = *variants[u.run];
    if (u.name == "perplexity") return perplexity_unit(m, ppl_tokens, popt);
    if (u.name == "kl") {
      if (!reference) throw Error(reference_error);
      return kl_unit(m, *reference, ppl_tokens, popt);
    }
    QB_ASSERT(u.suite != nullptr);
    return suite_unit(m, *u.suite, c.ctx);
  };

  auto finish_unit = [&](const Unit& u, double seconds, std::optional<json> result, std::vector<json> records,
                         const std::string& error) {
    std::string items_file;
    if (result && !records.empty()) {
      items_file = items_dir_name + "/" + slug(canon[u.run]) + "." + slug(u.name) + ".jsonl";
      write_file_atomic((out_dir / items_file).string(), items_text(records));
    }
    document.update([&](json& d) {
      json unit = {{"key", u.key}, {"seconds", seconds}, {"measured_at", now_utc()}};
      if (result) {
        unit["status"] = "ok";
        unit["result"] = *result;
        unit["items_file"] = items_file.empty() ? json(nullptr) : json(items_file);
      } else {
        unit["status"] = "failed";
        unit["error"] = error;
      }
      d["runs"][u.run]["units"][u.name] = unit;
      d["runs"][u.run]["memory"]["peak_rss_bytes"] = peak_rss_bytes();
      // Counted under the document's lock: units finish on several threads.
      ++(result ? outcome.measured_units : outcome.failed_units);
    });
  };

  std::vector<Unit> runnable;
  for (const auto& u : quality_units) {
    if (!failed[u.run] && variants[u.run]) runnable.push_back(u);
  }
  tbb::parallel_for(size_t(0), runnable.size(), size_t(1), [&](size_t k) {
    const Unit& u = runnable[k];
    if (stop_requested(o)) return;
    const std::string what = c.schemes[u.run] + " " + u.name;
    progress.started(what);
    const auto t0 = std::chrono::steady_clock::now();
    try {
      UnitOutput r = run_quality(u);
      finish_unit(u, seconds_since(t0), std::move(r.result), std::move(r.records), "");
      progress.finished(what, "ok");
    } catch (const Error& e) {
      finish_unit(u, seconds_since(t0), std::nullopt, {}, e.what());
      progress.finished(what, std::string("FAILED: ") + e.what());
    }
  });

  // 4. Speed, alone.
  for (const auto& u : speed_units) {
    if (stop_requested(o)) break;
    if (failed[u.run] || !variants[u.run]) continue;
    const std::string what = c.schemes[u.run] + " speed";
    progress.started(what);
    const auto t0 = std::chrono::steady_clock::now();
    try {
      SpeedOptions so;
      so.prefill = c.speed_prefill;
      so.decode = c.speed_decode;
      so.reps = c.speed_reps;
      so.warmup = c.speed_warmup;
      so.threads = speed_threads;
      so.seed = uint64_t(c.seed);
      const SpeedResult r = measure_speed(*variants[u.run], so);
      finish_unit(u, seconds_since(t0), r.to_json(), {}, "");
      char buf[96];
      std::snprintf(buf, sizeof buf, "prefill %.1f t/s, decode %.1f t/s", r.prefill.median, r.decode.median);
      progress.finished(what, buf);
    } catch (const Error& e) {
      finish_unit(u, seconds_since(t0), std::nullopt, {}, e.what());
      progress.finished(what, std::string("FAILED: ") + e.what());
    }
  }

  outcome.interrupted = stop_requested(o);
  document.update([&](json& d) {
    for (auto& run : d["runs"]) {
      if (run["status"] == "failed") continue;
      bool all_ok = true, any_failed = false;
      for (auto& [name, u] : run["units"].items()) {
        all_ok = all_ok && u["status"] == "ok";
        any_failed = any_failed || u["status"] == "failed";
      }
      run["status"] = all_ok ? "ok" : any_failed ? "partial" : "pending";
    }
    d["status"] = outcome.interrupted ? "interrupted" : "complete";
    d["meta"]["seconds"] = seconds_since(t_start);
    d["meta"]["peak_rss_bytes"] = peak_rss_bytes();
  });
  outcome.results = document.snapshot();
  return outcome;
}

}  // namespace qbench::run
