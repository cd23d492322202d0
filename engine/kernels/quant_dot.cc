#include "engine/kernels/quant_dot.h"

#include <tbb/parallel_for.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/core/error.h"
#include "engine/core/half.h"
#include "engine/formats/legacy_quants.h"

namespace qbench {
namespace quant_dot_detail {

// Scalar references: integer sum per block, then sumf += sumi * d_w * d_a in block order.
float vec_dot_q4_0_q8_0_scalar(int64_t n, const uint8_t* w, const uint8_t* a) {
  QB_ASSERT(n % kQK8_0 == 0);
  float sumf = 0;
  for (int64_t ib = 0; ib < n / kQK8_0; ++ib) {
    BlockQ4_0 x;
    BlockQ8_0 y;
    std::memcpy(&x, w + ib * sizeof(BlockQ4_0), sizeof x);
    std::memcpy(&y, a + ib * sizeof(BlockQ8_0), sizeof y);
    int sumi = 0;
    for (int j = 0; j < kQK8_0 / 2; ++j) {
      sumi += ((x.qs[j] & 0x0F) - 8) * y.qs[j] + ((x.qs[j] >> 4) - 8) * y.qs[j + 16];
    }
    sumf += float(sumi) * (fp16_to_fp32(x.d) * fp16_to_fp32(y.d));
  }
  return sumf;
}

float vec_dot_q8_0_q8_0_scalar(int64_t n, const uint8_t* w, const uint8_t* a) {
  QB_ASSERT(n % kQK8_0 == 0);
  float sumf = 0;
  for (int64_t ib = 0; ib < n / kQK8_0; ++ib) {
    BlockQ8_0 x, y;
    std::memcpy(&x, w + ib * sizeof(BlockQ8_0), sizeof x);
    std::memcpy(&y, a + ib * sizeof(BlockQ8_0), sizeof y);
    int sumi = 0;
    for (int j = 0; j < kQK8_0; ++j) sumi += int(x.qs[j]) * int(y.qs[j]);
    sumf += float(sumi) * (fp16_to_fp32(x.d) * fp16_to_fp32(y.d));
  }
  return sumf;
}

}  // namespace quant_dot_detail

namespace {

using namespace quant_dot_detail;

constexpr std::array kScalar = {
    QuantDotKernel{TensorType::Q4_0, TensorType::Q8_0, vec_dot_q4_0_q8_0_scalar},
    QuantDotKernel{TensorType::Q8_0, TensorType::Q8_0, vec_dot_q8_0_q8_0_scalar},
};
constexpr std::array kAvx2 = {
    QuantDotKernel{TensorType::Q4_0, TensorType::Q8_0, vec_dot_q4_0_q8_0_avx2},
    QuantDotKernel{TensorType::Q8_0, TensorType::Q8_0, vec_dot_q8_0_q8_0_avx2},
};
constexpr std::array kAvx512 = {
    QuantDotKernel{TensorType::Q4_0, TensorType::Q8_0, vec_dot_q4_0_q8_0_avx512},
    QuantDotKernel{TensorType::Q8_0, TensorType::Q8_0, vec_dot_q8_0_q8_0_avx512},
};

constexpr int64_t kRowChunk = 16;

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
             __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
  }
  return false;
}

CpuIsa default_isa() {
  static const CpuIsa isa = [] {
    const char* force = std::getenv("QBENCH_FORCE_SCALAR");
    if (force != nullptr && std::string(force) == "1") return CpuIsa::Scalar;
    if (isa_available(CpuIsa::Avx512)) return CpuIsa::Avx512;
    if (isa_available(CpuIsa::Avx2)) return CpuIsa::Avx2;
    return CpuIsa::Scalar;
  }();
  return isa;
}

const QuantDotKernel* find_quant_dot(TensorType type, CpuIsa isa) {
  if (!isa_available(isa)) return nullptr;
  std::span<const QuantDotKernel> table;
  switch (isa) {
    case CpuIsa::Scalar: table = kScalar; break;
    case CpuIsa::Avx2: table = kAvx2; break;
    case CpuIsa::Avx512: table = kAvx512; break;
  }
  for (const QuantDotKernel& k : table) {
    if (k.weight_type == type) return &k;
  }
  return nullptr;
}

void matmul_quant_dot(const Matrix& w, const float* x, int64_t n_tokens, float* y,
                      std::span<uint8_t> scratch, const QuantDotKernel& kernel) {
  QB_ASSERT(w.type == kernel.weight_type && n_tokens > 0);
  const TypeTraits& at = type_traits(kernel.activation_type);
  const size_t a_row = row_bytes(at, w.cols);
  QB_ASSERT(scratch.size() >= a_row * size_t(n_tokens));
  for (int64_t t = 0; t < n_tokens; ++t) at.quantize_row(x + t * w.cols, scratch.data() + t * a_row, w.cols);
  const int64_t n_chunks = (w.rows + kRowChunk - 1) / kRowChunk;
  tbb::parallel_for(int64_t(0), n_chunks, [&](int64_t c) {
    const int64_t r0 = c * kRowChunk, r1 = std::min(w.rows, r0 + kRowChunk);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const uint8_t* a = scratch.data() + t * a_row;
      for (int64_t r = r0; r < r1; ++r) y[t * w.rows + r] = kernel.dot(w.cols, w.row(r), a);
    }
  });
}

}  // namespace qbench
