#include "harness/run/results.h"

#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"

namespace qbench::run {
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

enum class T { String, Int, Number, Bool, Object, Array, Sha };

const char* describe(T t) {
  switch (t) {
    case T::String: return "a string";
    case T::Int: return "an integer";
    case T::Number: return "a number";
    case T::Bool: return "a boolean";
    case T::Object: return "an object";
    case T::Array: return "an array";
    case T::Sha: return "a 64-digit hex sha256";
  }
  return "?";
}

bool is(const json& v, T t) {
  switch (t) {
    case T::String: return v.is_string();
    case T::Int: return v.is_number_integer();
    case T::Number: return v.is_number();
    case T::Bool: return v.is_boolean();
    case T::Object: return v.is_object();
    case T::Array: return v.is_array();
    case T::Sha: {
      if (!v.is_string() || v.get<std::string>().size() != 64) return false;
      for (char ch : v.get<std::string>()) {
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return false;
      }
      return true;
    }
  }
  return false;
}

class Checker {
 public:
  std::vector<std::string> problems;
  // Checks j[key] (path names j); returns the value when present with the right type.
  const json* need(const json& j, const std::string& path, const std::string& key, T t, bool nullable = false) {
    const std::string where = path.empty() ? key : path + "." + key;
    if (!j.is_object() || !j.contains(key)) {
      problems.push_back(where + ": missing");
      return nullptr;
    }
    const json& v = j[key];
    if (nullable && v.is_null()) return nullptr;
    if (!is(v, t)) {
      problems.push_back(where + ": expected " + describe(t) + (nullable ? " or null" : "") + ", got " +
                         std::string(v.type_name()));
      return nullptr;
    }
    return &v;
  }
  void one_of(const json* v, const std::string& where, const std::set<std::string>& allowed) {
    if (v && !allowed.count(v->get<std::string>())) problems.push_back(where + ": unexpected value " + v->dump());
  }
};

void check_rates(Checker& c, const json& j, const std::string& p) {
  for (const char* k : {"tokens_per_second_median", "tokens_per_second_mean", "tokens_per_second_sd",
                        "tokens_per_second_min", "tokens_per_second_max"}) {
    c.need(j, p, k, T::Number);
  }
}

void check_unit(Checker& c, const std::string& name, const json& u, const std::string& p) {
  c.need(u, p, "key", T::Sha);
  const json* status = c.need(u, p, "status", T::String);
  c.one_of(status, p + ".status", {"pending", "ok", "failed", "skipped"});
  if (!status) return;
  if (*status == "failed" || *status == "skipped") {
    c.need(u, p, "error", T::String);
    return;
  }
  if (*status != "ok") return;
  c.need(u, p, "seconds", T::Number);
  c.need(u, p, "settings_key", T::Sha);
  c.need(u, p, "code_sha256", T::Sha);
  c.need(u, p, "measured_by", T::String);
  c.need(u, p, "protocol", T::Object);
  const json* r = c.need(u, p, "result", T::Object);
  if (!r) return;
  const std::string rp = p + ".result";
  if (name == "perplexity") {
    for (const char* k : {"ppl", "ppl_stderr", "mean_nll"}) c.need(*r, rp, k, T::Number);
    for (const char* k : {"n_ctx", "n_chunks", "n_scored"}) c.need(*r, rp, k, T::Int);
    c.need(u, p, "items_file", T::String);
  } else if (name == "kl") {
    for (const char* k : {"kld_mean", "kld_stderr", "same_top", "same_top_stderr"}) c.need(*r, rp, k, T::Number);
    c.need(*r, rp, "n_positions", T::Int);
    c.need(u, p, "items_file", T::String);
  } else if (name == "speed") {
    for (const char* k : {"prefill_tokens", "decode_tokens", "reps", "threads", "kv_cache_bytes"}) c.need(*r, rp, k, T::Int);
    if (const json* pp = c.need(*r, rp, "prefill", T::Object)) check_rates(c, *pp, rp + ".prefill");
    if (const json* tg = c.need(*r, rp, "decode", T::Object)) check_rates(c, *tg, rp + ".decode");
  } else if (name.rfind("suite:", 0) == 0) {
    c.need(u, p, "items_file", T::String, true);
    const json* tasks = c.need(*r, rp, "tasks", T::Array);
    if (!tasks) return;
    for (size_t i = 0; i < tasks->size(); ++i) {
      const std::string tp = rp + ".tasks[" + std::to_string(i) + "]";
      const json& t = (*tasks)[i];
      c.need(t, tp, "task", T::String);
      c.need(t, tp, "kind", T::String);
      c.need(t, tp, "version", T::Int);
      c.need(t, tp, "n_items", T::Int);
      const json* ms = c.need(t, tp, "metrics", T::Object);
      if (!ms) continue;
      for (const auto& [mn, mv] : ms->items()) {
        const std::string mp = tp + ".metrics." + mn;
        c.need(mv, mp, "value", T::Number);
        c.need(mv, mp, "stderr", T::Number);
        c.need(mv, mp, "higher_is_better", T::Bool);
      }
    }
  } else {
    c.problems.push_back(p + ": unknown unit name");
  }
}

}  // namespace

