// Matrix products of activations with stored weights.
//
// y[t, o] = sum_i W[o, i] * x[t, i]   for t < n_tokens, o < W.rows
// x is row-major [n_tokens x W.cols], y row-major [n_tokens x W.rows], both FP32.
//
// Dispatch happens once per call (never per element), in this order:
//  1. options.path == Kernels and the format has a kernel on the chosen ISA (quant_dot.h):
//     - quantized formats: every activation row is quantized once to the kernel's activation
//       format (Q8_0 / Q8_1 / Q8_K) into the caller's scratch, then each kernel call multiplies
//       one packed weight row with a tile of up to kMaxTokenTile activation rows. Output rows are
//       split over parallel tasks of kKernelTaskRows (coarse enough that a decode task, ~2 us,
//       outweighs TBB's per-task cost), each over chunks of kKernelRowChunk; inside a chunk the
//       loop runs over token tiles, then rows, so the chunk's packed rows stay in L1/L2 while
//       every token tile passes over them (prefill), and a single token streams each row once
//       (decode).
//     - with at least kGemmMinTokens tokens, q4_0 and q8_0 weights on AVX-512: the activation
//       rows are rearranged into tiles of 16 tokens and a GEMM kernel (quant_gemm.h) multiplies
//       chunks of up to 16 rows with each tile; tasks as above.
//     - f16 / bf16 with at most kFloatKernelMaxTokens tokens (decode): the float kernels read
//       the stored weights directly, widening in registers; one token on AVX-512 takes whole
//       chunks of 16 rows through the f16 / bf16 gemv of quant_gemm.h (the same bits).
//  2. f16 / bf16 with at least kGemmMinTokens tokens on AVX-512 (path == Kernels): the float GEMM
//     of quant_gemm.h (activations in tiles of 16 tokens, each chunk of 16 rows widened once).
//  3. Otherwise (f32 always, f16/bf16 prefill without AVX-512, formats without a kernel, path == Dequantize): chunks of
//     kDequantRowChunk rows are dequantized into a tile (F32 weights used in place) and
//     multiplied with Eigen.
// Every output is computed by one kernel call or one Eigen product over a fixed chunk, in an
// order that does not depend on the tiling or on which thread runs it: the result is the same
// bit for bit for any thread count.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/kernels/kernel_options.h"
#include "engine/kernels/quant_dot.h"
#include "engine/model/model.h"

namespace qbench {

inline constexpr int64_t kKernelRowChunk = 16;   // rows a token tile passes over (cache blocking)
inline constexpr int64_t kKernelTaskRows = 64;   // rows per parallel task (a multiple of the above)
inline constexpr int64_t kDequantRowChunk = 64;
static_assert(kKernelTaskRows % kKernelRowChunk == 0);
inline constexpr int64_t kFloatKernelMaxTokens = 4;
// From this many tokens on, q4_0 / q8_0 products use the GEMM kernels of quant_gemm.h where the
// ISA has them (16 tokens per register: below this, most lanes would be idle). QBENCH_GEMM=0 in
// the environment turns them off (for A/B benchmarks of the row kernels; read once).
inline constexpr int64_t kGemmMinTokens = 8;

// The kernel matmul() uses for this weight, token count and options, or nullptr for the
// dequantize + Eigen path.
const QuantDotKernel* select_kernel(const Matrix& w, int64_t n_tokens, const MatmulOptions& opt);
// Name of the path matmul() takes: "avx512", "avx2", "scalar" (a kernel on that ISA) or "dequant".
std::string_view matmul_path_name(const Matrix& w, int64_t n_tokens, const MatmulOptions& opt);

// Bytes of scratch matmul() needs (quantized activation rows); 0 when the path needs none.
size_t matmul_scratch_bytes(const Matrix& w, int64_t n_tokens, const MatmulOptions& opt);

// `scratch` must hold at least matmul_scratch_bytes(w, n_tokens, opt) bytes; it is overwritten.
void matmul(const Matrix& w, const float* x, int64_t n_tokens, float* y, std::span<uint8_t> scratch,
            const MatmulOptions& opt);
// Default options; allocates its scratch per call (tests, tools; the forward pass owns its own).
void matmul(const Matrix& w, const float* x, int64_t n_tokens, float* y);

// The activation precision a matrix product computes with, for results and reports: "f32" (exact
// float products), "q8_0 (int8 per 32 values)", "q8_1 (int8 per 32 values, with block sums)",
// "q8_K (int8 per 256 values)", "int8 per token".
std::string_view activation_precision(TensorType activation_type);

// What the matrix products of a model compute, per weight format of its linear weights (the
// multiplied matrices: every layer's and output.weight): which path runs for one token (decode)
// and for `prefill_tokens` tokens (prefill), and with what activation precision. A path is an ISA
// name ("avx512", "avx2", "scalar": a kernel on the packed bytes) or "dequant" (weights
// dequantized to FP32 tile by tile, then an Eigen product: exact float activations).
struct MatmulPathInfo {
  std::string weight_format;
  int64_t n_matrices = 0;
  std::string decode_path, decode_activations;
  std::string prefill_path, prefill_activations;
};
std::vector<MatmulPathInfo> describe_matmul_paths(const Model& m, int64_t prefill_tokens);

// Looks up row `r` of `w` (e.g. a token embedding) as FP32 into dst[0..w.cols).
void matrix_row(const Matrix& w, int64_t r, float* dst);

}  // namespace qbench
