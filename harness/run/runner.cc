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

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "datasets/generators/generators.h"
#include "datasets/text.h"
#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/kernels/matmul.h"
#include "engine/kernels/quant_dot.h"
#include "harness/build_identity.h"
#include "harness/cli.h"
#include "harness/run/bandwidth.h"
#include "harness/run/memory.h"
#include "harness/run/results.h"
#include "harness/run/shapes.h"
#include "harness/run/speed.h"
#include "harness/run/units.h"
#include "harness/sha256.h"
#include "harness/sysinfo.h"
#include "harness/qat.h"
#include "quantizers/qat_spec.h"
#include "quantizers/quantize_model.h"
#include "tasks/chat_template.h"
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
  std::string key;           // settings and the code that measures them (build_identity.h)
  std::string settings_key;  // settings only: equal for the same measurement by other code
  std::string code_sha256;   // the code part of the key
  nlohmann::json protocol;   // the unit's measurement settings, recorded for compare
  const SuiteData* suite = nullptr;
};

// An advisory lock on OUT.lock for as long as the run writes OUT: a second `qbench run` on the
// same --out stops with an error naming the holder instead of interleaving its writes. The lock
// file stays behind (flock is released when the process ends, also on a crash).
class ResultsLock {
 public:
  ResultsLock(const std::string& results_path, const std::string& command_line) : path_(results_path + ".lock") {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error(path_ + ": cannot create the lock file of " + results_path);
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      std::string holder;
      char buf[512];
      const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
      if (n > 0) holder.assign(buf, size_t(n));
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      ::close(fd_);
      throw Error(results_path + ": another qbench run is writing this file (" +
                  (holder.empty() ? std::string("holder unknown") : holder) + "); wait for it or choose another --out");
    }
    const std::string me = "pid " + std::to_string(::getpid()) + ", started " + now_utc() + ": " + command_line + "\n";
    if (::ftruncate(fd_, 0) == 0) {
      [[maybe_unused]] const ssize_t w = ::pwrite(fd_, me.data(), me.size(), 0);
    }
  }
  ~ResultsLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
  }
  ResultsLock(const ResultsLock&) = delete;
  ResultsLock& operator=(const ResultsLock&) = delete;

 private:
  std::string path_;
  int fd_ = -1;
};

// Fields of two experiment configs that change what is measured (all but threads and the
// description, which leave every number as it is).
std::vector<std::string> plan_differences(const json& file_config, const json& config) {
  std::vector<std::string> out;
  for (const auto& [k, v] : config.items()) {
    if (k == "threads" || k == "description") continue;
    const json old = file_config.contains(k) ? file_config[k] : json();
    if (old != v) out.push_back("'" + k + "': " + old.dump() + " in the file, " + v.dump() + " now");
  }
  return out;
}

