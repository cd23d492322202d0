// Dot products of packed weight rows with activations quantized on the fly, as llama.cpp's CPU
// backend computes them: the activation row is quantized to the weight type's partner format
// (Q8_0 for Q4_0 and Q8_0 weights) and the product is summed in integers per block, scaled by
// the two fp16 block scales and accumulated in float.
//
// Three implementations per kernel: a scalar reference (the definition), AVX2, and AVX-512
// (VNNI), each in its own translation unit compiled with its own flags (quant_dot_avx2.cc,
// quant_dot_avx512.cc); the path is chosen once per process from the CPU, or forced to the
// scalar one with QBENCH_FORCE_SCALAR=1. This header is free of ISA flags.
//
// Paths differ from one another only in float summation order (integer block sums are exact).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "engine/formats/types.h"
#include "engine/model/model.h"

namespace qbench {

enum class CpuIsa { Scalar = 0, Avx2 = 1, Avx512 = 2 };
std::string_view isa_name(CpuIsa isa);

// Whether this CPU (and this build) can run `isa`.
bool isa_available(CpuIsa isa);
// The path used by default: the best available, or Scalar when QBENCH_FORCE_SCALAR=1.
// Read once (the environment is not re-read).
CpuIsa default_isa();

// sum over n values of w[i] * a[i]; `w` holds n / 32 weight blocks, `a` n / 32 activation
// blocks of the partner type. n is a multiple of 32.
using VecDotFn = float (*)(int64_t n, const uint8_t* w, const uint8_t* a);

struct QuantDotKernel {
  TensorType weight_type;
  TensorType activation_type;  // the format activations are quantized to
  VecDotFn dot;
};

// The kernel for weights of `type` on `isa`, or nullptr when there is none (the caller falls
// back to dequantization).
const QuantDotKernel* find_quant_dot(TensorType type, CpuIsa isa);

// y[t, o] = sum_i W[o, i] * x[t, i] through the quantized dot product: every row of x
// (row-major [n_tokens x w.cols]) is quantized once to the activation type, then each output is
// one vec_dot. `scratch` holds at least n_tokens * row_bytes(activation type, w.cols) bytes.
// Output rows are split over fixed chunks, so the result does not depend on the thread count.
void matmul_quant_dot(const Matrix& w, const float* x, int64_t n_tokens, float* y,
                      std::span<uint8_t> scratch, const QuantDotKernel& kernel);

// Per-ISA tables, defined in their own translation units.
namespace quant_dot_detail {
float vec_dot_q4_0_q8_0_scalar(int64_t n, const uint8_t* w, const uint8_t* a);
float vec_dot_q8_0_q8_0_scalar(int64_t n, const uint8_t* w, const uint8_t* a);
float vec_dot_q4_0_q8_0_avx2(int64_t n, const uint8_t* w, const uint8_t* a);
float vec_dot_q8_0_q8_0_avx2(int64_t n, const uint8_t* w, const uint8_t* a);
float vec_dot_q4_0_q8_0_avx512(int64_t n, const uint8_t* w, const uint8_t* a);
float vec_dot_q8_0_q8_0_avx512(int64_t n, const uint8_t* w, const uint8_t* a);
}  // namespace quant_dot_detail

}  // namespace qbench
