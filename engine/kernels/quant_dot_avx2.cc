// AVX2 + FMA + F16C kernels of quant_dot.h (the shared code is quant_dot_simd-inl.h). Compiled
// with exactly those flags (engine/CMakeLists.txt) and entered only after
// isa_available(CpuIsa::Avx2). Includes no project header with inline functions that could be
// emitted here with AVX2 and then kept by the linker for the whole program: quant_dot.h and
// types.h declare only (the one inline, vec_dot, calls through a pointer).
#include <immintrin.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>

#include "engine/formats/float_codes.h"  // data only (the NF4 code book): no inline functions
#include "engine/kernels/quant_dot.h"

#define QBENCH_SIMD_NS avx2
#define QBENCH_SIMD_AVX512 0
#include "engine/kernels/quant_dot_simd-inl.h"

namespace qbench::quant_dot_detail {
std::span<const QuantDotKernel> avx2_kernels() { return avx2::kKernels; }
}  // namespace qbench::quant_dot_detail
