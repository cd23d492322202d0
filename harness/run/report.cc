#include "harness/run/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "engine/core/error.h"
#include "harness/cli.h"
#include "harness/run/results.h"

namespace qbench::run {
using json = nlohmann::json;

ReportFormat parse_report_format(const std::string& s) {
  if (s == "md" || s == "markdown") return ReportFormat::Markdown;
  if (s == "latex" || s == "tex") return ReportFormat::Latex;
  if (s == "csv") return ReportFormat::Csv;
  throw Error("--format: expected md, latex or csv, got '" + s + "'");
}

namespace {

// Placeholder for "value ± error" cells; each renderer substitutes its own sign.
constexpr const char* kPm = "\x01";

std::string fmt(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string pm(const json& v, const json& se, int digits) {
  if (!v.is_number()) return "-";
  std::string s = fmt(v.get<double>(), digits);
  if (se.is_number()) s += std::string(" ") + kPm + " " + fmt(se.get<double>(), digits);
  return s;
}

// Significant digits, for values spanning magnitudes (KL divergences).
std::string pm_sig(const json& v, const json& se) {
  if (!v.is_number()) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3g", v.get<double>());
  std::string s = buf;
  if (se.is_number()) {
    std::snprintf(buf, sizeof buf, "%.2g", se.get<double>());
    s += std::string(" ") + kPm + " " + buf;
  }
  return s;
}

// "(u)" after a relative quality whose error holds the baseline fixed (no per-item records to pair).
std::string unpaired_mark(const json& entry) {
  return entry.is_object() && entry.value("pct_stderr_method", json()).is_string() &&
                 entry["pct_stderr_method"] != "paired"
             ? " (u)"
             : "";
}

// Short name of an activation precision (engine/kernels/matmul.h, activation_precision).
std::string short_activation(const std::string& a) {
  if (a.rfind("q8_0", 0) == 0 || a.rfind("q8_1", 0) == 0) return "int8/32";
  if (a.rfind("q8_K", 0) == 0) return "int8/256";
  if (a == "int8 per token") return "int8/token";
  return a;
}

// The activation precisions a run's products use while decoding, e.g. "int8/32" or
// "f32+int8/256" when formats differ between tensors.
std::string activations_cell(const json& run) {
  if (!run.contains("matmul") || !run["matmul"].is_object()) return "-";
  std::vector<std::string> seen;
  for (const auto& p : run["matmul"]["paths"]) {
    const std::string a = short_activation(p["decode"].value("activations", std::string("?")));
    if (std::find(seen.begin(), seen.end(), a) == seen.end()) seen.push_back(a);
  }
  std::string out;
  for (const auto& a : seen) out += (out.empty() ? "" : "+") + a;
  return out.empty() ? "-" : out;
}

std::string times(const json& v) { return v.is_number() ? fmt(v.get<double>(), 2) + "x" : "-"; }

// The result of a run's speed unit when it was measured, else nullptr.
const json* speed_result(const json& run) {
  if (!run.contains("units") || !run["units"].contains("speed")) return nullptr;
  const json& u = run["units"]["speed"];
  return u.value("status", "") == "ok" && u.contains("result") && u["result"].is_object() ? &u["result"] : nullptr;
}

// decode_bandwidth.fraction_of_read_bandwidth of a run's speed result, or null.
json decode_fraction(const json& run) {
  const json* r = speed_result(run);
  if (!r || !r->contains("decode_bandwidth") || !(*r)["decode_bandwidth"].is_object()) return nullptr;
  const json& f = (*r)["decode_bandwidth"].value("fraction_of_read_bandwidth", json());
  return f.is_number() ? f : json();
}

std::string latex_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '_': out += "\\_"; break;
      case '%': out += "\\%"; break;
      case '&': out += "\\&"; break;
      case '#': out += "\\#"; break;
      case '$': out += "\\$"; break;
      case '{': out += "\\{"; break;
      case '}': out += "\\}"; break;
      default: out += ch;
    }
  }
  return cli::replace_all(out, kPm, "$\\pm$");
}

std::string csv_cell(const std::string& s0) {
  const std::string s = cli::replace_all(s0, kPm, "+-");
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string quoted(1, '"');  // built by appending: GCC 12 misreports "x" + s + "x" (-Wrestrict, PR 105329)
  quoted += cli::replace_all(s, "\"", "\"\"");
  quoted += '"';
  return quoted;
}

}  // namespace