std::vector<std::string> validate_results(const json& j) {
  Checker c;
  if (!j.is_object()) return {"(document): expected an object"};
  if (const json* s = c.need(j, "", "schema", T::String); s && *s != kResultsSchema) {
    c.problems.push_back("schema: expected \"" + std::string(kResultsSchema) + "\", got " + s->dump());
  }
  if (const json* v = c.need(j, "", "schema_version", T::Int); v && *v != kResultsSchemaVersion) {
    if (v->get<int64_t>() < kResultsSchemaVersion) {
      // Stop at the version: every later field would be reported missing.
      return {"schema_version " + v->dump() + " was written by an older qbench and lacks what this one needs (" +
              "build identity, unit protocols, matmul paths, notes, paired errors: results/SCHEMA.md); measure it " +
              "again with this qbench ('qbench run --force' keeps the old file as a backup)"};
    }
    c.problems.push_back("schema_version: this qbench reads " + std::to_string(kResultsSchemaVersion) + ", got " + v->dump());
  }
  c.one_of(c.need(j, "", "status", T::String), "status", {"running", "complete", "interrupted"});
  if (const json* meta = c.need(j, "", "meta", T::Object)) {
    for (const char* k : {"qbench_version", "git_commit", "date", "command_line"}) c.need(*meta, "meta", k, T::String);
    for (const char* k : {"threads", "seed"}) c.need(*meta, "meta", k, T::Int);
    if (const json* b = c.need(*meta, "meta", "build", T::Object)) {
      c.need(*b, "meta.build", "git_commit", T::String);
      c.need(*b, "meta.build", "git_dirty", T::Bool);
      c.need(*b, "meta.build", "toolchain", T::String);
      c.need(*b, "meta.build", "modules", T::Object);
    }
    c.need(*meta, "meta", "experiment", T::Object);
    if (const json* host = c.need(*meta, "meta", "host", T::Object)) {
      for (const char* k : {"cpu", "simd_compiled", "simd_path"}) c.need(*host, "meta.host", k, T::String);
    }
  }
  if (const json* model = c.need(j, "", "model", T::Object)) {
    for (const char* k : {"name", "path", "architecture"}) c.need(*model, "model", k, T::String);
    c.need(*model, "model", "sha256", T::Sha);
    c.need(*model, "model", "parameters", T::Int);
  }
  c.need(j, "", "data", T::Object);
  if (const json* runs = c.need(j, "", "runs", T::Array)) {
    for (size_t i = 0; i < runs->size(); ++i) {
      const json& r = (*runs)[i];
      const std::string p = "runs[" + std::to_string(i) + "]";
      c.need(r, p, "scheme", T::String);
      c.need(r, p, "scheme_canonical", T::String);
      const json* status = c.need(r, p, "status", T::String);
      c.one_of(status, p + ".status", {"pending", "running", "ok", "partial", "failed"});
      if (status && *status == "failed") c.need(r, p, "error", T::String);
      if (const json* q = c.need(r, p, "quantization", T::Object, true)) {
        c.need(*q, p + ".quantization", "seconds", T::Number);
        c.need(*q, p + ".quantization", "bits_per_weight", T::Number);
        c.need(*q, p + ".quantization", "bytes", T::Int);
      }
      if (const json* mm = c.need(r, p, "matmul", T::Object, true)) {
        c.need(*mm, p + ".matmul", "activations", T::String);
        c.need(*mm, p + ".matmul", "paths", T::Array);
      }
      c.need(r, p, "notes", T::Array, true);
      if (const json* m = c.need(r, p, "memory", T::Object, true)) {
        for (const char* k : {"weight_bytes", "kv_cache_bytes", "kv_ctx", "peak_rss_bytes"}) c.need(*m, p + ".memory", k, T::Int);
        c.need(*m, p + ".memory", "bits_per_weight", T::Number);
      }
      if (const json* units = c.need(r, p, "units", T::Object)) {
        for (const auto& [name, u] : units->items()) check_unit(c, name, u, p + ".units." + name);
      }
    }
  }
  if (const json* rel = c.need(j, "", "relative", T::Object)) {
    c.need(*rel, "relative", "baseline", T::String, true);
    if (const json* rows = c.need(*rel, "relative", "rows", T::Array)) {
      for (size_t i = 0; i < rows->size(); ++i) {
        const std::string p = "relative.rows[" + std::to_string(i) + "]";
        c.need((*rows)[i], p, "scheme_canonical", T::String);
        c.need((*rows)[i], p, "quality", T::Object);
        c.need((*rows)[i], p, "speed_x", T::Object);
        c.need((*rows)[i], p, "memory_x", T::Number, true);
        c.need((*rows)[i], p, "bits_per_weight", T::Number, true);
      }
    }
  }
  return c.problems;
}

