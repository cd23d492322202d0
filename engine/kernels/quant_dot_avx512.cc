// AVX-512 (F, BW, VL, DQ, VNNI) kernels of quant_dot.h (the shared code is
// quant_dot_simd-inl.h) and of quant_gemm.h (quant_gemm_avx512-inl.h): vpdpbusd / vpdpwssd for
// the integer products, two legacy blocks per 512-bit register, 16-wide float kernels. Compiled with its own flags (engine/CMakeLists.txt);
// entered only after isa_available(CpuIsa::Avx512). See quant_dot_avx2.cc on headers.
#include <immintrin.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>

#include "engine/formats/float_codes.h"  // data only (the NF4 code book): no inline functions
#include "engine/kernels/quant_dot.h"
#include "engine/kernels/quant_gemm.h"  // declarations and constants only

#define QBENCH_SIMD_NS avx512
#define QBENCH_SIMD_AVX512 1
#include "engine/kernels/quant_dot_simd-inl.h"
#include "engine/kernels/quant_gemm_avx512-inl.h"

namespace qbench::quant_dot_detail {
std::span<const QuantDotKernel> avx512_kernels() { return avx512::kKernels; }
}  // namespace qbench::quant_dot_detail

namespace qbench::quant_gemm_detail {

FloatGemmFn avx512_float_gemm(TensorType type) {
  if (type == TensorType::F16) return quant_dot_detail::avx512::float_gemm<TensorType::F16>;
  if (type == TensorType::BF16) return quant_dot_detail::avx512::float_gemm<TensorType::BF16>;
  if (type == TensorType::NF4) return quant_dot_detail::avx512::float_gemm<TensorType::NF4>;
  if (type == TensorType::FP8_E4M3) return quant_dot_detail::avx512::float_gemm<TensorType::FP8_E4M3>;
  return nullptr;
}

GemvFn avx512_float_gemv(TensorType type) {
  if (type == TensorType::F16) return quant_dot_detail::avx512::gemv16_float<quant_dot_detail::avx512::FloatF16>;
  if (type == TensorType::BF16) return quant_dot_detail::avx512::gemv16_float<quant_dot_detail::avx512::FloatBF16>;
  return nullptr;
}

const QuantGemmKernel* avx512_gemm(TensorType type) {
  for (const QuantGemmKernel& k : quant_dot_detail::avx512::kLegacyGemms) {
    if (k.weight_type == type) return &k;
  }
  if (type >= TensorType::INT_FIRST && type <= TensorType::INT_LAST) {
    return &quant_dot_detail::avx512::kIntGemms[uint32_t(type) - uint32_t(TensorType::INT_FIRST)];
  }
  return nullptr;
}

}  // namespace qbench::quant_gemm_detail