std::vector<Table> report_tables(const json& results) {
  const json& rel = results["relative"];
  const std::string baseline = rel["baseline"].is_string() ? rel["baseline"].get<std::string>() : "-";
  std::vector<std::string> suites;
  for (const auto& s : results["meta"]["experiment"].value("suites", json::array())) suites.push_back(s);
  const bool ppl = results["meta"]["experiment"].value("perplexity", false);
  const bool kl = results["meta"]["experiment"].value("kl", false);
  // Relative to a run other than the experiment's baseline (qbench report --baseline): KLD stays
  // against the unquantized model, and a column gives the paired difference from the baseline's.
  std::string experiment_baseline;
  if (const std::string b = results["meta"]["experiment"].value("baseline", std::string()); !b.empty()) {
    if (const int i = find_run(results["runs"], b); i >= 0) experiment_baseline = results["runs"][size_t(i)].value("scheme_canonical", b);
  } else if (!results["runs"].empty()) {
    experiment_baseline = results["runs"][0].value("scheme_canonical", std::string());
  }
  const bool kld_diff = kl && baseline != experiment_baseline;
  std::string baseline_name = baseline;  // as the config gives it
  if (const int i = find_run(results["runs"], baseline); i >= 0) baseline_name = results["runs"][size_t(i)].value("scheme", baseline);

  Table summary;
  summary.title = "Quality (% of " + baseline + "), speed and memory relative to " + baseline + "; model " +
                  results["model"].value("name", "") + " (" + results["model"].value("path", "") + ")";
  summary.header = {"method", "bits/weight"};
  if (ppl) summary.header.push_back("perplexity %");
  for (const auto& s : suites) summary.header.push_back(s + " %");
  if (kl) summary.header.push_back("KLD (nats)");
  if (kld_diff) summary.header.push_back("KLD - " + baseline_name);
  summary.header.insert(summary.header.end(), {"prefill x", "decode x"});
  // Speed at a shape (speed_shape): named in the title, schemes measured as another noted below.
  std::string speed_shape;
  std::vector<std::string> measured_as;
  bool any_fraction = false;
  for (const auto& run : results["runs"]) {
    any_fraction = any_fraction || decode_fraction(run).is_number();
    const json* r = speed_result(run);
    if (!r || !r->contains("shape") || !(*r)["shape"].is_object()) continue;
    const json& sh = (*r)["shape"];
    speed_shape = sh.value("name", std::string("?"));
    const std::string measured = sh.value("scheme_measured", std::string());
    if (!measured.empty() && measured != run.value("scheme_canonical", std::string())) {
      measured_as.push_back(run.value("scheme", std::string("?")) + " as " + measured);
    }
  }
  if (!speed_shape.empty()) summary.title += "; speed measured at " + speed_shape + " shape, random weights";
  if (any_fraction) summary.header.push_back("decode % bw");
  summary.header.insert(summary.header.end(), {"memory x", "activations"});
  // The KV cache column appears when some scheme stores it in another type than f32 (+kv=).
  auto kv_of = [](const json& run) {
    return run.contains("memory") && run["memory"].is_object() ? run["memory"].value("kv_cache", std::string("f32"))
                                                               : std::string("f32");
  };
  bool any_kv = false;
  for (const auto& run : results["runs"]) any_kv = any_kv || kv_of(run) != "f32";
  if (any_kv) summary.header.push_back("KV cache");
  bool any_unpaired = false;
  for (size_t ri = 0; ri < rel["rows"].size(); ++ri) {
    const json& row = rel["rows"][ri];
    const json& run = results["runs"][ri];
    std::string name = row["scheme"].get<std::string>();
    const int64_t n_notes = row.value("notes", int64_t(0));
    const json stale = row.value("stale_units", json::array());
    if (n_notes > 0 || !stale.empty()) {
      name += " *";
      // What the notes are: the run's fallbacks by count, the items' notes by unit and text.
      std::vector<std::string> parts;
      const size_t n_run_notes = run.contains("notes") && run["notes"].is_array() ? run["notes"].size() : 0;
      if (n_run_notes > 0) {
        parts.push_back(std::to_string(n_run_notes) + " fallback(s) or caveat(s) in runs[" + std::to_string(ri) + "].notes");
      }
      for (const auto& [unit, u] : run["units"].items()) {
        if (!u.contains("item_notes") || !u["item_notes"].is_object()) continue;
        for (const auto& [text, count] : u["item_notes"].items()) {
          parts.push_back(unit + ": " + count.dump() + " item(s): " + text);
        }
      }
      if (!stale.empty()) parts.push_back(std::to_string(stale.size()) + " unit(s) measured by other code, reused by --reuse-stale");
      std::string fn = "* " + row["scheme"].get<std::string>() + ":";
      for (size_t k = 0; k < parts.size(); ++k) fn += (k ? "; " : " ") + parts[k];
      summary.footnotes.push_back(fn);
    }
    std::vector<std::string> cells = {name};
    if (row["status"] == "failed") {
      cells.push_back("failed");
      while (cells.size() < summary.header.size()) cells.push_back("-");
      summary.rows.push_back(cells);
      continue;
    }
    cells.push_back(row["bits_per_weight"].is_number() ? fmt(row["bits_per_weight"], 2) : "-");
    const json& q = row["quality"];
    // A relative quality cell, "(u)"-marked when its error could not be paired.
    auto quality_cell = [&](const json* e) -> std::string {
      if (!e || !e->is_object()) return "-";
      const std::string mark = unpaired_mark(*e);
      any_unpaired = any_unpaired || !mark.empty();
      return pm((*e)["pct"], (*e)["pct_stderr"], 1) + mark;
    };
    if (ppl) cells.push_back(quality_cell(q.contains("perplexity") ? &q["perplexity"] : nullptr));
    for (const auto& s : suites) cells.push_back(quality_cell(q["suites"].contains(s) ? &q["suites"][s] : nullptr));
    if (kl) cells.push_back(q.contains("kld") ? pm_sig(q["kld"]["value"], q["kld"]["stderr"]) : "-");
    if (kld_diff) {
      cells.push_back(q.contains("kld") && q["kld"].contains("diff") ? pm_sig(q["kld"]["diff"], q["kld"]["diff_stderr"]) : "-");
    }
    cells.push_back(times(row["speed_x"]["prefill"]));
    cells.push_back(times(row["speed_x"]["decode"]));
    if (any_fraction) {
      const json f = decode_fraction(run);
      cells.push_back(f.is_number() ? fmt(100.0 * f.get<double>(), 0) + "%" : "-");
    }
    cells.push_back(times(row["memory_x"]));
    cells.push_back(activations_cell(run));
    if (any_kv) {
      const json& m = run["memory"];
      cells.push_back(kv_of(run) + (m.is_object() && m.contains("kv_bytes_per_token")
                                        ? " (" + m["kv_bytes_per_token"].dump() + " B/token)"
                                        : std::string()));
    }
    summary.rows.push_back(cells);
  }
  summary.footnotes.insert(summary.footnotes.begin(),
      "Quality as % of " + baseline + "; " + std::string(kPm) + " is the standard error of the paired difference from " +
      baseline + " (per chunk for perplexity, per item for each task's primary metric; a suite averages its tasks)" +
      (any_unpaired ? "; (u): no per-item records to pair, the baseline held fixed" : "") +
      (kld_diff ? ". KLD is against the unquantized model; KLD - " + baseline_name + ": the difference of mean KLDs " +
                      std::string(kPm) + " the standard error of its per-chunk paired differences"
                : std::string()) +
      ". Activations: the precision the matrix products compute with while decoding (int8/32: int8 per 32 values, as "
      "llama.cpp's kernels; f32: exact float products).");
  if (any_fraction) {
    summary.footnotes.push_back(
        "decode % bw: the weight bytes a decoded token reads (every layer matrix and the output head as packed, one "
        "token-embedding row) times the median decode tokens/s, as a share of the machine's read bandwidth measured "
        "by the process that measured the speed (its probe); above 100% the weights are read from cache.");
  }
  if (!speed_shape.empty()) {
    std::string fn = "Speed (prefill x, decode x) measured on random weights of the " + speed_shape +
                     " shape quantized by each scheme, not on the model; quality and memory are the model's.";
    if (!measured_as.empty()) {
      fn += " Measured as the scheme writing the same packed format without calibration text:";
      for (size_t k = 0; k < measured_as.size(); ++k) fn += (k ? "; " : " ") + measured_as[k];
      fn += ".";
    }
    summary.footnotes.push_back(fn);
  }
  std::vector<Table> tables = {summary};

  for (const auto& s : suites) {
    Table t;
    t.title = "Suite " + s + ": primary metric per task, value " + std::string(kPm) + " stderr (% of " + baseline + ")";
    t.header = {"method"};
    std::vector<std::string> task_names;
    for (const auto& row : rel["rows"]) {
      if (!row["quality"]["suites"].contains(s)) continue;
      for (const auto& [tn, te] : row["quality"]["suites"][s]["tasks"].items()) {
        if (std::find(task_names.begin(), task_names.end(), tn) == task_names.end()) {
          task_names.push_back(tn);
          t.header.push_back(tn + " (" + te["primary_metric"].get<std::string>() + ")");
        }
      }
    }
    for (const auto& row : rel["rows"]) {
      std::vector<std::string> cells = {row["scheme"].get<std::string>()};
      const json* se = row["quality"]["suites"].contains(s) ? &row["quality"]["suites"][s] : nullptr;
      for (const auto& tn : task_names) {
        if (!se || !(*se)["tasks"].contains(tn)) {
          cells.push_back("-");
          continue;
        }
        const json& te = (*se)["tasks"][tn];
        const json& m = te["metrics"][te["primary_metric"].get<std::string>()];
        std::string c = pm(m["value"], m["stderr"], 3);
        if (m["pct"].is_number()) c += " (" + fmt(m["pct"], 1) + "%)";
        cells.push_back(c);
      }
      t.rows.push_back(cells);
    }
    tables.push_back(t);
  }
  return tables;
}