json load_results(const std::string& path) {
  json j;
  try {
    j = json::parse(read_file(path));
  } catch (const json::exception& e) {
    throw Error(path + ": not a valid JSON results file (" + std::string(e.what()) + ")");
  }
  const auto problems = validate_results(j);
  if (!problems.empty()) {
    throw Error(path + ": not a qbench results file of schema version " + std::to_string(kResultsSchemaVersion) + ": " +
                problems.front() + (problems.size() > 1 ? " (and " + std::to_string(problems.size() - 1) + " more)" : ""));
  }
  return j;
}

std::string primary_metric(const std::string& kind) {
  if (kind == "multiple_choice") return "acc";
  if (kind == "exact_match") return "exact_match";
  if (kind == "instruction") return "prompt_level_acc";
  if (kind == "target_loglik") return "logprob";
  if (kind == "rolling_loglik") return "byte_perplexity";
  return "";
}

std::optional<double> quality_pct(double value, double ref, bool higher_is_better) {
  if (!std::isfinite(value) || !std::isfinite(ref) || ref == 0.0) return std::nullopt;
  if (higher_is_better && ref > 0) {
    if (value < 0) return std::nullopt;
    return 100.0 * value / ref;  // an accuracy that fell to 0 is 0%
  }
  if (value == 0.0 || (value > 0) != (ref > 0)) return std::nullopt;
  return 100.0 * ref / value;
}

