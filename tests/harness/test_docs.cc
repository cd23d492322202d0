// The README's result tables are what the current code prints for the committed results: each
// block between
//   <!-- qbench report FILE --summary -->          (the whole block, exactly)
//   <!-- rows of: qbench report FILE --summary --> (each table row, verbatim)
// and <!-- end --> is compared with `qbench report FILE --summary` run now. A change to the
// report code or a regenerated results file without an updated README fails here.
#include <gtest/gtest.h>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/harness/test_run_util.h"
#include "tests/test_util.h"

namespace qbench {
namespace {

std::string slurp(const std::string& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct Block {
  bool exact = true;
  std::string file;
  std::string text;
};

std::vector<Block> checked_blocks(const std::string& readme) {
  std::vector<Block> out;
  const std::string exact = "<!-- qbench report ", rows = "<!-- rows of: qbench report ", end = "<!-- end -->";
  size_t at = 0;
  while (true) {
    const size_t a = readme.find(exact, at), b = readme.find(rows, at);
    const size_t start = std::min(a, b);
    if (start == std::string::npos) break;
    Block blk;
    blk.exact = start == a;
    const size_t name_at = start + (blk.exact ? exact.size() : rows.size());
    const size_t name_end = readme.find(' ', name_at);
    blk.file = readme.substr(name_at, name_end - name_at);
    const size_t body = readme.find('\n', start) + 1;
    const size_t stop = readme.find(end, body);
    EXPECT_NE(stop, std::string::npos) << "unterminated block for " << blk.file;
    if (stop == std::string::npos) break;
    blk.text = readme.substr(body, stop - body);
    out.push_back(blk);
    at = stop + end.size();
  }
  return out;
}

TEST(Docs, ReadmeTablesAreWhatReportPrintsForTheCommittedResults) {
  const std::string root = QBENCH_SOURCE_DIR;
  const auto blocks = checked_blocks(slurp(root + "/README.md"));
  ASSERT_GE(blocks.size(), 2u) << "README.md lost its checked result blocks";
  for (const auto& b : blocks) {
    SCOPED_TRACE(b.file);
    const auto r = test::run_cli("report " + root + "/" + b.file + " --summary", test::temp_dir("docs"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string& printed = r.out;
    if (b.exact) {
      EXPECT_EQ(b.text, printed) << "README.md's table differs from `qbench report " << b.file << " --summary`";
    } else {
      std::istringstream lines(b.text);
      std::string line;
      int n = 0;
      while (std::getline(lines, line)) {
        if (line.rfind("| ", 0) != 0) continue;
        ++n;
        EXPECT_NE(printed.find(line + "\n"), std::string::npos) << "README.md row not printed by report: " << line;
      }
      EXPECT_GT(n, 0);
    }
  }
}

}  // namespace
}  // namespace qbench
