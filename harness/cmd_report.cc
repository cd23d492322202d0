// qbench report: tables of a results file as Markdown, LaTeX (booktabs) or CSV.
#include <iostream>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "harness/cli.h"
#include "harness/commands.h"
#include "harness/run/report.h"
#include "harness/run/results.h"

namespace qbench::cli {

int cmd_report(const std::vector<std::string>& args) {
  std::string results_path, format = "md", out, baseline;
  bool summary = false;
  po::options_description desc("qbench report options");
  desc.add_options()
      ("results", po::value(&results_path)->required()->value_name("RESULTS.json"), "results of qbench run")
      ("format,f", po::value(&format)->value_name("md|latex|csv"), "output format (default md)")
      ("out,o", po::value(&out)->value_name("FILE"), "write to FILE (atomically) instead of stdout")
      ("summary", po::bool_switch(&summary), "only the summary table (what qbench run prints)")
      ("baseline", po::value(&baseline)->value_name("SCHEME"),
       "make quality, speed and memory relative to this run instead of the experiment's baseline, "
       "with the errors paired against it (per chunk, per item) from the per-item records; KLD stays "
       "against its reference and a column adds the paired difference of mean KLDs")
      ("help,h", "show this help");
  po::positional_options_description pos;
  pos.add("results", 1);
  po::variables_map vm;
  if (!parse(args, desc,
             "usage: qbench report RESULTS.json [--format md|latex|csv] [--summary] [--baseline SCHEME] [--out FILE]\n\n"
             "The summary table (method, bits/weight, quality as % of the baseline run +/- stderr, speed x,\n"
             "memory x) and one table per suite. LaTeX uses booktabs (\\usepackage{booktabs}) and can be \\input.",
             vm, &pos)) {
    return 0;
  }
  const run::ReportFormat f = run::parse_report_format(format);
  nlohmann::json results = run::load_results(results_path);
  if (!baseline.empty()) {
    results["relative"] = run::relative_table(results, run::items_reader(results_path), baseline);
  }
  auto tables = run::report_tables(results);
  if (summary) tables.resize(1);
  const std::string text = run::render_tables(tables, f);
  write_output(out, text);
  return 0;
}

}  // namespace qbench::cli