namespace {

const json* ok_result(const json& run, const std::string& unit) {
  if (!run.contains("units") || !run["units"].contains(unit)) return nullptr;
  const json& u = run["units"][unit];
  if (u.value("status", "") != "ok" || !u.contains("result")) return nullptr;
  return &u["result"];
}

constexpr const char* kUnpaired = "unpaired (baseline held fixed)";
constexpr const char* kPaired = "paired";

// {value, stderr, pct, pct_stderr, pct_stderr_method}. `paired_se`: the standard error of pct
// from the paired difference; without it, the scheme's own stderr with the baseline held fixed.
json pct_entry(double v, double se, std::optional<double> ref, bool hib, std::optional<double> paired_se = std::nullopt) {
  json e = {{"value", v}, {"stderr", se}, {"pct", nullptr}, {"pct_stderr", nullptr}, {"pct_stderr_method", nullptr}};
  if (!ref) return e;
  if (const auto p = quality_pct(v, *ref, hib)) {
    e["pct"] = *p;
    if (paired_se) {
      e["pct_stderr"] = *paired_se;
      e["pct_stderr_method"] = kPaired;
    } else {
      // d pct / d v: 100/r for 100 v/r, and pct/v for 100 r/v.
      const bool linear = hib && *ref > 0;
      e["pct_stderr"] = linear ? std::abs(100.0 * se / *ref) : std::abs(*p * se / v);
      e["pct_stderr_method"] = kUnpaired;
    }
  }
  return e;
}

// Standard error of the ratio of means R = mean(y) / mean(x) over n paired items (the ratio
// estimator's linearisation): sqrt(sum (y_i - R x_i)^2 / (n (n - 1))) / |mean(x)|. Zero when y = x.
std::optional<double> ratio_of_means_se(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = x.size();
  if (n < 2 || y.size() != n) return std::nullopt;
  double sx = 0, sy = 0;
  for (size_t i = 0; i < n; ++i) sx += x[i], sy += y[i];
  if (sx == 0.0) return std::nullopt;
  const double r = sy / sx;
  double ss = 0;
  for (size_t i = 0; i < n; ++i) ss += (y[i] - r * x[i]) * (y[i] - r * x[i]);
  return std::sqrt(ss / (double(n) * double(n - 1))) / std::abs(sx / double(n));
}

// Standard error of sum_i d_i for n paired differences: sqrt(n) * sd(d).
std::optional<double> sum_of_differences_se(const std::vector<double>& d) {
  const size_t n = d.size();
  if (n < 2) return std::nullopt;
  double mean = 0;
  for (double v : d) mean += v;
  mean /= double(n);
  double ss = 0;
  for (double v : d) ss += (v - mean) * (v - mean);
  return std::sqrt(double(n) * ss / double(n - 1));
}

// Perplexity as % of the baseline's, 100 exp(-(L_s - L_b)) with L the mean NLL per scored token:
// its error from the per-chunk differences of NLL sums (the same chunks and token counts).
std::optional<double> paired_ppl_pct_se(const std::vector<json>* base, const std::vector<json>* cand, double pct) {
  if (!base || !cand || base->size() != cand->size()) return std::nullopt;
  std::vector<double> d;
  double count = 0;
  for (size_t i = 0; i < base->size(); ++i) {
    const json& b = (*base)[i];
    const json& s = (*cand)[i];
    if (b.value("chunk", -1) != s.value("chunk", -2) || b.value("count", -1.0) != s.value("count", -2.0)) return std::nullopt;
    d.push_back(s.value("nll_sum", 0.0) - b.value("nll_sum", 0.0));
    count += b.value("count", 0.0);
  }
  const auto se_sum = sum_of_differences_se(d);
  if (!se_sum || count <= 0) return std::nullopt;
  return pct * *se_sum / count;
}

// Mean KLD minus the baseline's, per scored token over the same chunks, and the error of that
// difference from the per-chunk differences of KLD sums; nullopt when the records do not pair.
std::optional<std::pair<double, double>> paired_kld_diff(const std::vector<json>* base, const std::vector<json>* cand) {
  if (!base || !cand || base->empty() || base->size() != cand->size()) return std::nullopt;
  std::vector<double> d;
  double count = 0, sum = 0;
  for (size_t i = 0; i < base->size(); ++i) {
    const json& b = (*base)[i];
    const json& s = (*cand)[i];
    auto number = [](const json& r, const char* k) { return r.contains(k) && r[k].is_number(); };
    if (!number(b, "kld_sum") || !number(s, "kld_sum") || !number(b, "count") || !number(s, "count") ||
        b.value("chunk", -1) != s.value("chunk", -2) || b["count"].get<double>() != s["count"].get<double>()) {
      return std::nullopt;
    }
    d.push_back(s["kld_sum"].get<double>() - b["kld_sum"].get<double>());
    sum += d.back();
    count += b["count"].get<double>();
  }
  const auto se_sum = sum_of_differences_se(d);
  if (!se_sum || count <= 0) return std::nullopt;
  return std::make_pair(sum / count, *se_sum / count);
}

// A task's primary metric as % of the baseline's, from the items both runs scored (paired by
// id): the error of that ratio. acc / exact_match / prompt_level_acc: ratio of mean correctness;
// logprob: 100 mean(x)/mean(y), its error 100 se(R)/R^2; byte_perplexity: 100 exp(sum(lp_s -
// lp_b) / bytes), the bytes recovered from the baseline's value.
std::optional<double> paired_task_pct_se(const std::string& metric, const std::vector<const json*>& base,
                                         const std::vector<const json*>& cand, double base_value, double pct) {
  std::vector<double> x, y;
  const bool correctness = metric == "acc" || metric == "exact_match" || metric == "prompt_level_acc";
  const char* field = correctness ? "correct" : "logprob";
  for (size_t i = 0; i < base.size(); ++i) {
    if (!base[i]->contains(field) || !cand[i]->contains(field)) return std::nullopt;
    const json& bv = (*base[i])[field];
    const json& cv = (*cand[i])[field];
    x.push_back(bv.is_boolean() ? double(bv.get<bool>()) : bv.get<double>());
    y.push_back(cv.is_boolean() ? double(cv.get<bool>()) : cv.get<double>());
  }
  if (correctness) {
    const auto se = ratio_of_means_se(x, y);
    return se ? std::optional<double>(100.0 * *se) : std::nullopt;
  }
  if (metric == "logprob") {
    const auto se = ratio_of_means_se(x, y);
    if (!se || pct == 0.0) return std::nullopt;
    const double r = 100.0 / pct;  // mean(y) / mean(x)
    return 100.0 * *se / (r * r);
  }
  if (metric == "byte_perplexity") {
    double sum_lp = 0;
    std::vector<double> d;
    for (size_t i = 0; i < x.size(); ++i) {
      sum_lp += x[i];
      d.push_back(y[i] - x[i]);
    }
    const double log_bp = std::log(base_value);
    const auto se_sum = sum_of_differences_se(d);
    if (!se_sum || !(log_bp > 0)) return std::nullopt;
    const double bytes = -sum_lp / log_bp;
    return pct * *se_sum / bytes;
  }
  return std::nullopt;
}

// Item records of one task of a suite unit, by id.
std::map<std::string, const json*> task_records(const std::vector<json>* records, const std::string& task) {
  std::map<std::string, const json*> out;
  if (!records) return out;
  for (const auto& r : *records) {
    if (r.value("task", "") == task && r.contains("id") && r["id"].is_string()) out[r["id"].get<std::string>()] = &r;
  }
  return out;
}

}  // namespace