// Before --force replaces a results file: OUT -> NAME.bak-TIME.json with its per-item files
// copied to NAME.bak-TIME.items/ (items_file paths rewritten to match).
std::string back_up_results(const std::string& out, const std::string& items_dir_name) {
  const fs::path p(out);
  std::string stamp = now_utc();
  for (char& ch : stamp) {
    if (ch == ':') ch = '-';
  }
  const std::string stem = p.stem().string() + ".bak-" + stamp;
  const fs::path backup = p.parent_path() / (stem + ".json");
  const fs::path items = p.parent_path() / items_dir_name;
  std::string text = read_file(out);
  if (fs::is_directory(items)) {
    fs::copy(items, p.parent_path() / (stem + ".items"), fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    text = cli::replace_all(text, "\"" + items_dir_name + "/", "\"" + stem + ".items/");
  }
  write_file_atomic(backup.string(), text);
  return backup.string();
}

// The results document and its file; every change is saved atomically under the lock.
class Document {
 public:
  Document(json doc, std::string path, ItemsReader items) : doc_(std::move(doc)), path_(std::move(path)), items_(std::move(items)) {}
  template <typename Fn>
  void update(Fn fn) {
    std::lock_guard lock(mu_);
    fn(doc_);
    doc_["relative"] = relative_table(doc_, items_);
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
  ItemsReader items_;
};

// Counts of what item records note: a context left-truncated to the window (truncated_tokens),
// continuation tokens that could not be scored (unscored_tokens), and any "notes" they carry.
json item_note_counts(const std::vector<json>& records) {
  std::map<std::string, int64_t> counts;
  for (const auto& r : records) {
    if (r.value("truncated_tokens", int64_t(0)) > 0) counts["context truncated to the window"] += 1;
    if (r.value("unscored_tokens", int64_t(0)) > 0) counts["continuation tokens not scored (window too short)"] += 1;
    if (!r.contains("notes") || !r["notes"].is_array()) continue;
    for (const auto& n : r["notes"]) counts[n.is_string() ? n.get<std::string>() : n.dump()] += 1;
  }
  return counts;
}

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

  if (fs::exists(o.out) && !fs::is_regular_file(o.out)) {
    throw Error(o.out + ": --out must be a results file (a regular file; per-item records go to a folder beside it), "
                "not a device, FIFO or directory");
  }
  const std::string items_dir_name = fs::path(o.out).stem().string() + ".items";
  const fs::path out_dir = fs::path(o.out).parent_path();
  if (!out_dir.empty()) fs::create_directories(out_dir);
  const ResultsLock lock(o.out, o.command_line);

  // Previous results (cache and --resume). A file is never replaced silently: one that is not a
  // results file, or that holds another plan, needs --force, which keeps a backup.
  json previous;
  if (fs::exists(o.out) && !o.force) {
    try {
      previous = load_results(o.out);
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + " (--force replaces it, keeping a backup; or choose another --out)");
    }
    const json& held = previous["meta"]["experiment"];
    if (held.value("name", "") != c.name) {
      throw Error(o.out + ": holds experiment '" + held.value("name", "") + "', not '" + c.name +
                  "' (--force replaces it, keeping a backup; or choose another --out)");
    }
  } else if (o.resume) {
    throw Error(o.out + ": nothing to resume (no results file)" + std::string(o.force ? " (--force given)" : ""));
  }
  if (o.force && fs::exists(o.out)) {
    const std::string backup = back_up_results(o.out, items_dir_name);
    if (o.progress) std::fprintf(stderr, "kept the previous %s as %s\n", o.out.c_str(), backup.c_str());
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
  const std::string model_sha = sha256_model(model_path);
  fs::create_directories(out_dir / items_dir_name);

  const auto all_tasks = builtin_tasks();
  std::vector<SuiteData> suites;
  for (const auto& s : c.suites) suites.push_back(build_suite(s, all_tasks, uint64_t(c.seed), c.limit));
  // The template of the chat tasks, chosen once for the model: a template of the model's that is
  // not recognised stops the run here, before anything is measured. It joins the protocol (and so
  // the keys) of the suites with chat tasks.
  std::optional<ChatTemplateChoice> chat;
  if (std::any_of(suites.begin(), suites.end(), [](const SuiteData& sd) { return sd.has_chat; })) {
    chat = choose_chat_template(source, c.chat_template);
  }
  std::vector<int32_t> ppl_tokens;
  std::string text_sha;
  if (c.perplexity) {
    const std::string text = perplexity_text(c);
    text_sha = sha256_hex(text);
    ppl_tokens = source.require_tokenizer().encode(text, true);
  }
  // Calibration text, only when some scheme needs one (gptq, awq); its hash joins those schemes' keys.
  // qat:... schemes train the whole model (harness/qat.h) from the PTQ start they name, on
  // qat_text (default: the recipe's generated training items); that data's hash joins their keys.
  std::vector<bool> calibrated(c.schemes.size(), false);
  std::vector<std::optional<quant::QatSettings>> qat(c.schemes.size());
  QatRunOptions qat_options;
  if (!c.qat_text.empty()) qat_options.data_text = text_source(c.qat_text, "qat_text", c.qat_items, kTrainSeed);
  std::string qat_data;
  for (size_t i = 0; i < c.schemes.size(); ++i) {
    const quant::Recipe r = quant::make_recipe(c.schemes[i]);
    calibrated[i] = quant::recipe_needs_calibration(source, r);
    if (!r.ftype && quant::is_qat(r.scheme)) {
      qat[i] = quant::qat_settings(r.scheme);
      if (qat_data.empty()) qat_data = qat_data_sha256(qat_options);
    }
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
  // Scheme i's unit: its settings (model, scheme, calibration, the unit's protocol) and the code
  // that measures them. The key covers both, so a unit measured by other code is measured again
  // (unless --reuse-stale, which matches on the settings alone and records the reuse).
  const std::string quality_code = sha256_hex(measurement_identity(MeasurementKind::Quality).dump());
  const std::string speed_code = sha256_hex(measurement_identity(MeasurementKind::Speed).dump());
  auto make_unit = [&](size_t i, const std::string& name, json protocol, const SuiteData* suite) {
    protocol["activations"] = c.activations;
    json settings = {{"model_sha256", model_sha}, {"tokenizer", c.tokenizer}, {"scheme", canon[i]},
                     {"unit", name}, {"protocol", protocol}};
    if (calibrated[i]) settings["calibration"] = calib_json;
    if (qat[i]) settings["qat_data_sha256"] = qat_data;
    Unit u;
    u.run = i;
    u.name = name;
    u.suite = suite;
    u.protocol = std::move(protocol);
    u.settings_key = sha256_hex(settings.dump());
    u.code_sha256 = name == "speed" ? speed_code : quality_code;
    u.key = sha256_hex(json{{"settings", u.settings_key}, {"code", u.code_sha256}}.dump());
    return u;
  };

  json doc = {
      {"schema", kResultsSchema},
      {"schema_version", kResultsSchemaVersion},
      {"status", "running"},
      {"meta",
       {{"qbench_version", QBENCH_VERSION}, {"git_commit", build_label()}, {"build", build_identity()},
        {"date", now_utc()},
        {"host", {{"cpu", cpu_name()}, {"simd_compiled", compiled_simd()}, {"simd_path", simd_path},
                  {"hardware_threads", std::thread::hardware_concurrency()}}},
        {"threads", cli::thread_count()}, {"speed_threads", speed_threads}, {"seed", c.seed},
        {"command_line", o.command_line}, {"experiment", c.to_json()}, {"seconds", 0.0}}},
      {"model", cli::model_json(source)},
      {"data",
       {{"ppl_text", c.perplexity ? json(c.ppl_text) : json(nullptr)}, {"ppl_text_sha256", text_sha},
        {"ppl_tokens", ppl_tokens.size()}, {"calibration", calib_json}, {"suites", json::object()},
        {"chat_template", chat ? json{{"name", chat->tmpl->name}, {"source", chat_template_source_name(chat->source)},
                                      {"description", chat->describe()}}
                               : json(nullptr)}}},
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
                {"quantization", nullptr}, {"memory", nullptr}, {"matmul", nullptr},
                {"notes", nullptr}, {"units", json::object()}};
    const json* prev_run = nullptr;
    if (previous.is_object()) {
      for (const auto& pr : previous["runs"]) {
        if (pr.value("scheme_canonical", "") == canon[i]) prev_run = &pr;
      }
    }
    std::vector<Unit> units;
    if (c.perplexity) {
      units.push_back(make_unit(i, "perplexity", {{"text_sha256", text_sha}, {"ctx", c.ppl_ctx}, {"chunks", c.ppl_chunks}}, nullptr));
    }
    if (c.kl) {
      units.push_back(make_unit(i, "kl", {{"text_sha256", text_sha}, {"ctx", c.ppl_ctx}, {"chunks", c.ppl_chunks},
                                          {"top_k", c.kl_top_k}}, nullptr));
    }
    for (const auto& sd : suites) {
      json protocol = {{"items_sha256", sd.items_sha}, {"tasks_sha256", sha256_hex(sd.task_defs.dump())}, {"ctx", c.ctx}};
      if (sd.has_chat) protocol["chat_template"] = chat->tmpl->name;
      units.push_back(make_unit(i, "suite:" + sd.name, std::move(protocol), &sd));
    }
    if (c.speed) {
      json protocol = {{"prefill", c.speed_prefill}, {"decode", c.speed_decode}, {"reps", c.speed_reps},
                       {"warmup", c.speed_warmup}, {"threads", speed_threads}, {"cpu", cpu_name()}, {"simd_path", simd_path}};
      // Speed of random weights of a shape: the shape and the scheme that packs them are the settings.
      if (!c.speed_shape.empty()) {
        protocol["shape"] = c.speed_shape;
        protocol["shape_scheme"] = scheme_canonical(uncalibrated_equivalent(c.schemes[i]));
      }
      units.push_back(make_unit(i, "speed", std::move(protocol), nullptr));
    }
    for (auto& u : units) {
      if (prev_run && prev_run->contains("units") && (*prev_run)["units"].contains(u.name)) {
        const json& pu = (*prev_run)["units"][u.name];
        const bool ok = pu.value("status", "") == "ok";
        if (ok && pu.value("key", "") == u.key) {
          json reused = pu;
          reused["cached"] = true;
          run["units"][u.name] = reused;
          ++outcome.cached_units;
          continue;
        }
        if (ok && o.reuse_stale && pu.value("settings_key", "") == u.settings_key) {
          json reused = pu;
          reused["cached"] = true;
          reused["stale"] = {{"reused_by", build_label()}, {"this_code_sha256", u.code_sha256},
                             {"why", "measured by other code (code_sha256 differs); reused because of --reuse-stale"}};
          run["units"][u.name] = reused;
          ++outcome.cached_units;
          ++outcome.stale_units;
          continue;
        }
      }
      run["units"][u.name] = {{"key", u.key}, {"settings_key", u.settings_key}, {"status", "pending"}};
      needs_model[i] = true;
      (u.name == "speed" ? speed_units : quality_units).push_back(u);
    }
    if (!needs_model[i] && prev_run) {
      run["quantization"] = (*prev_run)["quantization"];
      run["matmul"] = (*prev_run)["matmul"];
      run["notes"] = (*prev_run)["notes"];
      run["memory"] = (*prev_run)["memory"];
      run["status"] = (*prev_run)["status"];
    }
    doc["runs"].push_back(run);
  }
  // Nothing measured is dropped silently: every ok unit of the file must still be in the plan with
  // the same settings (reused, or measured again because the code changed).
  if (previous.is_object()) {
    std::vector<std::string> lost;
    for (const auto& pr : previous["runs"]) {
      const json* nr = nullptr;
      for (const auto& r : doc["runs"]) {
        if (r["scheme_canonical"] == pr["scheme_canonical"]) nr = &r;
      }
      for (const auto& [name, pu] : pr["units"].items()) {
        if (pu.value("status", "") != "ok") continue;
        const bool kept = nr && (*nr)["units"].contains(name) &&
                          (*nr)["units"][name].value("settings_key", "") == pu.value("settings_key", "");
        if (!kept) lost.push_back(pr["scheme_canonical"].get<std::string>() + " " + name);
      }
    }
    if (!lost.empty()) {
      std::string what;
      for (size_t k = 0; k < lost.size() && k < 4; ++k) what += (k ? ", " : "") + lost[k];
      if (lost.size() > 4) what += " and " + std::to_string(lost.size() - 4) + " more";
      std::string why;
      for (const auto& d : plan_differences(previous["meta"]["experiment"], c.to_json())) why += "; " + d;
      throw Error(o.out + ": this config would replace " + std::to_string(lost.size()) + " measured unit(s) of the file (" +
                  what + why + "); --force measures anew and keeps the old file as a backup, or choose another --out");
    }
  }

  // Per-item records by items_file, for the paired errors of the relative table: kept from the units
  // measured now, read from disk for cached ones. Only used under the document's lock.
  std::map<std::string, std::vector<json>> items_cache;
  ItemsReader read_items = [&](const json& unit) -> const std::vector<json>* {
    if (!unit.contains("items_file") || !unit["items_file"].is_string()) return nullptr;
    const std::string f = unit["items_file"];
    if (auto it = items_cache.find(f); it != items_cache.end()) return &it->second;
    try {
      return &items_cache.emplace(f, read_items_file((out_dir / f).string())).first->second;
    } catch (const Error&) {
      return nullptr;
    }
  };
  Document document(std::move(doc), o.out, read_items);
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
      json qat_json = nullptr;
      if (qat[i]) {
        QatRunOptions qo = qat_options;
        qo.stop = o.stop;
        if (o.progress) qo.say = [](const std::string& line) { std::fprintf(stderr, "  %s\n", line.c_str()); };
        QatOutcome r = run_qat(source, *qat[i], qo, calibrated[i] ? &*calibration : nullptr);
        if (!r.finished) throw quant::Cancelled();
        rep = r.ptq;
        rep.seconds += r.train_seconds;
        variants[i] = std::make_unique<Model>(std::move(r.model));
        qat_json = {{"start", qat[i]->ptq.to_string()}, {"steps", r.step}, {"train_tokens", r.train_tokens},
                    {"train_seconds", r.train_seconds}, {"ptq_seconds", r.ptq.seconds}, {"final_loss", r.loss},
                    {"data", c.qat_text.empty() ? "the recipe's generators (" + qat_options.recipe_path + ")" : c.qat_text},
                    {"data_sha256", qat_data}, {"peak_rss_bytes", peak_rss_bytes()}};
      } else {
        variants[i] = std::make_unique<Model>(quant::quantize_model(
            source, quant::make_recipe(c.schemes[i]), &rep, calibrated[i] ? &*calibration : nullptr, o.stop));
      }
      variants[i]->kv_cache = quant::make_recipe(c.schemes[i]).kv_cache.value_or(KvCacheTypes{});  // qat's too
      const json matmul = cli::apply_activations(*variants[i], c.activations, c.speed_prefill);
      const double linear_bpw = linear_bits_per_weight(rep, source.tied_output);
      const int64_t kv_ctx = c.perplexity ? c.ppl_ctx : (c.ctx > 0 ? c.ctx : source.config.n_ctx_train);
      document.update([&](json& d) {
        json& run = d["runs"][i];
        run["quantization"] = {{"seconds", rep.seconds}, {"bits_per_weight", rep.bits_per_weight},
                               {"bytes", rep.bytes}, {"n_weights", rep.n_weights}, {"all_ggml", rep.all_ggml},
                               {"calibration", rep.calibration.empty() ? json(nullptr) : json(rep.calibration)},
                               {"calib_seconds", rep.calib_seconds}, {"decisions", rep.notes},
                               {"qat", qat_json}};
        run["memory"] = {{"weight_bytes", variants[i]->weight_bytes()}, {"linear_weight_bytes", rep.bytes},
                         {"bits_per_weight", linear_bpw}, {"all_weights_bits_per_weight", rep.bits_per_weight},
                         {"kv_cache_bytes", kv_cache_bytes(source.config, kv_ctx, variants[i]->kv_cache)},
                         {"kv_cache", kv_cache_name(variants[i]->kv_cache)},
                         {"kv_bytes_per_token", kv_cache_bytes(source.config, 1, variants[i]->kv_cache)},
                         {"kv_ctx", kv_ctx}, {"peak_rss_bytes", peak_rss_bytes()}};
        run["matmul"] = matmul;
        json notes = json::array();
        for (const auto& f : rep.fallbacks) notes.push_back({{"where", "quantization"}, {"note", f}});
        if (c.perplexity && c.ppl_ctx > source.config.n_ctx_train) {
          notes.push_back({{"where", "perplexity"},
                           {"note", "ppl_ctx " + std::to_string(c.ppl_ctx) + " exceeds the model's training context " +
                                        std::to_string(source.config.n_ctx_train)}});
        }
        run["notes"] = notes;
        run["status"] = "running";
      });
      progress.finished("quantize " + c.schemes[i], "ok, " + std::to_string(linear_bpw).substr(0, 5) + " bits/weight");
    } catch (const quant::Cancelled&) {
      progress.finished("quantize " + c.schemes[i], "cancelled");
      break;
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
    return suite_unit(m, *u.suite, c.ctx, chat ? chat->tmpl : nullptr);
  };

  auto finish_unit = [&](const Unit& u, double seconds, std::optional<json> result, std::vector<json> records,
                         const std::string& error) {
    std::string items_file;
    if (result && !records.empty()) {
      items_file = items_dir_name + "/" + slug(canon[u.run]) + "." + slug(u.name) + ".jsonl";
      write_file_atomic((out_dir / items_file).string(), items_text(records));
    }
    document.update([&](json& d) {
      json unit = {{"key", u.key}, {"settings_key", u.settings_key}, {"code_sha256", u.code_sha256},
                   {"measured_by", build_label()}, {"protocol", u.protocol}, {"seconds", seconds},
                   {"measured_at", now_utc()}};
      if (result) {
        unit["status"] = "ok";
        unit["result"] = *result;
        unit["items_file"] = items_file.empty() ? json(nullptr) : json(items_file);
        unit["item_notes"] = item_note_counts(records);
        if (!items_file.empty()) items_cache[items_file] = records;
      } else {
        unit["status"] = "failed";
        unit["error"] = error;
      }
      d["runs"][u.run]["units"][u.name] = unit;
      // The run's memory is the model's: the speed phase adds the bandwidth probe's buffer and, with
      // speed_shape, a model of another size (recorded in the speed result instead).
      if (u.name != "speed") d["runs"][u.run]["memory"]["peak_rss_bytes"] = peak_rss_bytes();
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

  // 4. Speed, alone: the read bandwidth once (its buffer is freed before the first unit), then
  // scheme after scheme on the quantized model, or on random weights of speed_shape packed by the
  // scheme (built, measured and released one at a time).
  const bool any_speed = std::any_of(speed_units.begin(), speed_units.end(),
                                     [&](const Unit& u) { return !failed[u.run] && variants[u.run]; });
  std::optional<ReadBandwidth> probe;
  if (any_speed && c.speed_bandwidth_mib > 0 && !stop_requested(o)) {
    progress.started("read bandwidth probe");
    BandwidthOptions bo;
    bo.buffer_bytes = size_t(c.speed_bandwidth_mib) << 20;
    bo.threads = speed_threads;
    json probe_json;
    try {
      probe = measure_read_bandwidth(bo);
      probe_json = probe->to_json();
    } catch (const Error& e) {  // no memory for the buffer: speed goes on without the fraction
      probe_json = {{"error", e.what()}};
    }
    document.update([&](json& d) { d["meta"]["host"]["read_bandwidth"] = probe_json; });
  }
  const ModelShape* shape = c.speed_shape.empty() ? nullptr : &find_shape(c.speed_shape);
  for (const auto& u : speed_units) {
    if (stop_requested(o)) break;
    if (failed[u.run] || !variants[u.run]) continue;
    const std::string what = c.schemes[u.run] + " speed" + (shape ? " at shape " + shape->name : "");
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
      json result;
      SpeedResult r;
      if (shape) {
        const std::string measured = uncalibrated_equivalent(c.schemes[u.run]);
        quant::QuantizeReport rep;
        Model m = quantized_random_model(*shape, measured, &rep, o.stop);
        const json matmul = cli::apply_activations(m, c.activations, c.speed_prefill);
        r = measure_speed(m, so);
        result = r.to_json();
        result["decode_bandwidth"] = decode_bandwidth_json(decode_weight_bytes(m), r.decode.median, probe ? &*probe : nullptr);
        result["shape"] = {{"name", shape->name},
                           {"label", speed_shape_label(shape->name, canon[u.run], scheme_canonical(measured))},
                           {"source", shape->source},
                           {"parameters", m.n_params()},
                           {"scheme_measured", scheme_canonical(measured)},
                           {"weight_bytes", m.weight_bytes()},
                           {"bits_per_weight", linear_bits_per_weight(rep, m.tied_output)},
                           {"quantize_seconds", rep.seconds},
                           {"matmul", matmul},
                           {"peak_rss_bytes", peak_rss_bytes()}};
      } else {
        r = measure_speed(*variants[u.run], so);
        result = r.to_json();
        result["decode_bandwidth"] =
            decode_bandwidth_json(decode_weight_bytes(*variants[u.run]), r.decode.median, probe ? &*probe : nullptr);
      }
      finish_unit(u, seconds_since(t0), result, {}, "");
      char buf[96];
      std::snprintf(buf, sizeof buf, "prefill %.1f t/s, decode %.1f t/s", r.prefill.median, r.decode.median);
      progress.finished(what, buf);
    } catch (const quant::Cancelled&) {
      progress.finished(what, "cancelled");
      break;
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
