// Facts about the machine and the process, recorded with every result.
#pragma once

#include <cstdint>
#include <string>

namespace qbench {

// Peak resident set size of this process so far, in bytes (getrusage ru_maxrss).
uint64_t peak_rss_bytes();
// "model name" of the first CPU in /proc/cpuinfo, or "unknown".
std::string cpu_name();
// ISA extensions the generic code of this binary was compiled to use (-march), e.g.
// "avx512f avx512vnni avx2 fma f16c" with QBENCH_NATIVE; "x86-64" for the portable default.
std::string compiled_simd();

}  // namespace qbench
