// Dispatch of quant_dot.h (ISA detection, the environment overrides, the per-ISA tables) and the
// activation quantizers shared by every path. Compiled with -ffp-contract=off (as the reference
// quantizers in engine/formats are) so that Q8_0 / Q8_1 activations are byte for byte ggml's.
#include "engine/kernels/quant_dot.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "engine/core/error.h"
#include "engine/core/half.h"
#include "engine/formats/int_quants.h"
#include "engine/formats/k_quants.h"
#include "engine/formats/legacy_quants.h"
#include "engine/formats/w8a8.h"

namespace qbench {
namespace {

// Rounds to the nearest integer, halfway cases to the even one (the default rounding mode, as
// _mm256_round_ps(v, _MM_ROUND_NEAREST) does), for |v| < 2^22: adding 1.5 * 2^23 leaves no
// fraction bits, so the addition itself rounds. Plain arithmetic, so the loops below vectorize
// on baseline x86-64 (which has no round instruction; nearbyintf would be a libm call). Relies on
// this file's -ffp-contract=off: fused into x * id + shift, the product would not be rounded first.
inline float round_half_even(float v) {
  constexpr float kShift = 12582912.0f;  // 1.5 * 2^23
  return (v + kShift) - kShift;
}

// One 32-value block as ggml's CPU backend quantizes activations on x86 (quantize_row_q8_0 and
// quantize_row_q8_1 of ggml-cpu/arch/x86/quants.c, the from_float of every AVX/AVX2/AVX-512
// build; its repacked-weight path, ggml_quantize_mat_q8_0_4x8, uses the same rule):
// d = max|x| / 127 (stored as fp16), q = round_half_even(x * (127 / max|x|)). ggml's scalar
// quantize_row_q8_0_ref differs in two places, q = roundf(x * (1 / d)) (halfway cases away from
// zero; 1 / d and 127 / max can differ in the last bit): its bytes differ in about one value per
// million (docs/kernels.md, "Agreement with llama.cpp"). |x * id| <= 127 (plus rounding), well
// inside round_half_even's range. Returns d (before fp16 rounding) and sum(q).
inline float quantize_block_q8(const float* x, int8_t* qs, int* sum) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  int s = 0;
  for (int j = 0; j < 32; ++j) {
    qs[j] = int8_t(round_half_even(x[j] * id));
    s += qs[j];
  }
  *sum = s;
  return d;
}

// Byte for byte ggml's x86 quantize_row_q8_0 (the rule above; checked by
// tests/engine/test_quant_dot.cc against a plain transcription of it).
void quantize_row_q8_0_x86(const float* x, uint8_t* y, int64_t n) {
  QB_ASSERT(n % 32 == 0);
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    BlockQ8_0 b;
    int sum;
    b.d = fp32_to_fp16(quantize_block_q8(x, b.qs, &sum));
    std::memcpy(y + i * int64_t(sizeof b), &b, sizeof b);
  }
}

// ggml's x86 quantize_row_q8_1: as Q8_0, plus s = d * sum(q) (d before fp16 rounding).
void quantize_row_q8_1_x86(const float* x, uint8_t* y, int64_t n) {
  QB_ASSERT(n % 32 == 0);
  for (int64_t i = 0; i < n / 32; ++i, x += 32) {
    BlockQ8_1 b;
    int sum;
    const float d = quantize_block_q8(x, b.qs, &sum);
    b.d = fp32_to_fp16(d);
    b.s = fp32_to_fp16(float(sum) * d);
    std::memcpy(y + i * int64_t(sizeof b), &b, sizeof b);
  }
}

void dequantize_row_q8_1(const uint8_t* src, float* y, int64_t n) {
  for (int64_t i = 0; i < n / 32; ++i) {
    BlockQ8_1 b;
    std::memcpy(&b, src + i * int64_t(sizeof b), sizeof b);
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < 32; ++j) *y++ = d * float(b.qs[j]);
  }
}

// The kernel-side copies after a row of Q8_0 / Q8_1 blocks (activation_row_bytes): fp32 d per
// block, fp32 s per block (Q8_1), the n quants contiguously.
template <typename Block>
void append_block_scales(uint8_t* row, int64_t n) {
  constexpr bool kHasSum = std::is_same_v<Block, BlockQ8_1>;
  const int64_t nb = n / 32;
  uint8_t* scales = row + nb * int64_t(sizeof(Block));
  uint8_t* quants = scales + nb * 4 * (kHasSum ? 2 : 1);
  for (int64_t i = 0; i < nb; ++i) {
    Block b;
    std::memcpy(&b, row + i * int64_t(sizeof b), sizeof b);
    const float d = fp16_to_fp32(b.d);
    std::memcpy(scales + 4 * i, &d, 4);
    if constexpr (kHasSum) {
      const float s = fp16_to_fp32(b.s);
      std::memcpy(scales + 4 * (nb + i), &s, 4);
    }
    std::memcpy(quants + 32 * i, b.qs, 32);
  }
}

