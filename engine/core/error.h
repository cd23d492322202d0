// Two kinds of failure (STYLE.md, convention 9):
//  - qbench::Error: untrusted input (model files, datasets, configs, the command line) is wrong.
//    The message names the file, tensor or line and the offending value; the CLI prints it on
//    one line and exits with code 2. Library code never aborts on bad input.
//    qbench::IoError, a kind of Error, is an I/O failure that is not the input's fault (disk
//    full, quota, I/O error while reading or writing): same one-line message, exit code 1.
//  - QB_ASSERT: a broken internal invariant. Aborts with file and line (QB_DASSERT only in
//    debug builds, for hot paths).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace qbench {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Derives from Error so that code recording failed work (the runner) catches both alike.
class IoError : public Error {
 public:
  using Error::Error;
};

[[noreturn]] inline void assert_fail(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "qbench: internal error: %s:%d: assertion failed: %s\n", file, line, expr);
  std::abort();
}

}  // namespace qbench

#define QB_ASSERT(cond) \
  ((cond) ? (void)0 : ::qbench::assert_fail(#cond, __FILE__, __LINE__))
#ifdef NDEBUG
#define QB_DASSERT(cond) ((void)0)
#else
#define QB_DASSERT(cond) QB_ASSERT(cond)
#endif
