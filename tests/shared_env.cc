// Linked into every test program: when QBENCH_SHARED is not set, it defaults to the `shared`
// folder beside the checkout (QBENCH_DEFAULT_SHARED, set by tests/CMakeLists.txt), so plain
// `ctest` runs the oracle tests instead of skipping them. Set here, before main, rather than in
// each test, because code under test (dataset loaders, `$QBENCH_SHARED/` config paths, child
// qbench processes) reads the variable itself. An explicit QBENCH_SHARED always wins.
#include <cstdlib>
#include <filesystem>

namespace {

const bool kSharedDefaulted = [] {
  const char* set = std::getenv("QBENCH_SHARED");
  if (set != nullptr && *set != '\0') return false;
  std::error_code ec;
  if (!std::filesystem::is_directory(QBENCH_DEFAULT_SHARED, ec)) return false;
  return ::setenv("QBENCH_SHARED", QBENCH_DEFAULT_SHARED, 0) == 0;
}();

}  // namespace
