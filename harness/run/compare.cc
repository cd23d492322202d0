#include "harness/run/compare.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
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
  return read_items_file((fs::path(results_path).parent_path() / unit["items_file"].get<std::string>()).string());
}

// One-sided p-value that the new mean is not above the baseline's, from independent samples
// (Welch's statistic against the normal distribution; the samples here are chunks or items,
// tens to thousands). 1 when either sample has fewer than 2 values.
double welch_p_not_worse(const std::vector<double>& base, const std::vector<double>& cand) {
  auto moments = [](const std::vector<double>& v) {
    double m = 0, ss = 0;
    for (double x : v) m += x;
    m /= double(v.size());
    for (double x : v) ss += (x - m) * (x - m);
    return std::pair{m, ss / double(v.size() - 1)};
  };
  if (base.size() < 2 || cand.size() < 2) return 1.0;
  const auto [mb, vb] = moments(base);
  const auto [mc, vc] = moments(cand);
  const double se = std::sqrt(vb / double(base.size()) + vc / double(cand.size()));
  if (se == 0.0) return mc > mb ? 0.0 : 1.0;
  return 0.5 * std::erfc((mc - mb) / se / std::sqrt(2.0));
}

// One-sided p-value that the new accuracy is not below the baseline's, from independent samples
// (two-proportion z-test with the pooled proportion).
double two_proportion_p_not_worse(int64_t right_b, int64_t n_b, int64_t right_c, int64_t n_c) {
  if (n_b == 0 || n_c == 0) return 1.0;
  const double pb = double(right_b) / double(n_b), pc = double(right_c) / double(n_c);
  const double pool = double(right_b + right_c) / double(n_b + n_c);
  const double se = std::sqrt(pool * (1 - pool) * (1.0 / double(n_b) + 1.0 / double(n_c)));
  if (se == 0.0) return pc < pb ? 0.0 : 1.0;
  return 0.5 * std::erfc((pb - pc) / se / std::sqrt(2.0));
}

// The settings of two units that differ, other than `ignore` ("'ctx': 128 vs 256; ...").
std::string protocol_differences(const json& b, const json& n, const std::set<std::string>& ignore) {
  std::string out;
  std::set<std::string> keys;
  for (const auto& [k, v] : b.items()) keys.insert(k);
  for (const auto& [k, v] : n.items()) keys.insert(k);
  for (const auto& k : keys) {
    if (ignore.count(k)) continue;
    const json bv = b.contains(k) ? b[k] : json(), nv = n.contains(k) ? n[k] : json();
    if (bv != nv) out += (out.empty() ? "" : "; ") + ("'" + k + "': " + bv.dump() + " in the baseline, " + nv.dump() + " in the new file");
  }
  return out;
}

// Paired bootstrap of d = num_new/den_new - num_base/den_base over n paired pieces: the one-sided
// p-value that d <= 0 (small: evidence that d > 0). 1 without pieces.
double paired_bootstrap_p(const std::vector<double>& num_b, const std::vector<double>& den_b,
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
  if (n == 0) return 1.0;
  Rng rng(seed, "paired-bootstrap");
  std::vector<size_t> idx(n);
  int not_worse = 0;
  for (int s = 0; s < resamples; ++s) {
    for (auto& i : idx) i = size_t(rng.below(n));
    if (stat(&idx) <= 0.0) ++not_worse;
  }
  return (double(not_worse) + 1.0) / (double(resamples) + 1.0);
}

