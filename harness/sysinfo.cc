#include "harness/sysinfo.h"

#include <sys/resource.h>

#include <fstream>

namespace qbench {

uint64_t peak_rss_bytes() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return uint64_t(ru.ru_maxrss) * 1024u;
}

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown";
}

std::string compiled_simd() {
  std::string s;
  [[maybe_unused]] auto add = [&](const char* name) {
    if (!s.empty()) s += ' ';
    s += name;
  };
#ifdef __AVX512F__
  add("avx512f");
#endif
#ifdef __AVX512BW__
  add("avx512bw");
#endif
#ifdef __AVX512VNNI__
  add("avx512vnni");
#endif
#ifdef __AVX2__
  add("avx2");
#endif
#ifdef __FMA__
  add("fma");
#endif
#ifdef __F16C__
  add("f16c");
#endif
  // The portable default: generic code for baseline x86-64, the SIMD kernels chosen at run time
  // (results record that choice separately, as simd_path).
  return s.empty() ? "x86-64" : s;
}

}  // namespace qbench
