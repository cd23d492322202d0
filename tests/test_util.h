// Helpers shared by the test suites.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <unistd.h>

namespace qbench::test {

inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

// Absolute path of a file under $QBENCH_SHARED, or "" when it is not there. When the variable is
// unset, tests/shared_env.cc has already pointed it at the `shared` folder beside the checkout
// (if there is one).
inline std::string shared_file(const std::string& rel) {
  const char* root = std::getenv("QBENCH_SHARED");
  if (root == nullptr || *root == '\0') return {};
  const std::filesystem::path p = std::filesystem::path(root) / rel;
  return std::filesystem::exists(p) ? p.string() : std::string();
}

// Scratch folder for a test's files, emptied first; unique per process, since ctest runs
// tests in parallel.
inline std::string temp_dir(const std::string& name) {
  const auto p = std::filesystem::temp_directory_path() /
                 ("qbench-test-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

// Whole contents of a file ("" when it cannot be read).
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace qbench::test

// Marker in the message of every test skipped for a missing shared file: scripts/test.sh counts
// it in ctest's log to print a summary line.
#define QBENCH_ORACLE_SKIP_MARKER "[oracle test skipped]"

// Declares `var` as the path of a shared file; when it is missing the test fails under CI=true
// and is skipped elsewhere, with a message naming the file.
#define QBENCH_SHARED_FILE(var, rel)                                                        \
  const std::string var = ::qbench::test::shared_file(rel);                                 \
  if (var.empty()) {                                                                        \
    if (::qbench::test::in_ci()) {                                                          \
      FAIL() << "missing shared file $QBENCH_SHARED/" << (rel) << " (CI=true)";             \
    } else {                                                                                \
      GTEST_SKIP() << "shared file $QBENCH_SHARED/" << (rel)                               \
                   << " not found; set QBENCH_SHARED " QBENCH_ORACLE_SKIP_MARKER;            \
    }                                                                                       \
  }
