// qbench compare: regression check of a new results file against a baseline (paired statistics).
#include <cstdio>

#include "engine/core/error.h"
#include "harness/cli.h"
#include "harness/commands.h"
#include "harness/run/compare.h"
#include "harness/run/results.h"

namespace qbench::cli {

int cmd_compare(const std::vector<std::string>& args) {
  std::vector<std::string> files, pair_args;
  run::CompareOptions opt;
  bool json = false, all = false;
  po::options_description desc("qbench compare options");
  desc.add_options()
      ("files", po::value(&files)->value_name("FILE"), "BASELINE.json NEW.json")
      ("max-quality-drop", po::value(&opt.max_quality_drop)->value_name("X"),
       "relative quality drop tolerated when significant (default 0.01 = 1%)")
      ("max-kld-increase", po::value(&opt.max_kld_increase)->value_name("NATS"), "KLD increase tolerated (default 0.01)")
      ("max-slowdown", po::value(&opt.max_slowdown)->value_name("Y"),
       "relative slowdown tolerated beyond the measured spread (default 0.05)")
      ("alpha", po::value(&opt.alpha)->value_name("P"), "one-sided significance level (default 0.05)")
      ("pair", po::value(&pair_args)->value_name("BASE=NEW"), "compare these two schemes (repeatable)")
      ("all", po::bool_switch(&all), "print every check, not only the regressions")
      ("json", po::bool_switch(&json), "print the findings as one JSON document")
      ("help,h", "show this help");
  po::positional_options_description pos;
  pos.add("files", 2);
  po::variables_map vm;
  if (!parse(args, desc,
             "usage: qbench compare BASELINE.json NEW.json [--max-quality-drop X] [--max-slowdown Y] [--pair BASE=NEW]\n\n"
             "Compares quality item by item (McNemar mid-p for accuracies, paired bootstrap for perplexity, KLD and\n"
             "log-likelihoods) and speed by ratio with a noise allowance from the measured spread.\n"
             "Exit status: 0 no regression, 1 regression, 2 bad input.",
             vm, &pos)) {
    return 0;
  }
  if (files.size() != 2) throw Error("expected two files, BASELINE.json NEW.json (see --help)");
  if (opt.max_quality_drop < 0 || opt.max_slowdown < 0 || opt.max_kld_increase < 0) throw Error("tolerances must be >= 0");
  if (!(opt.alpha > 0 && opt.alpha < 1)) throw Error("--alpha must be in (0, 1)");
  const auto base = run::load_results(files[0]);
  const auto cand = run::load_results(files[1]);
  for (const auto& p : pair_args) opt.pairs.push_back(run::split_pair(p, base, cand));
  const run::CompareReport rep = run::compare_results(base, files[0], cand, files[1], opt);
  if (json) {
    print_json(rep.to_json());
  } else {
    for (const auto& n : rep.notes) std::printf("note: %s\n", n.c_str());
    int passed = 0;
    for (const auto& f : rep.findings) {
      passed += !f.regression;
      if (!f.regression && !all) continue;
      std::printf("%-10s %s %s: %s\n", f.regression ? "REGRESSION" : "ok", f.scheme.c_str(), f.what.c_str(), f.detail.c_str());
    }
    std::printf("result: %s (%zu checks, %d within tolerance%s)\n", rep.regression() ? "regression" : "no regression",
                rep.findings.size(), passed, all ? "" : "; --all lists them");
  }
  return rep.regression() ? 1 : 0;
}

}  // namespace qbench::cli
