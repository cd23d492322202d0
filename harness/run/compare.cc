#include "harness/run/compare.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/core/rng.h"
#include "harness/run/results.h"

namespace qbench::run {
using json = nlohmann::json;
namespace fs = std::filesystem;

json Finding::to_json() const {
  return {{"scheme", scheme}, {"what", what}, {"detail", detail}, {"regression", regression}};
}

bool CompareReport::regression() const {
  for (const auto& f : findings) {
    if (f.regression) return true;
  }
  return false;
}

json CompareReport::to_json() const {
  json f = json::array();
  for (const auto& x : findings) f.push_back(x.to_json());
  return {{"regression", regression()}, {"findings", f}, {"notes", notes}};
}

double mcnemar_mid_p(int64_t b, int64_t c) {
  const int64_t n = b + c;
  if (n == 0) return 1.0;
  // P(X > b) + P(X = b)/2 for X ~ Binomial(n, 1/2), in logs for large n.
  auto log_pmf = [&](int64_t k) {
    return std::lgamma(double(n) + 1) - std::lgamma(double(k) + 1) - std::lgamma(double(n - k) + 1) - double(n) * std::log(2.0);
  };
  double p = 0.5 * std::exp(log_pmf(b));
  for (int64_t k = b + 1; k <= n; ++k) p += std::exp(log_pmf(k));
  return std::min(1.0, p);
}

namespace {

std::string f4(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::vector<json> read_items(const std::string& results_path, const json& unit) {
  if (!unit.contains("items_file") || !unit["items_file"].is_string()) return {};
  const fs::path p = fs::path(results_path).parent_path() / unit["items_file"].get<std::string>();
  const std::string text = read_file(p.string());
  std::vector<json> out;
  std::istringstream in(text);
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    try {
      out.push_back(json::parse(line));
    } catch (const json::parse_error&) {
      throw Error(p.string() + ":" + std::to_string(n) + ": not a JSON object");
    }
  }
  return out;
}

// Paired bootstrap of d = num_new/den_new - num_base/den_base over n paired pieces. Returns the
// one-sided p-value that d <= 0 (i.e. evidence that d > 0) and the observed d.
struct BootResult {
  double diff = 0, p_not_worse = 1;
};
BootResult paired_bootstrap(const std::vector<double>& num_b, const std::vector<double>& den_b,
                            const std::vector<double>& num_n, const std::vector<double>& den_n, int resamples,
                            uint64_t seed) {
  const size_t n = num_b.size();
  auto stat = [&](const std::vector<size_t>* idx) {
    double a = 0, b = 0, c = 0, d = 0;
    for (size_t k = 0; k < n; ++k) {
      const size_t i = idx ? (*idx)[k] : k;
      a += num_n[i];
      b += den_n[i];
      c += num_b[i];
      d += den_b[i];
    }
    return (b > 0 ? a / b : 0.0) - (d > 0 ? c / d : 0.0);
  };
  BootResult r;
  r.diff = stat(nullptr);
  if (n == 0) return r;
  Rng rng(seed, "paired-bootstrap");
  std::vector<size_t> idx(n);
  int not_worse = 0;
  for (int s = 0; s < resamples; ++s) {
    for (auto& i : idx) i = size_t(rng.below(n));
    if (stat(&idx) <= 0.0) ++not_worse;
  }
  r.p_not_worse = (double(not_worse) + 1.0) / (double(resamples) + 1.0);
  return r;
}

const json* ok_unit(const json& run, const std::string& name) {
  if (!run["units"].contains(name)) return nullptr;
  const json& u = run["units"][name];
  return u.value("status", "") == "ok" ? &u : nullptr;
}

}  // namespace

int find_run(const json& runs, const std::string& scheme) {
  for (size_t i = 0; i < runs.size(); ++i) {
    if (runs[i]["scheme_canonical"] == scheme || runs[i]["scheme"] == scheme) return int(i);
  }
  return -1;
}

std::pair<std::string, std::string> split_pair(const std::string& arg, const json& base, const json& cand) {
  // Scheme specs contain '=' themselves ("rtn:int4,group=128"): take the split whose two sides
  // name runs of the two files; else the first '=' (and the caller reports what is missing).
  const size_t first = arg.find('=');
  if (first == std::string::npos || first == 0 || first + 1 == arg.size()) {
    throw Error("--pair: expected BASE=NEW, got '" + arg + "'");
  }
  for (size_t eq = first; eq != std::string::npos; eq = arg.find('=', eq + 1)) {
    if (find_run(base["runs"], arg.substr(0, eq)) >= 0 && find_run(cand["runs"], arg.substr(eq + 1)) >= 0) {
      return {arg.substr(0, eq), arg.substr(eq + 1)};
    }
  }
  return {arg.substr(0, first), arg.substr(first + 1)};
}

CompareReport compare_results(const json& base, const std::string& base_path, const json& cand,
                              const std::string& cand_path, const CompareOptions& opt) {
  CompareReport rep;
  if (base["model"]["sha256"] != cand["model"]["sha256"]) {
    rep.notes.push_back("the two files measured different model files (sha256 " +
                        base["model"]["sha256"].get<std::string>().substr(0, 12) + " vs " +
                        cand["model"]["sha256"].get<std::string>().substr(0, 12) + ")");
  }
  // Pairs of runs: explicit --pair BASE=NEW first, then equal canonical schemes; two files of one
  // run each are paired whatever their schemes (a new scheme against a stored baseline).
  std::vector<std::pair<const json*, const json*>> pairs;
  std::vector<bool> base_used(base["runs"].size(), false), cand_used(cand["runs"].size(), false);
  for (const auto& [bs, cs] : opt.pairs) {
    const int bi = find_run(base["runs"], bs), ci = find_run(cand["runs"], cs);
    if (bi < 0) throw Error(base_path + ": --pair names scheme '" + bs + "', which the baseline does not have");
    if (ci < 0) throw Error(cand_path + ": --pair names scheme '" + cs + "', which the new file does not have");
    pairs.emplace_back(&base["runs"][size_t(bi)], &cand["runs"][size_t(ci)]);
    base_used[size_t(bi)] = cand_used[size_t(ci)] = true;
  }
  for (size_t ci = 0; ci < cand["runs"].size(); ++ci) {
    if (cand_used[ci]) continue;
    const int bi = find_run(base["runs"], cand["runs"][ci]["scheme_canonical"]);
    if (bi >= 0 && !base_used[size_t(bi)]) {
      pairs.emplace_back(&base["runs"][size_t(bi)], &cand["runs"][ci]);
      base_used[size_t(bi)] = cand_used[ci] = true;
    }
  }
  if (pairs.empty() && base["runs"].size() == 1 && cand["runs"].size() == 1) {
    pairs.emplace_back(&base["runs"][0], &cand["runs"][0]);
    base_used[0] = cand_used[0] = true;
  }
  for (size_t i = 0; i < cand["runs"].size(); ++i) {
    if (!cand_used[i]) rep.notes.push_back(cand["runs"][i]["scheme_canonical"].get<std::string>() + ": not in the baseline (not compared)");
  }
  for (size_t i = 0; i < base["runs"].size(); ++i) {
    if (!base_used[i]) rep.notes.push_back(base["runs"][i]["scheme_canonical"].get<std::string>() + ": only in the baseline (not compared)");
  }
  for (const auto& [br, crp] : pairs) {
    const json& cr = *crp;
    std::string scheme = cr["scheme_canonical"];
    if ((*br)["scheme_canonical"] != cr["scheme_canonical"]) scheme = (*br)["scheme_canonical"].get<std::string>() + " -> " + scheme;
    if (cr["status"] == "failed" && (*br)["status"] != "failed") {
      rep.findings.push_back({scheme, "run", "failed: " + cr.value("error", std::string("?")), true});
      continue;
    }
    for (const auto& [name, bu] : (*br)["units"].items()) {
      const json* b = ok_unit(*br, name);
      const json* n = ok_unit(cr, name);
      if (!b) continue;
      if (!n) {
        const json& nu = cr["units"].contains(name) ? cr["units"][name] : json();
        const bool failed = nu.is_object() && nu.value("status", "") == "failed";
        if (failed) {
          rep.findings.push_back({scheme, name, "failed: " + nu.value("error", std::string("?")), true});
        } else {
          rep.notes.push_back(scheme + " " + name + ": not measured in the new file");
        }
        continue;
      }
      if (name == "perplexity" || name == "kl") {
        const bool is_ppl = name == "perplexity";
        const char* num_key = is_ppl ? "nll_sum" : "kld_sum";
        const auto ib = read_items(base_path, *b), in = read_items(cand_path, *n);
        std::vector<double> nb, db, nn, dn;
        if (ib.size() == in.size()) {
          for (size_t i = 0; i < ib.size(); ++i) {
            nb.push_back(ib[i].value(num_key, 0.0));
            db.push_back(ib[i].value("count", 0.0));
            nn.push_back(in[i].value(num_key, 0.0));
            dn.push_back(in[i].value("count", 0.0));
          }
        } else {
          rep.notes.push_back(scheme + " " + name + ": chunk counts differ (" + std::to_string(ib.size()) + " vs " +
                              std::to_string(in.size()) + "); compared unpaired");
        }
        const BootResult br_ = paired_bootstrap(nb, db, nn, dn, opt.bootstrap, opt.seed);
        const double p = nb.empty() ? 1.0 : br_.p_not_worse;
        Finding f{scheme, is_ppl ? "perplexity" : "kld", "", false};
        if (is_ppl) {
          const double pb = (*b)["result"]["ppl"], pn = (*n)["result"]["ppl"];
          const double rel = pn / pb - 1.0;
          f.regression = p < opt.alpha && rel > opt.max_quality_drop;
          f.detail = "PPL " + f4(pb) + " -> " + f4(pn) + " (" + (rel >= 0 ? "+" : "") + f4(100 * rel) +
                     "%, tolerance " + f4(100 * opt.max_quality_drop) + "%), paired bootstrap over " +
                     std::to_string(nb.size()) + " chunks p=" + f4(p);
        } else {
          const double kb = (*b)["result"]["kld_mean"], kn = (*n)["result"]["kld_mean"];
          f.regression = p < opt.alpha && kn - kb > opt.max_kld_increase;
          f.detail = "KLD " + f4(kb) + " -> " + f4(kn) + " nats (tolerance +" + f4(opt.max_kld_increase) +
                     "), paired bootstrap over " + std::to_string(nb.size()) + " chunks p=" + f4(p);
        }
        rep.findings.push_back(f);
      } else if (name == "speed") {
        for (const char* phase : {"prefill", "decode"}) {
          const json& sb = (*b)["result"][phase];
          const json& sn = (*n)["result"][phase];
          const double mb = sb["tokens_per_second_median"], mn = sn["tokens_per_second_median"];
          auto spread = [](const json& s) {
            const double med = s["tokens_per_second_median"];
            return med > 0 ? (s["tokens_per_second_max"].get<double>() - s["tokens_per_second_min"].get<double>()) / med : 0.0;
          };
          const double noise = std::max(spread(sb), spread(sn));
          const double ratio = mb > 0 ? mn / mb : 1.0;
          const double floor = 1.0 - opt.max_slowdown - noise;
          rep.findings.push_back({scheme, std::string("speed ") + phase,
                                  f4(mb) + " -> " + f4(mn) + " tokens/s (x" + f4(ratio) + "; fails below x" + f4(floor) +
                                      " = 1 - " + f4(opt.max_slowdown) + " tolerance - " + f4(noise) + " measured spread" +
                                      (floor <= 0 ? ": too noisy to detect any slowdown)" : ")"),
                                  ratio < floor});
        }
      } else if (name.rfind("suite:", 0) == 0) {
        const auto ib = read_items(base_path, *b), in = read_items(cand_path, *n);
        std::map<std::string, std::map<std::string, const json*>> by_task;  // task -> id -> record (new)
        for (const auto& r : in) by_task[r.value("task", "")][r.value("id", "")] = &r;
        std::map<std::string, std::vector<std::pair<const json*, const json*>>> pairs;
        for (const auto& r : ib) {
          const std::string t = r.value("task", "");
          const auto it = by_task[t].find(r.value("id", ""));
          if (it != by_task[t].end()) pairs[t].emplace_back(&r, it->second);
        }
        for (const auto& [task, ps] : pairs) {
          if (ps.empty()) continue;
          const json& first = *ps.front().first;
          if (first.contains("correct")) {
            int64_t bb = 0, cc = 0, right_b = 0, right_n = 0;
            for (const auto& [x, y] : ps) {
              const bool xb = x->value("correct", false), yb = y->value("correct", false);
              right_b += xb;
              right_n += yb;
              bb += xb && !yb;
              cc += !xb && yb;
            }
            const double p = mcnemar_mid_p(bb, cc);
            const double acc_b = double(right_b) / double(ps.size()), acc_n = double(right_n) / double(ps.size());
            const double drop = acc_b > 0 ? (acc_b - acc_n) / acc_b : 0.0;
            rep.findings.push_back({scheme, name.substr(6) + "/" + task + " accuracy",
                                    f4(acc_b) + " -> " + f4(acc_n) + " on " + std::to_string(ps.size()) +
                                        " paired items (" + std::to_string(bb) + " lost, " + std::to_string(cc) +
                                        " gained), McNemar mid-p=" + f4(p),
                                    p < opt.alpha && drop > opt.max_quality_drop});
          } else if (first.contains("logprob")) {
            std::vector<double> nb, db, nn, dn;
            for (const auto& [x, y] : ps) {
              nb.push_back(-x->value("logprob", 0.0));
              db.push_back(x->value("tokens", 0.0));
              nn.push_back(-y->value("logprob", 0.0));
              dn.push_back(y->value("tokens", 0.0));
            }
            const BootResult r = paired_bootstrap(nb, db, nn, dn, opt.bootstrap, opt.seed);
            double sb = 0, tb = 0;
            for (size_t i = 0; i < nb.size(); ++i) sb += nb[i], tb += db[i];
            const double base_nll = tb > 0 ? sb / tb : 0.0;
            const double rel = base_nll > 0 ? r.diff / base_nll : 0.0;
            rep.findings.push_back({scheme, name.substr(6) + "/" + task + " log-likelihood",
                                    "NLL per token " + f4(base_nll) + " -> " + f4(base_nll + r.diff) + " (" +
                                        f4(100 * rel) + "%), paired bootstrap over " + std::to_string(ps.size()) +
                                        " items p=" + f4(r.p_not_worse),
                                    r.p_not_worse < opt.alpha && rel > opt.max_quality_drop});
          }
        }
      }
    }
  }
  return rep;
}

}  // namespace qbench::run