std::string render_tables(const std::vector<Table>& tables, ReportFormat format) {
  std::string out;
  for (const auto& t : tables) {
    switch (format) {
      case ReportFormat::Markdown: {
        out += "**";
        out += cli::replace_all(t.title, kPm, "±");
        out += "**\n\n|";
        for (const auto& h : t.header) out += " " + h + " |";
        out += "\n|";
        for (size_t i = 0; i < t.header.size(); ++i) out += i == 0 ? " --- |" : " ---: |";
        out += "\n";
        for (const auto& r : t.rows) {
          out += "|";
          for (const auto& c : r) {
            out += " ";
            out += cli::replace_all(c, kPm, "±");
            out += " |";
          }
          out += "\n";
        }
        out += "\n";
        for (const auto& f : t.footnotes) {
          out += cli::replace_all(f, kPm, "±");
          out += "\n\n";
        }
        break;
      }
      case ReportFormat::Latex: {
        out += "% ";
        out += cli::replace_all(t.title, kPm, "+-");
        out += "\n";
        out += "\\begin{table}[t]\n\\centering\n\\small\n\\begin{tabular}{l" + std::string(t.header.size() - 1, 'r') +
               "}\n\\toprule\n";
        for (size_t i = 0; i < t.header.size(); ++i) {
          if (i) out += " & ";
          out += latex_escape(t.header[i]);
        }
        out += " \\\\\n\\midrule\n";
        for (const auto& r : t.rows) {
          for (size_t i = 0; i < r.size(); ++i) {
            if (i) out += " & ";
            out += latex_escape(r[i]);
          }
          out += " \\\\\n";
        }
        out += "\\bottomrule\n\\end{tabular}\n\\caption{";
        out += latex_escape(t.title);
        for (const auto& f : t.footnotes) {
          out += " ";
          out += latex_escape(f);
        }
        out += "}\n\\end{table}\n\n";
        break;
      }
      case ReportFormat::Csv: {
        out += "table";
        for (const auto& h : t.header) {
          out += ",";
          out += csv_cell(h);
        }
        out += "\n";
        for (const auto& r : t.rows) {
          out += csv_cell(t.title);
          for (const auto& c : r) {
            out += ",";
            out += csv_cell(c);
          }
          out += "\n";
        }
        for (const auto& f : t.footnotes) {
          out += csv_cell(t.title);
          out += ",note,";
          out += csv_cell(f);
          out += "\n";
        }
        break;
      }
    }
  }
  return out;
}

}  // namespace qbench::run
