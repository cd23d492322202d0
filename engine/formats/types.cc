#include "engine/formats/types.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>

#include <cfloat>
#include <cmath>
#include <string>

#include "engine/core/error.h"
#include "engine/core/half.h"
#include "engine/formats/k_quants.h"
#include "engine/formats/legacy_quants.h"

namespace qbench {
namespace {

void dequantize_row_f32(const uint8_t* src, float* dst, int64_t n) {
  std::memcpy(dst, src, size_t(n) * sizeof(float));
}

void dequantize_row_f16(const uint8_t* src, float* dst, int64_t n) { fp16_to_fp32_row(src, dst, n); }

void dequantize_row_bf16(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = bf16_to_fp32(h);
  }
}

void quantize_row_f32(const float* src, void* dst, int64_t n) {
  std::memcpy(dst, src, size_t(n) * sizeof(float));
}

void quantize_row_f16(const float* src, void* dst, int64_t n) {
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = fp32_to_fp16(src[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

void quantize_row_bf16(const float* src, void* dst, int64_t n) {
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = fp32_to_bf16(src[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

// Range limits (TypeTraits::max_abs_input).
constexpr float kFp16Max = 65504.0f;
constexpr float kBf16Max = 3.3895313e38f;  // largest bf16; anything above may round to Inf
constexpr float kNoLimit = FLT_MAX;

// Known, not implemented: no functions, no tolerance.
constexpr TypeTraits unimplemented(TensorType type, std::string_view name, int64_t block_size,
                                   size_t bytes_per_block) {
  return TypeTraits{type, name, block_size, bytes_per_block, nullptr, nullptr, 0.0, 0.0f};
}

// Block sizes and byte counts follow ggml's type_traits (ggml.c / ggml-common.h). The
// test_tolerance column bounds the relative RMS round-trip error of a row of 4096 standard
// Gaussian values: about 1.3x the largest of three measured rows (measured, in the order of the
// table: f16 2.1e-4, q4_0 0.0875, q4_1 0.0789, q5_0 0.0432, q5_1 0.0382, q8_0 0.0054,
// q2_K 0.300, q3_K 0.153, q4_K 0.0727, q5_K 0.0361, q6_K 0.0179, q8_K 0.0069, bf16 1.7e-3).
constexpr std::array kTypes = {
    TypeTraits{TensorType::F32, "f32", 1, 4, dequantize_row_f32, quantize_row_f32, 0.0, kNoLimit},
    TypeTraits{TensorType::F16, "f16", 1, 2, dequantize_row_f16, quantize_row_f16, 2.8e-4, kFp16Max},
    TypeTraits{TensorType::Q4_0, "q4_0", 32, 18, dequantize_row_q4_0, quantize_row_q4_0_ref, 0.115, kFp16Max},
    TypeTraits{TensorType::Q4_1, "q4_1", 32, 20, dequantize_row_q4_1, quantize_row_q4_1_ref, 0.105, kFp16Max},
    TypeTraits{TensorType::Q5_0, "q5_0", 32, 22, dequantize_row_q5_0, quantize_row_q5_0_ref, 0.057, kFp16Max},
    TypeTraits{TensorType::Q5_1, "q5_1", 32, 24, dequantize_row_q5_1, quantize_row_q5_1_ref, 0.050, kFp16Max},
    TypeTraits{TensorType::Q8_0, "q8_0", 32, 34, dequantize_row_q8_0, quantize_row_q8_0_ref, 0.0071, kFp16Max},
    unimplemented(TensorType::Q8_1, "q8_1", 32, 36),
    TypeTraits{TensorType::Q2_K, "q2_K", 256, 84, dequantize_row_q2_K, quantize_row_q2_K_ref, 0.39, kFp16Max},
    TypeTraits{TensorType::Q3_K, "q3_K", 256, 110, dequantize_row_q3_K, quantize_row_q3_K_ref, 0.20, kFp16Max},
    TypeTraits{TensorType::Q4_K, "q4_K", 256, 144, dequantize_row_q4_K, quantize_row_q4_K_ref, 0.095, kFp16Max},
    TypeTraits{TensorType::Q5_K, "q5_K", 256, 176, dequantize_row_q5_K, quantize_row_q5_K_ref, 0.047, kFp16Max},
    TypeTraits{TensorType::Q6_K, "q6_K", 256, 210, dequantize_row_q6_K, quantize_row_q6_K_ref, 0.0235, kFp16Max},
    TypeTraits{TensorType::Q8_K, "q8_K", 256, 292, dequantize_row_q8_K, quantize_row_q8_K_ref, 0.0091, kNoLimit},
    unimplemented(TensorType::IQ2_XXS, "iq2_xxs", 256, 66),
    unimplemented(TensorType::IQ2_XS, "iq2_xs", 256, 74),
    unimplemented(TensorType::IQ3_XXS, "iq3_xxs", 256, 98),
    unimplemented(TensorType::IQ1_S, "iq1_s", 256, 50),
    unimplemented(TensorType::IQ4_NL, "iq4_nl", 32, 18),
    unimplemented(TensorType::IQ3_S, "iq3_s", 256, 110),
    unimplemented(TensorType::IQ2_S, "iq2_s", 256, 82),
    unimplemented(TensorType::IQ4_XS, "iq4_xs", 256, 136),
    unimplemented(TensorType::I8, "i8", 1, 1),
    unimplemented(TensorType::I16, "i16", 1, 2),
    unimplemented(TensorType::I32, "i32", 1, 4),
    unimplemented(TensorType::I64, "i64", 1, 8),
    unimplemented(TensorType::F64, "f64", 1, 8),
    unimplemented(TensorType::IQ1_M, "iq1_m", 256, 56),
    TypeTraits{TensorType::BF16, "bf16", 1, 2, dequantize_row_bf16, quantize_row_bf16, 2.2e-3, kBf16Max},
    unimplemented(TensorType::TQ1_0, "tq1_0", 256, 54),
    unimplemented(TensorType::TQ2_0, "tq2_0", 256, 66),
    unimplemented(TensorType::MXFP4, "mxfp4", 32, 17),
};

constexpr bool table_sorted_and_unique() {
  for (size_t i = 1; i < kTypes.size(); ++i) {
    if (uint32_t(kTypes[i - 1].type) >= uint32_t(kTypes[i].type)) return false;
  }
  return true;
}
static_assert(table_sorted_and_unique(), "kTypes must be sorted by id without duplicates");

constexpr bool table_consistent() {
  for (const auto& t : kTypes) {
    if (t.quantize_row != nullptr && t.dequantize_row == nullptr) return false;
    if (t.quantize_row != nullptr && !(t.max_abs_input > 0.0f)) return false;
  }
  return true;
}
static_assert(table_consistent(), "a writable type must be readable and have an input range");

}  // namespace

const TypeTraits* find_type_traits(uint32_t id) {
  auto it = std::lower_bound(kTypes.begin(), kTypes.end(), id,
                             [](const TypeTraits& t, uint32_t v) { return uint32_t(t.type) < v; });
  if (it == kTypes.end() || uint32_t(it->type) != id) return nullptr;
  return &*it;
}

const TypeTraits& type_traits(TensorType type) {
  const TypeTraits* t = find_type_traits(uint32_t(type));
  QB_ASSERT(t != nullptr);
  return *t;
}

std::optional<TensorType> parse_type_name(std::string_view name) {
  for (const auto& t : kTypes) {
    if (t.name.size() == name.size() &&
        std::equal(name.begin(), name.end(), t.name.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
        })) {
      return t.type;
    }
  }
  return std::nullopt;
}

std::span<const TypeTraits> all_type_traits() { return kTypes; }

void quantize_rows(const TypeTraits& t, const float* src, int64_t n_rows, int64_t n_cols,
                   uint8_t* dst, std::string_view what) {
  const std::string name(what);
  if (!t.can_quantize()) {
    throw Error(name + ": qbench cannot write type " + std::string(t.name));
  }
  if (n_cols <= 0 || n_cols % t.block_size != 0) {
    throw Error(name + ": row length " + std::to_string(n_cols) + " is not a multiple of the " +
                std::string(t.name) + " block size " + std::to_string(t.block_size));
  }
  const size_t rb = row_bytes(t, n_cols);
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* row = src + r * n_cols;
    for (int64_t i = 0; i < n_cols; ++i) {
      if (!(std::fabs(row[i]) <= t.max_abs_input)) {
        throw Error(name + ": value " + std::to_string(row[i]) + " at row " + std::to_string(r) +
                    ", column " + std::to_string(i) + " cannot be stored as " +
                    std::string(t.name) + " (finite values up to " +
                    std::to_string(t.max_abs_input) + " in magnitude)");
      }
    }
    t.quantize_row(row, dst + size_t(r) * rb, n_cols);
  }
}

}  // namespace qbench
