// Tables of a results document: the seed-style summary (method, bits/weight, quality as % of the
// baseline run ± stderr per measurement, speed x, memory x) and one full table per suite
// (every task's primary metric, value ± stderr and % of the baseline), as Markdown, LaTeX
// (booktabs, ready to \input) or CSV (one file; the first column names the table).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace qbench::run {

enum class ReportFormat { Markdown, Latex, Csv };
ReportFormat parse_report_format(const std::string& s);  // throws qbench::Error

struct Table {
  std::string title;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> footnotes;  // printed under the table
};

// The summary table first, then one per suite.
std::vector<Table> report_tables(const nlohmann::json& results);
std::string render_tables(const std::vector<Table>& tables, ReportFormat format);

}  // namespace qbench::run
