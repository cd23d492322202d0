// Dot-product kernels on packed weights, as llama.cpp's CPU backend computes them: each weight
// format has a partner activation format, activation rows are quantized to it once per matmul,
// and a kernel multiplies packed weight blocks with activation blocks in integers, scaling by
// the block scales in float:
//
//   weights                      activations  integer part per block
//   q4_0, q5_0, q8_0             Q8_0         sum (q - z) * a            (z = 8, 16, 0)
//   q4_1, q5_1                   Q8_1         sum q * a, plus m * s (s = d_a * sum a, stored)
//   q2_K, q3_K, q4_K, q5_K, q6_K Q8_K         sum_g sc_g * (sum q * a - z * bsum_g), sum_g m_g * bsum_g
//   f32, f16, bf16               F32          none: weights widened to FP32 on the fly, FMA
//   w8a8_int8                    Q8_T         sum q * a over the whole row (one scale per row and
//                                             per token: SmoothQuant's W8A8), times d_w * d_a
//
// Every kernel has three implementations: a scalar reference (quant_dot_scalar.cc, the
// definition), AVX2 (quant_dot_avx2.cc) and AVX-512 with VNNI (quant_dot_avx512.cc), each
// translation unit compiled with its own flags; this header carries none. The path is chosen
// once per process (default_isa), or per call by the caller (tests walk every path). Paths
// differ only in the order of float additions: integer block sums are exact on every path, and
// all paths read the same activation bytes (one shared quantizer per activation format).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <string_view>

#include "engine/formats/types.h"
#include "engine/kernels/kernel_options.h"