const json* ok_unit(const json& run, const std::string& name) {
  if (!run["units"].contains(name)) return nullptr;
  const json& u = run["units"][name];
  return u.value("status", "") == "ok" ? &u : nullptr;
}

}  // namespace

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
      // Numbers measured under other protocols (text, context, chunks, tasks, activations, speed
      // settings) are not comparable; suites whose items differ pair what they can (below).
      const std::string diff = protocol_differences((*b)["protocol"], (*n)["protocol"], {"items_sha256", "cpu", "simd_path"});
      if (!diff.empty()) {
        throw Error(cand_path + ": " + scheme + " " + name + " was measured under another protocol than in " + base_path +
                    " (" + diff + "); such numbers are not comparable");
      }
      if (name == "speed") {
        // Speed on another CPU or kernel path says nothing about the code: noted, not compared.
        const std::string machine = protocol_differences((*b)["protocol"], (*n)["protocol"], {"items_sha256"});
        if (!machine.empty()) {
          rep.notes.push_back(scheme + " speed: measured on another machine or kernel path (" + machine + "); not compared");
          continue;
        }
      }
      if (name == "perplexity" || name == "kl") {
        const bool is_ppl = name == "perplexity";
        const char* num_key = is_ppl ? "nll_sum" : "kld_sum";
        const auto ib = read_items(base_path, *b), in = read_items(cand_path, *n);
        bool pairs_up = !ib.empty() && ib.size() == in.size();
        for (size_t i = 0; pairs_up && i < ib.size(); ++i) {
          pairs_up = ib[i].value("chunk", -1) == in[i].value("chunk", -2) && ib[i].value("count", -1.0) == in[i].value("count", -2.0);
        }
        double p = 0.0;
        std::string test;
        if (pairs_up) {
          std::vector<double> nb, db, nn, dn;
          for (size_t i = 0; i < ib.size(); ++i) {
            nb.push_back(ib[i].value(num_key, 0.0));
            db.push_back(ib[i].value("count", 0.0));
            nn.push_back(in[i].value(num_key, 0.0));
            dn.push_back(in[i].value("count", 0.0));
          }
          p = paired_bootstrap_p(nb, db, nn, dn, opt.bootstrap, opt.seed);
          test = "paired bootstrap over " + std::to_string(nb.size()) + " chunks p=" + f4(p);
        } else if (ib.size() >= 2 && in.size() >= 2) {
          auto per_token = [&](const std::vector<json>& recs) {
            std::vector<double> v;
            for (const auto& r : recs) {
              const double cnt = r.value("count", 0.0);
              if (cnt > 0) v.push_back(r.value(num_key, 0.0) / cnt);
            }
            return v;
          };
          p = welch_p_not_worse(per_token(ib), per_token(in));
          test = "unpaired Welch test over " + std::to_string(ib.size()) + " and " + std::to_string(in.size()) +
                 " chunks p=" + f4(p);
          rep.notes.push_back(scheme + " " + name + ": the chunks do not pair (" + std::to_string(ib.size()) + " vs " +
                              std::to_string(in.size()) + "); compared with an unpaired test");
        } else {
          // No test can be computed: the tolerance alone decides, so a drop beyond it still fails.
          test = "no per-chunk records to test: decided on the tolerance alone";
          rep.notes.push_back(scheme + " " + name + ": no per-chunk records; decided on the tolerance alone");
        }
        Finding f{scheme, is_ppl ? "perplexity" : "kld", "", false};
        if (is_ppl) {
          const double pb = (*b)["result"]["ppl"], pn = (*n)["result"]["ppl"];
          const double rel = pn / pb - 1.0;
          f.regression = p < opt.alpha && rel > opt.max_quality_drop;
          f.detail = "PPL " + f4(pb) + " -> " + f4(pn) + " (" + (rel >= 0 ? "+" : "") + f4(100 * rel) +
                     "%, tolerance " + f4(100 * opt.max_quality_drop) + "%), " + test;
        } else {
          const double kb = (*b)["result"]["kld_mean"], kn = (*n)["result"]["kld_mean"];
          f.regression = p < opt.alpha && kn - kb > opt.max_kld_increase;
          f.detail = "KLD " + f4(kb) + " -> " + f4(kn) + " nats (tolerance +" + f4(opt.max_kld_increase) + "), " + test;
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
        // task -> id -> record, for each file
        std::map<std::string, std::map<std::string, const json*>> base_by_task, new_by_task;
        for (const auto& r : ib) base_by_task[r.value("task", "")][r.value("id", "")] = &r;
        for (const auto& r : in) new_by_task[r.value("task", "")][r.value("id", "")] = &r;
        if (ib.empty() || in.empty()) {
          rep.notes.push_back(scheme + " " + name + ": no per-item records; tasks not tested");
        }
        for (const auto& [task, base_items] : base_by_task) {
          const auto nt = new_by_task.find(task);
          if (nt == new_by_task.end()) {
            rep.notes.push_back(scheme + " " + name.substr(6) + "/" + task + ": not in the new file (not compared)");
            continue;
          }
          const auto& new_items = nt->second;
          // Paired when both files scored the same items; otherwise an unpaired test over all of each.
          std::vector<std::pair<const json*, const json*>> ps;
          for (const auto& [id, rb] : base_items) {
            if (const auto it = new_items.find(id); it != new_items.end()) ps.emplace_back(rb, it->second);
          }
          const bool paired = ps.size() == base_items.size() && ps.size() == new_items.size();
          if (!paired) {
            rep.notes.push_back(scheme + " " + name.substr(6) + "/" + task + ": the files scored different items (" +
                                std::to_string(ps.size()) + " shared of " + std::to_string(base_items.size()) + " and " +
                                std::to_string(new_items.size()) + "); compared with an unpaired test");
          }
          const json& first = *base_items.begin()->second;
          const std::string what = name.substr(6) + "/" + task;
          if (first.contains("correct")) {
            int64_t right_b = 0, right_n = 0;
            for (const auto& [id, r] : base_items) right_b += r->value("correct", false);
            for (const auto& [id, r] : new_items) right_n += r->value("correct", false);
            const double acc_b = double(right_b) / double(base_items.size());
            const double acc_n = double(right_n) / double(new_items.size());
            const double drop = acc_b > 0 ? (acc_b - acc_n) / acc_b : (acc_n < acc_b ? 1.0 : 0.0);
            double p;
            std::string detail = f4(acc_b) + " -> " + f4(acc_n);
            if (paired) {
              int64_t lost = 0, gained = 0;
              for (const auto& [x, y] : ps) {
                const bool xb = x->value("correct", false), yb = y->value("correct", false);
                lost += xb && !yb;
                gained += !xb && yb;
              }
              p = mcnemar_mid_p(lost, gained);
              detail += " on " + std::to_string(ps.size()) + " paired items (" + std::to_string(lost) + " lost, " +
                        std::to_string(gained) + " gained), McNemar mid-p=" + f4(p);
            } else {
              p = two_proportion_p_not_worse(right_b, int64_t(base_items.size()), right_n, int64_t(new_items.size()));
              detail += " on " + std::to_string(base_items.size()) + " and " + std::to_string(new_items.size()) +
                        " items (unpaired), two-proportion z-test p=" + f4(p);
            }
            rep.findings.push_back({scheme, what + " accuracy", detail, p < opt.alpha && drop > opt.max_quality_drop});
          } else if (first.contains("logprob")) {
            double p, base_nll, new_nll;
            std::string test;
            auto totals = [](const std::map<std::string, const json*>& items) {
              double s = 0, t = 0;
              for (const auto& [id, r] : items) s += -r->value("logprob", 0.0), t += r->value("tokens", 0.0);
              return t > 0 ? s / t : 0.0;
            };
            base_nll = totals(base_items);
            new_nll = totals(new_items);
            if (paired) {
              std::vector<double> nb, db, nn, dn;
              for (const auto& [x, y] : ps) {
                nb.push_back(-x->value("logprob", 0.0));
                db.push_back(x->value("tokens", 0.0));
                nn.push_back(-y->value("logprob", 0.0));
                dn.push_back(y->value("tokens", 0.0));
              }
              p = paired_bootstrap_p(nb, db, nn, dn, opt.bootstrap, opt.seed);
              test = "paired bootstrap over " + std::to_string(ps.size()) + " items p=" + f4(p);
            } else {
              auto per_token = [](const std::map<std::string, const json*>& items) {
                std::vector<double> v;
                for (const auto& [id, r] : items) {
                  const double t = r->value("tokens", 0.0);
                  if (t > 0) v.push_back(-r->value("logprob", 0.0) / t);
                }
                return v;
              };
              p = welch_p_not_worse(per_token(base_items), per_token(new_items));
              test = "unpaired Welch test over " + std::to_string(base_items.size()) + " and " +
                     std::to_string(new_items.size()) + " items p=" + f4(p);
            }
            const double rel = base_nll > 0 ? (new_nll - base_nll) / base_nll : 0.0;
            rep.findings.push_back({scheme, what + " log-likelihood",
                                    "NLL per token " + f4(base_nll) + " -> " + f4(new_nll) + " (" + f4(100 * rel) + "%), " + test,
                                    p < opt.alpha && rel > opt.max_quality_drop});
          }
        }
      }
    }
  }
  return rep;
}

}  // namespace qbench::run