std::vector<json> read_items_file(const std::string& path) {
  const std::string text = read_file(path);
  std::vector<json> out;
  std::istringstream in(text);
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    try {
      out.push_back(json::parse(line));
    } catch (const json::exception&) {
      throw Error(path + ":" + std::to_string(n) + ": not a JSON object");
    }
    if (!out.back().is_object()) throw Error(path + ":" + std::to_string(n) + ": not a JSON object");
  }
  return out;
}

ItemsReader items_reader(const std::string& results_path) {
  auto cache = std::make_shared<std::map<std::string, std::optional<std::vector<json>>>>();
  const fs::path dir = fs::path(results_path).parent_path();
  return [cache, dir](const json& unit) -> const std::vector<json>* {
    if (!unit.contains("items_file") || !unit["items_file"].is_string()) return nullptr;
    const std::string f = unit["items_file"];
    auto it = cache->find(f);
    if (it == cache->end()) {
      std::optional<std::vector<json>> records;
      try {
        records = read_items_file((dir / f).string());
      } catch (const Error&) {
      }
      it = cache->emplace(f, std::move(records)).first;
    }
    return it->second ? &*it->second : nullptr;
  };
}

int find_run(const json& runs, const std::string& scheme) {
  for (size_t i = 0; i < runs.size(); ++i) {
    if (runs[i]["scheme_canonical"] == scheme || runs[i]["scheme"] == scheme) return int(i);
  }
  return -1;
}