namespace qbench {

std::string_view isa_name(CpuIsa isa);
// Whether this CPU (and this build) can run `isa`.
bool isa_available(CpuIsa isa);
// The path used when a caller does not choose: QBENCH_FORCE_ISA=scalar|avx2|avx512 if set
// (throws qbench::Error naming the value when it is unknown or the CPU lacks it), else Scalar
// when QBENCH_FORCE_SCALAR=1, else the best available. The environment is read once.
CpuIsa default_isa();
// isa_name(default_isa()): what the harness records as the kernel path of a speed result.
std::string_view active_isa();

// Largest number of activation rows (tokens) one kernel call handles: a call unpacks each
// weight block once and multiplies it with up to this many activation rows.
inline constexpr int kMaxTokenTile = 8;

// For t < n_tok (1 <= n_tok <= kMaxTokenTile):
//   y[t * y_stride] = sum_{i < n} W[i] * A_t[i]
// where W is one packed weight row of n values (n a multiple of the weight block size; any
// n >= 1 for the float formats) and A_t = a + t * a_stride bytes is an activation row of n values
// in the kernel's activation format. The value for token t does not depend on n_tok or on the
// other tokens, so results do not depend on how callers tile tokens.
using DotFn = void (*)(int64_t n, const uint8_t* w, const uint8_t* a, size_t a_stride, int n_tok,
                       float* y, size_t y_stride);

struct QuantDotKernel {
  TensorType weight_type;
  TensorType activation_type;  // F32 (raw floats), Q8_0, Q8_1, Q8_K or Q8_T
  DotFn dot;
};

// The kernel for weights of `type` on `isa`, or nullptr when there is none (the caller falls
// back to dequantization) or the CPU cannot run `isa`.
const QuantDotKernel* find_quant_dot(TensorType type, CpuIsa isa);
// Weight types with a kernel (the same on every path).
std::span<const TensorType> quant_dot_weight_types();

// The formats with a kernel, each with its activation format: the one list from which every
// path's table is generated (kernel_table below), entry i of every table being format i. The
// hand-listed formats, then qbench's integer formats INT_FIRST .. INT_LAST (all on Q8_0).
struct KernelFormat {
  TensorType weight;
  TensorType activation;
};
inline constexpr std::array kListedKernelFormats = {
    KernelFormat{TensorType::F32, TensorType::F32},        KernelFormat{TensorType::F16, TensorType::F32},
    KernelFormat{TensorType::Q4_0, TensorType::Q8_0},      KernelFormat{TensorType::Q4_1, TensorType::Q8_1},
    KernelFormat{TensorType::Q5_0, TensorType::Q8_0},      KernelFormat{TensorType::Q5_1, TensorType::Q8_1},
    KernelFormat{TensorType::Q8_0, TensorType::Q8_0},      KernelFormat{TensorType::Q2_K, TensorType::Q8_K},
    KernelFormat{TensorType::Q3_K, TensorType::Q8_K},      KernelFormat{TensorType::Q4_K, TensorType::Q8_K},
    KernelFormat{TensorType::Q5_K, TensorType::Q8_K},      KernelFormat{TensorType::Q6_K, TensorType::Q8_K},
    KernelFormat{TensorType::BF16, TensorType::F32},       KernelFormat{TensorType::NF4, TensorType::F32},
    KernelFormat{TensorType::FP8_E4M3, TensorType::F32},   KernelFormat{TensorType::W8A8_INT8, TensorType::Q8_T},
};
inline constexpr size_t kKernelFormatCount =
    kListedKernelFormats.size() + size_t(uint32_t(TensorType::INT_LAST) - uint32_t(TensorType::INT_FIRST) + 1);
constexpr bool is_int_kernel_format(TensorType t) { return t >= TensorType::INT_FIRST && t <= TensorType::INT_LAST; }
consteval KernelFormat kernel_format_at(size_t i) {
  if (i < kListedKernelFormats.size()) return kListedKernelFormats[i];
  return {TensorType(uint32_t(TensorType::INT_FIRST) + uint32_t(i - kListedKernelFormats.size())), TensorType::Q8_0};
}
// Position of `type` in the list, or -1.
constexpr int kernel_format_index(TensorType type) {
  if (is_int_kernel_format(type)) {
    return int(kListedKernelFormats.size() + (uint32_t(type) - uint32_t(TensorType::INT_FIRST)));
  }
  for (size_t i = 0; i < kListedKernelFormats.size(); ++i) {
    if (kListedKernelFormats[i].weight == type) return int(i);
  }
  return -1;
}

namespace quant_dot_detail {
// A path's kernel table, entry i for kernel_format_at(i): `dot_of` is a lambda template
// []<TensorType T>() -> DotFn naming the path's kernel of format T, so a format of the list
// without a kernel on some path is a compile error there (its lambda's static_assert), not a
// gap found at run time. Only ever evaluated as a constant.
template <typename DotOf, size_t... I>
consteval std::array<QuantDotKernel, sizeof...(I)> kernel_table(DotOf dot_of, std::index_sequence<I...>) {
  return {QuantDotKernel{kernel_format_at(I).weight, kernel_format_at(I).activation,
                         dot_of.template operator()<kernel_format_at(I).weight>()}...};
}
template <typename DotOf>
consteval std::array<QuantDotKernel, kKernelFormatCount> kernel_table(DotOf dot_of) {
  return kernel_table(dot_of, std::make_index_sequence<kKernelFormatCount>());
}
// For the static_assert of a lambda's last branch (false, but only once T is known).
template <TensorType>
inline constexpr bool kNoKernelFor = false;
// Index of an integer format in INT_FIRST .. INT_LAST (the template argument of dot_int).
constexpr uint32_t int_index(TensorType t) { return uint32_t(t) - uint32_t(TensorType::INT_FIRST); }
}  // namespace quant_dot_detail

// One dot product: sum_{i<n} W[i] * A[i].
inline float vec_dot(const QuantDotKernel& k, int64_t n, const uint8_t* w, const uint8_t* a) {
  float y;
  k.dot(n, w, a, 0, 1, &y, 1);
  return y;
}

// Activation formats. Bytes of one activation row of n values (n a multiple of the block size).
// Layout of a row: n / 32 (Q8_0, Q8_1) or n / 256 (Q8_K) ggml blocks, byte for byte; Q8_0 and
// Q8_1 rows are followed by kernel-side copies of the same values: each block's d as fp32 (the
// fp16 value widened, exact), for Q8_1 each block's s as fp32, then all n quants contiguously.
// With them the SIMD kernels load 8 block scales, or 64 quants, with one instruction instead of
// converting scales one by one and stepping over them, for every weight row. F32 rows: n floats.
// Q8_T rows (per-token int8, docs/formats.md): fp32 d = max|x| / 127, then n int8 quants
// q = round_half_away(x / d) in [-127, 127] (4 + n bytes; any n >= 1).
size_t activation_row_bytes(TensorType act, int64_t n);
// Values per block of an activation format: 1 (F32, Q8_T), 32 (Q8_0, Q8_1), 256 (Q8_K).
int64_t activation_block_size(TensorType act);
// Quantizes one row of n floats into activation_row_bytes(act, n) bytes, byte for byte what
// ggml's CPU backend writes on x86 for a matmul's activations (its from_float: quantize_row_q8_0
// and quantize_row_q8_1 of ggml-cpu/arch/x86/quants.c, which round x * (127 / max|x|) halfway
// to even, unlike the scalar *_ref; quantize_row_q8_K, which is quantize_row_q8_K_ref; bsums
// included), Q8_T's per-token rule, or a copy for F32. One implementation shared by every ISA path.
void quantize_activation_row(TensorType act, const float* x, uint8_t* dst, int64_t n);
// The values an activation row represents (for tests and oracles).
void dequantize_activation_row(TensorType act, const uint8_t* src, float* dst, int64_t n);

// Q8_1: 32 values, x = d * qs[i], and s = d * sum(qs) so that the minimum term of q4_1/q5_1
// weights costs one multiply per block. 9 bits per value. ggml's block_q8_1.
struct BlockQ8_1 {
  uint16_t d;        // fp16 scale
  uint16_t s;        // fp16 d * sum(qs)
  int8_t qs[32];     // quants in [-127, 127]
};
static_assert(sizeof(BlockQ8_1) == 4 + 32);

// Per-ISA tables (kernel_table), defined in their own translation units: entry i of each is
// kernel_format_at(i).
namespace quant_dot_detail {
std::span<const QuantDotKernel> scalar_kernels();
std::span<const QuantDotKernel> avx2_kernels();
std::span<const QuantDotKernel> avx512_kernels();
}  // namespace quant_dot_detail

}  // namespace qbench
