// Whether the oracle tests can run: the shared models, datasets and llama.cpp tools are found
// through QBENCH_SHARED, which defaults to the `shared` folder beside the checkout
// (tests/shared_env.cc). When they are missing, SharedFolderFound is skipped with a message that
// says how many tests that costs, so even plain `ctest` lists the reason among the tests that did
// not run (scripts/test.sh also prints a count).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "tests/test_util.h"

namespace qbench {
namespace {

TEST(OracleData, SharedFolderFound) {
  const char* root = std::getenv("QBENCH_SHARED");
  const bool found = root != nullptr && std::filesystem::is_directory(root);
  if (found) return;
  const std::string why = std::string("QBENCH_SHARED ") +
                          (root == nullptr ? "is not set and there is no " QBENCH_DEFAULT_SHARED
                                           : std::string("=") + root + " is not a folder") +
                          ": every oracle test (llama.cpp-pinned perplexity, bit-exact formats, "
                          "dataset loaders) is skipped";
  if (test::in_ci()) FAIL() << why << " (CI=true)";
  GTEST_SKIP() << why << " " QBENCH_ORACLE_SKIP_MARKER;
}

// Child of DefaultsToTheSharedFolderBesideTheCheckout: prints what the process sees.
TEST(OracleData, PrintSharedRoot) {
  const char* root = std::getenv("QBENCH_SHARED");
  std::printf("QBENCH_SHARED=<%s>\n", root == nullptr ? "unset" : root);
}

std::string run_self_with_env(const std::string& env_prefix) {
  const std::string dir = test::temp_dir("oracle-env");
  const std::string cmd = env_prefix + " /proc/" + std::to_string(::getpid()) +
                          "/exe --gtest_filter=OracleData.PrintSharedRoot >" + dir + "/out 2>&1";
  const int status = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd;
  return test::read_file(dir + "/out");
}

TEST(OracleData, DefaultsToTheSharedFolderBesideTheCheckout) {
  const std::filesystem::path beside =
      std::filesystem::path(QBENCH_SOURCE_DIR).parent_path() / "shared";
  EXPECT_EQ(std::filesystem::weakly_canonical(QBENCH_DEFAULT_SHARED),
            std::filesystem::weakly_canonical(beside));
  const std::string unset = run_self_with_env("env -u QBENCH_SHARED");
  if (std::filesystem::is_directory(beside)) {
    EXPECT_NE(unset.find("QBENCH_SHARED=<" QBENCH_DEFAULT_SHARED ">"), std::string::npos) << unset;
  } else {
    EXPECT_NE(unset.find("QBENCH_SHARED=<unset>"), std::string::npos) << unset;
  }
  // An explicit setting wins, even one that does not exist.
  const std::string set = run_self_with_env("QBENCH_SHARED=/nonexistent/qbench-shared");
  EXPECT_NE(set.find("QBENCH_SHARED=</nonexistent/qbench-shared>"), std::string::npos) << set;
}

}  // namespace
}  // namespace qbench