CpuIsa parse_forced_isa(const char* value) {
  const std::string v(value);
  for (CpuIsa isa : kAllIsas) {
    if (v == isa_name(isa)) {
      if (!isa_available(isa)) {
        throw Error("QBENCH_FORCE_ISA=" + v + ": this CPU (or this build) cannot run that path");
      }
      return isa;
    }
  }
  throw Error("QBENCH_FORCE_ISA=" + v + ": unknown path (expected scalar, avx2 or avx512)");
}

consteval std::array<TensorType, kKernelFormatCount> all_kernel_types() {
  std::array<TensorType, kKernelFormatCount> out{};
  for (size_t i = 0; i < kKernelFormatCount; ++i) out[i] = kernel_format_at(i).weight;
  return out;
}
constexpr auto kAllKernelTypes = all_kernel_types();

}  // namespace

std::string_view isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Scalar: return "scalar";
    case CpuIsa::Avx2: return "avx2";
    case CpuIsa::Avx512: return "avx512";
  }
  return "?";
}

bool isa_available(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Scalar: return true;
    case CpuIsa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    case CpuIsa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("f16c") &&
             __builtin_cpu_supports("fma");
  }
  return false;
}

CpuIsa default_isa() {
  static const CpuIsa isa = [] {
    if (const char* forced = std::getenv("QBENCH_FORCE_ISA"); forced != nullptr && *forced != '\0') {
      return parse_forced_isa(forced);
    }
    const char* scalar = std::getenv("QBENCH_FORCE_SCALAR");
    if (scalar != nullptr && std::string(scalar) == "1") return CpuIsa::Scalar;
    if (isa_available(CpuIsa::Avx512)) return CpuIsa::Avx512;
    if (isa_available(CpuIsa::Avx2)) return CpuIsa::Avx2;
    return CpuIsa::Scalar;
  }();
  return isa;
}

std::string_view active_isa() { return isa_name(default_isa()); }

const QuantDotKernel* find_quant_dot(TensorType type, CpuIsa isa) {
  if (!isa_available(isa)) return nullptr;
  std::span<const QuantDotKernel> table;
  switch (isa) {
    case CpuIsa::Scalar: table = quant_dot_detail::scalar_kernels(); break;
    case CpuIsa::Avx2: table = quant_dot_detail::avx2_kernels(); break;
    case CpuIsa::Avx512: table = quant_dot_detail::avx512_kernels(); break;
  }
  const int i = kernel_format_index(type);
  if (i < 0) return nullptr;
  QB_ASSERT(table.size() == kKernelFormatCount && table[size_t(i)].weight_type == type);
  return &table[size_t(i)];
}

std::span<const TensorType> quant_dot_weight_types() { return kAllKernelTypes; }

int64_t activation_block_size(TensorType act) {
  switch (act) {
    case TensorType::F32:
    case TensorType::Q8_T: return 1;
    case TensorType::Q8_0:
    case TensorType::Q8_1: return 32;
    case TensorType::Q8_K: return kQK_K;
    default: QB_ASSERT(!"not an activation format");
  }
  return 1;
}

size_t activation_row_bytes(TensorType act, int64_t n) {
  switch (act) {
    case TensorType::F32: return size_t(n) * sizeof(float);
    case TensorType::Q8_0: return size_t(n / kQK8_0) * (sizeof(BlockQ8_0) + sizeof(float) + kQK8_0);
    case TensorType::Q8_1: return size_t(n / 32) * (sizeof(BlockQ8_1) + 2 * sizeof(float) + 32);
    case TensorType::Q8_K: return size_t(n / kQK_K) * sizeof(BlockQ8_K);
    case TensorType::Q8_T: return kW8A8RowHeaderBytes + size_t(n);
    default: QB_ASSERT(!"not an activation format");
  }
  return 0;
}

void quantize_activation_row(TensorType act, const float* x, uint8_t* dst, int64_t n) {
  switch (act) {
    case TensorType::F32: std::memcpy(dst, x, size_t(n) * sizeof(float)); return;
    case TensorType::Q8_0: quantize_row_q8_0_x86(x, dst, n); append_block_scales<BlockQ8_0>(dst, n); return;
    case TensorType::Q8_1: quantize_row_q8_1_x86(x, dst, n); append_block_scales<BlockQ8_1>(dst, n); return;
    case TensorType::Q8_K: quantize_row_q8_K_ref(x, dst, n); return;
    case TensorType::Q8_T: quantize_row_w8a8_int8(x, dst, n); return;  // per token: the weights' rule
    default: QB_ASSERT(!"not an activation format");
  }
}

void dequantize_activation_row(TensorType act, const uint8_t* src, float* dst, int64_t n) {
  switch (act) {
    case TensorType::F32: std::memcpy(dst, src, size_t(n) * sizeof(float)); return;
    case TensorType::Q8_0: dequantize_row_q8_0(src, dst, n); return;
    case TensorType::Q8_1: dequantize_row_q8_1(src, dst, n); return;
    case TensorType::Q8_K: dequantize_row_q8_K(src, dst, n); return;
    case TensorType::Q8_T: dequantize_row_w8a8_int8(src, dst, n); return;
    default: QB_ASSERT(!"not an activation format");
  }
}

}  // namespace qbench
