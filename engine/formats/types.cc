#include "engine/formats/types.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>

#include "engine/core/error.h"
#include "engine/core/half.h"

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

// Block sizes and byte counts follow ggml's type_traits (ggml.c / ggml-common.h).
constexpr std::array kTypes = {
    TypeTraits{TensorType::F32, "f32", 1, 4, dequantize_row_f32},
    TypeTraits{TensorType::F16, "f16", 1, 2, dequantize_row_f16},
    TypeTraits{TensorType::Q4_0, "q4_0", 32, 18, nullptr},
    TypeTraits{TensorType::Q4_1, "q4_1", 32, 20, nullptr},
    TypeTraits{TensorType::Q5_0, "q5_0", 32, 22, nullptr},
    TypeTraits{TensorType::Q5_1, "q5_1", 32, 24, nullptr},
    TypeTraits{TensorType::Q8_0, "q8_0", 32, 34, nullptr},
    TypeTraits{TensorType::Q8_1, "q8_1", 32, 36, nullptr},
    TypeTraits{TensorType::Q2_K, "q2_K", 256, 84, nullptr},
    TypeTraits{TensorType::Q3_K, "q3_K", 256, 110, nullptr},
    TypeTraits{TensorType::Q4_K, "q4_K", 256, 144, nullptr},
    TypeTraits{TensorType::Q5_K, "q5_K", 256, 176, nullptr},
    TypeTraits{TensorType::Q6_K, "q6_K", 256, 210, nullptr},
    TypeTraits{TensorType::Q8_K, "q8_K", 256, 292, nullptr},
    TypeTraits{TensorType::IQ2_XXS, "iq2_xxs", 256, 66, nullptr},
    TypeTraits{TensorType::IQ2_XS, "iq2_xs", 256, 74, nullptr},
    TypeTraits{TensorType::IQ3_XXS, "iq3_xxs", 256, 98, nullptr},
    TypeTraits{TensorType::IQ1_S, "iq1_s", 256, 50, nullptr},
    TypeTraits{TensorType::IQ4_NL, "iq4_nl", 32, 18, nullptr},
    TypeTraits{TensorType::IQ3_S, "iq3_s", 256, 110, nullptr},
    TypeTraits{TensorType::IQ2_S, "iq2_s", 256, 82, nullptr},
    TypeTraits{TensorType::IQ4_XS, "iq4_xs", 256, 136, nullptr},
    TypeTraits{TensorType::I8, "i8", 1, 1, nullptr},
    TypeTraits{TensorType::I16, "i16", 1, 2, nullptr},
    TypeTraits{TensorType::I32, "i32", 1, 4, nullptr},
    TypeTraits{TensorType::I64, "i64", 1, 8, nullptr},
    TypeTraits{TensorType::F64, "f64", 1, 8, nullptr},
    TypeTraits{TensorType::IQ1_M, "iq1_m", 256, 56, nullptr},
    TypeTraits{TensorType::BF16, "bf16", 1, 2, dequantize_row_bf16},
    TypeTraits{TensorType::TQ1_0, "tq1_0", 256, 54, nullptr},
    TypeTraits{TensorType::TQ2_0, "tq2_0", 256, 66, nullptr},
    TypeTraits{TensorType::MXFP4, "mxfp4", 32, 17, nullptr},
};

constexpr bool table_sorted_and_unique() {
  for (size_t i = 1; i < kTypes.size(); ++i) {
    if (uint32_t(kTypes[i - 1].type) >= uint32_t(kTypes[i].type)) return false;
  }
  return true;
}
static_assert(table_sorted_and_unique(), "kTypes must be sorted by id without duplicates");

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

}  // namespace qbench