json relative_table(const json& results, const ItemsReader& items, const std::string& baseline) {
  json out = {{"baseline", nullptr}, {"rows", json::array()}};
  if (!results.contains("runs") || !results["runs"].is_array() || results["runs"].empty()) return out;
  const json& runs = results["runs"];
  const json* base = &runs[0];
  if (!baseline.empty()) {
    const int i = find_run(runs, baseline);
    if (i < 0) throw Error("baseline '" + baseline + "': no run of the results has this scheme");
    base = &runs[size_t(i)];
  } else if (results.contains("meta") && results["meta"].contains("experiment")) {
    const std::string wanted = results["meta"]["experiment"].value("baseline", "");
    for (const auto& r : runs) {
      if (!wanted.empty() && r.value("scheme", "") == wanted) base = &r;
    }
  }
  out["baseline"] = (*base)["scheme_canonical"];
  auto num = [](const json* j, const char* k) -> std::optional<double> {
    if (j && j->contains(k) && (*j)[k].is_number()) return (*j)[k].get<double>();
    return std::nullopt;
  };
  auto ratio = [](std::optional<double> a, std::optional<double> b) -> json {
    if (a && b && *b != 0.0) return *a / *b;
    return nullptr;
  };
  const json* base_mem = base->contains("memory") && (*base)["memory"].is_object() ? &(*base)["memory"] : nullptr;
  const json* base_ppl = ok_result(*base, "perplexity");
  auto records_of = [&](const json& run, const std::string& unit) -> const std::vector<json>* {
    if (!items || !ok_result(run, unit)) return nullptr;
    return items(run["units"][unit]);
  };
  const json* base_speed = ok_result(*base, "speed");
  for (const auto& r : runs) {
    json row = {{"scheme", r["scheme"]}, {"scheme_canonical", r["scheme_canonical"]}, {"status", r["status"]}};
    const json* mem = r.contains("memory") && r["memory"].is_object() ? &r["memory"] : nullptr;
    row["bits_per_weight"] = mem ? json(num(mem, "bits_per_weight").value_or(0)) : json(nullptr);
    row["memory_x"] = ratio(num(mem, "weight_bytes"), num(base_mem, "weight_bytes"));
    json quality = json::object();
    if (const json* p = ok_result(r, "perplexity")) {
      json e = pct_entry((*p)["ppl"], (*p)["ppl_stderr"], num(base_ppl, "ppl"), false);
      if (e["pct"].is_number()) {
        if (const auto se = paired_ppl_pct_se(records_of(*base, "perplexity"), records_of(r, "perplexity"), e["pct"])) {
          e["pct_stderr"] = *se;
          e["pct_stderr_method"] = kPaired;
        }
      }
      quality["perplexity"] = e;
    }
    if (const json* k = ok_result(r, "kl")) {
      quality["kld"] = {{"value", (*k)["kld_mean"]}, {"stderr", (*k)["kld_stderr"]},
                        {"same_top", (*k)["same_top"]}, {"same_top_stderr", (*k)["same_top_stderr"]}};
      // Against a baseline that is not KL's reference: the paired difference of mean KLDs.
      if (const auto d = paired_kld_diff(records_of(*base, "kl"), records_of(r, "kl"))) {
        quality["kld"]["diff"] = d->first;
        quality["kld"]["diff_stderr"] = d->second;
      }
    }
    json suites = json::object();
    if (r.contains("units")) {
      for (const auto& [name, u] : r["units"].items()) {
        if (name.rfind("suite:", 0) != 0) continue;
        const json* res = ok_result(r, name);
        const json* bres = ok_result(*base, name);
        if (!res) continue;
        json tasks = json::object();
        double sum = 0, var = 0;
        int n = 0, n_paired = 0;
        const std::vector<json>* recs = records_of(r, name);
        const std::vector<json>* base_recs = records_of(*base, name);
        for (const auto& t : (*res)["tasks"]) {
          const std::string tn = t["task"];
          const json* bt = nullptr;
          if (bres) {
            for (const auto& x : (*bres)["tasks"]) {
              if (x["task"] == tn) bt = &x;
            }
          }
          json metrics = json::object();
          for (const auto& [mn, mv] : t["metrics"].items()) {
            std::optional<double> ref;
            if (bt && (*bt)["metrics"].contains(mn)) ref = (*bt)["metrics"][mn]["value"].get<double>();
            metrics[mn] = pct_entry(mv["value"], mv["stderr"], ref, mv["higher_is_better"]);
          }
          const std::string pm = primary_metric(t.value("kind", ""));
          if (metrics.contains(pm) && !metrics[pm]["pct"].is_null()) {
            // The primary metric's error from the items both runs scored, paired by id.
            const auto mine = task_records(recs, tn), theirs = task_records(base_recs, tn);
            std::vector<const json*> xb, xs;
            for (const auto& [id, rec] : mine) {
              if (const auto it = theirs.find(id); it != theirs.end()) {
                xb.push_back(it->second);
                xs.push_back(rec);
              }
            }
            const bool complete = !xb.empty() && xb.size() == mine.size() && xb.size() == theirs.size();
            if (complete) {
              if (const auto se = paired_task_pct_se(pm, xb, xs, (*bt)["metrics"][pm]["value"].get<double>(),
                                                     metrics[pm]["pct"].get<double>())) {
                metrics[pm]["pct_stderr"] = *se;
                metrics[pm]["pct_stderr_method"] = kPaired;
                ++n_paired;
              }
            }
            sum += metrics[pm]["pct"].get<double>();
            var += std::pow(metrics[pm]["pct_stderr"].get<double>(), 2);
            ++n;
          }
          tasks[tn] = {{"primary_metric", pm}, {"metrics", metrics}};
        }
        suites[name.substr(6)] = {{"pct", n ? json(sum / n) : json(nullptr)},
                                  {"pct_stderr", n ? json(std::sqrt(var) / n) : json(nullptr)},
                                  {"pct_stderr_method", n == 0 ? json(nullptr) : json(n_paired == n ? kPaired : kUnpaired)},
                                  {"n_tasks_with_pct", n}, {"tasks", tasks}};
      }
    }
    quality["suites"] = suites;
    row["quality"] = quality;
    // What the report flags: fallbacks and other notes of the run and its items, units reused
    // from other code.
    int64_t notes = r.contains("notes") && r["notes"].is_array() ? int64_t(r["notes"].size()) : 0;
    json stale = json::array();
    if (r.contains("units")) {
      for (const auto& [name, u] : r["units"].items()) {
        if (u.contains("item_notes") && u["item_notes"].is_object()) {
          for (const auto& [text, count] : u["item_notes"].items()) notes += count.is_number_integer() ? count.get<int64_t>() : 0;
        }
        if (u.contains("stale")) stale.push_back(name);
      }
    }
    row["notes"] = notes;
    row["stale_units"] = stale;
    const json* sp = ok_result(r, "speed");
    row["speed_x"] = json::object();
    for (const char* phase : {"prefill", "decode"}) {
      const json* a = sp ? &(*sp)[phase] : nullptr;
      const json* b = base_speed ? &(*base_speed)[phase] : nullptr;
      row["speed_x"][phase] = ratio(num(a, "tokens_per_second_median"), num(b, "tokens_per_second_median"));
      row["tokens_per_second"][phase] = a ? (*a)["tokens_per_second_median"] : json(nullptr);
    }
    out["rows"].push_back(row);
  }
  return out;
}

}  // namespace qbench::run
