// Instruction-set paths and the per-model choice of matrix-product path. Kept free of other
// project headers so that engine/model/model.h can carry a MatmulOptions without a cycle.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace qbench {

// The SIMD paths of the kernels (engine/kernels/quant_dot.h). Every kernel exists on every
// path; Scalar is the reference definition.
enum class CpuIsa : uint8_t { Scalar = 0, Avx2 = 1, Avx512 = 2 };
inline constexpr CpuIsa kAllIsas[] = {CpuIsa::Scalar, CpuIsa::Avx2, CpuIsa::Avx512};

enum class MatmulPath : uint8_t {
  // Packed weights are used in place by the format's dot-product kernel (activations quantized
  // on the fly where the format calls for it); formats without a kernel fall back to Dequantize.
  Kernels = 0,
  // Reference path: weights dequantized tile by tile to FP32, then an Eigen product. Exact in
  // the activations (no activation quantization); slower. For tests and A/B comparisons.
  Dequantize = 1,
};

struct MatmulOptions {
  MatmulPath path = MatmulPath::Kernels;
  std::optional<CpuIsa> isa;  // nullopt: default_isa() (the CPU's best, or what the environment forces)
};

}  // namespace qbench
