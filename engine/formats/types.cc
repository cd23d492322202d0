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
#include "engine/formats/float_codes.h"
#include "engine/formats/int_quants.h"
#include "engine/formats/iq_quants.h"
#include "engine/formats/k_quants.h"
#include "engine/formats/legacy_quants.h"
#include "engine/formats/w8a8.h"

namespace qbench {
namespace {

void dequantize_row_f32(const uint8_t* src, float* dst, int64_t n) {
  std::memcpy(dst, src, size_t(n) * sizeof(float));
}

// F16C when the CPU has it (a portable build compiles this file without it); the bits are the same.
void dequantize_row_f16(const uint8_t* src, float* dst, int64_t n) {
  static const bool f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
  if (f16c) {
    fp16_to_fp32_row_f16c(src, dst, n);
  } else {
    fp16_to_fp32_row(src, dst, n);
  }
}

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
constexpr std::array kGgmlTypes = {
    TypeTraits{TensorType::F32, "f32", 1, 4, dequantize_row_f32, quantize_row_f32, 0.0, kNoLimit},
    TypeTraits{TensorType::F16, "f16", 1, 2, dequantize_row_f16, quantize_row_f16, 2.8e-4, kFp16Max},
    TypeTraits{TensorType::Q4_0, "q4_0", 32, 18, dequantize_row_q4_0, quantize_row_q4_0_ref, 0.115, kFp16Max, 0,
               quantize_row_q4_0_weighted},
    TypeTraits{TensorType::Q4_1, "q4_1", 32, 20, dequantize_row_q4_1, quantize_row_q4_1_ref, 0.105, kFp16Max, 0,
               quantize_row_q4_1_weighted},
    TypeTraits{TensorType::Q5_0, "q5_0", 32, 22, dequantize_row_q5_0, quantize_row_q5_0_ref, 0.057, kFp16Max, 0,
               quantize_row_q5_0_weighted},
    TypeTraits{TensorType::Q5_1, "q5_1", 32, 24, dequantize_row_q5_1, quantize_row_q5_1_ref, 0.050, kFp16Max, 0,
               quantize_row_q5_1_weighted},
    TypeTraits{TensorType::Q8_0, "q8_0", 32, 34, dequantize_row_q8_0, quantize_row_q8_0_ref, 0.0071, kFp16Max},
    unimplemented(TensorType::Q8_1, "q8_1", 32, 36),
    TypeTraits{TensorType::Q2_K, "q2_K", 256, 84, dequantize_row_q2_K, quantize_row_q2_K_ref, 0.39, kFp16Max, 0,
               quantize_row_q2_K_weighted},
    TypeTraits{TensorType::Q3_K, "q3_K", 256, 110, dequantize_row_q3_K, quantize_row_q3_K_ref, 0.20, kFp16Max, 0,
               quantize_row_q3_K_weighted},
    TypeTraits{TensorType::Q4_K, "q4_K", 256, 144, dequantize_row_q4_K, quantize_row_q4_K_ref, 0.095, kFp16Max, 0,
               quantize_row_q4_K_weighted},
    TypeTraits{TensorType::Q5_K, "q5_K", 256, 176, dequantize_row_q5_K, quantize_row_q5_K_ref, 0.047, kFp16Max, 0,
               quantize_row_q5_K_weighted},
    TypeTraits{TensorType::Q6_K, "q6_K", 256, 210, dequantize_row_q6_K, quantize_row_q6_K_ref, 0.0235, kFp16Max, 0,
               quantize_row_q6_K_weighted},
    TypeTraits{TensorType::Q8_K, "q8_K", 256, 292, dequantize_row_q8_K, quantize_row_q8_K_ref, 0.0091, kNoLimit},
    unimplemented(TensorType::IQ2_XXS, "iq2_xxs", 256, 66),
    unimplemented(TensorType::IQ2_XS, "iq2_xs", 256, 74),
    unimplemented(TensorType::IQ3_XXS, "iq3_xxs", 256, 98),
    unimplemented(TensorType::IQ1_S, "iq1_s", 256, 50),
    TypeTraits{TensorType::IQ4_NL, "iq4_nl", 32, 18, dequantize_row_iq4_nl, quantize_row_iq4_nl_ref, 0.10, kFp16Max, 0,
               quantize_row_iq4_nl_weighted},
    unimplemented(TensorType::IQ3_S, "iq3_s", 256, 110),
    unimplemented(TensorType::IQ2_S, "iq2_s", 256, 82),
    TypeTraits{TensorType::IQ4_XS, "iq4_xs", 256, 136, dequantize_row_iq4_xs, quantize_row_iq4_xs_ref, 0.10, kFp16Max, 0,
               quantize_row_iq4_xs_weighted},
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

// ---- qbench's integer formats (engine/formats/int_quants.h): one entry per (bits, sym/asym,
// granularity), generated here so that this table stays the one place a format is registered.
// Names: "int<N>_<sym|asym>_g<G>" and "int<N>_<sym|asym>_row".
struct FixedName {
  char s[24] = {};
  size_t len = 0;
  constexpr std::string_view view() const { return {s, len}; }
  constexpr void add(const char* t) {
    while (*t) s[len++] = *t++;
  }
  constexpr void add_int(int v) {
    char buf[8] = {};
    int k = 0;
    do {
      buf[k++] = char('0' + v % 10);
      v /= 10;
    } while (v > 0);
    while (k > 0) s[len++] = buf[--k];
  }
};

constexpr std::array<FixedName, kIntFormatCount> make_int_names() {
  std::array<FixedName, kIntFormatCount> names{};
  for (uint32_t i = 0; i < uint32_t(kIntFormatCount); ++i) {
    const IntFormat f = int_format_at(i);
    FixedName& n = names[i];
    n.add("int");
    n.add_int(f.bits);
    n.add(f.sym ? "_sym" : "_asym");
    if (f.per_row()) {
      n.add("_row");
    } else {
      n.add("_g");
      n.add_int(f.group);
    }
  }
  return names;
}
constexpr std::array<FixedName, kIntFormatCount> kIntNames = make_int_names();

// Relative RMS round-trip error of a 4096-value Gaussian row (see TypeTraits::test_tolerance),
// 1.3x the largest of the three rows tests/engine/test_formats.cc measures (seeds 1-2-3),
// indexed like the ids (e.g. measured int4_sym_g128 0.117, int4_asym_g128 0.101, int8_sym_row
// 0.0095, int3_sym_g128 0.274):
// [bits 2..8][sym, asym][g32, g64, g128, row].
constexpr double kIntTolerance[kIntFormatCount] = {
    0.87, 0.936, 0.998, 1.23, 0.532, 0.607, 0.66, 0.912,  // int2: sym g32 g64 g128 row, asym ...
    0.301, 0.33, 0.357, 0.53, 0.229, 0.259, 0.283, 0.403,  // int3: sym g32 g64 g128 row, asym ...
    0.128, 0.141, 0.152, 0.225, 0.105, 0.12, 0.131, 0.191,  // int4: sym g32 g64 g128 row, asym ...
    0.0596, 0.0655, 0.071, 0.105, 0.0515, 0.0581, 0.0634, 0.0926,  // int5: sym g32 g64 g128 row, asym ...
    0.0288, 0.032, 0.0344, 0.0503, 0.0252, 0.0282, 0.0313, 0.0452,  // int6: sym g32 g64 g128 row, asym ...
    0.0141, 0.0157, 0.017, 0.025, 0.0125, 0.0141, 0.0155, 0.0224,  // int7: sym g32 g64 g128 row, asym ...
    0.00702, 0.00774, 0.00844, 0.0124, 0.00626, 0.00702, 0.00774, 0.0112,  // int8: sym g32 g64 g128 row, asym ...
};

template <uint32_t I>
constexpr TypeTraits int_entry() {
  constexpr IntFormat f = int_format_at(I);
  // Group formats: one block per group. Row formats: the header is per row, and a block is the
  // smallest run of values filling whole bytes.
  constexpr int64_t unit = f.bits % 2 != 0 ? 8 : f.bits % 4 != 0 ? 4 : f.bits == 8 ? 1 : 8 / f.bits;
  constexpr int64_t block = f.per_row() ? unit : f.group;
  constexpr size_t bytes = size_t(block * f.bits / 8) + (f.per_row() ? 0 : size_t(f.header_bytes()));
  static_assert(block * f.bits % 8 == 0, "a block must fill whole bytes");
  return TypeTraits{TensorType(uint32_t(TensorType::INT_FIRST) + I), kIntNames[I].view(), block, bytes,
                    dequantize_row_int_t<I>, quantize_row_int_t<I>, kIntTolerance[I], kFp16Max,
                    f.per_row() ? size_t(f.header_bytes()) : 0};
}

template <uint32_t... I>
constexpr std::array<TypeTraits, sizeof...(I)> int_entries(std::integer_sequence<uint32_t, I...>) {
  return {int_entry<I>()...};
}

// ---- code-book formats (engine/formats/float_codes.h) and W8A8 (w8a8.h). Tolerances measured as
// above.
constexpr std::array kCodeBookTypes = {
    TypeTraits{TensorType::NF4, "nf4", kQKNf4, sizeof(BlockNf4), dequantize_row_nf4, quantize_row_nf4,
               0.121, kFp16Max, 0},
    // 1e38: the fp32 row scale (max/448) and 448 * scale stay finite.
    TypeTraits{TensorType::FP8_E4M3, "fp8_e4m3", 1, 1, dequantize_row_fp8_e4m3, quantize_row_fp8_e4m3,
               0.0351, 1e38f, kFp8RowHeaderBytes},
    // W8A8 (w8a8.h): int8 per output channel, fp32 row scale. 1e38: max/127 and 127 * scale stay
    // finite. Tolerance: 1.3x the measured relative RMS error (0.0095, as int8_sym_row).
    TypeTraits{TensorType::W8A8_INT8, "w8a8_int8", 1, 1, dequantize_row_w8a8_int8, quantize_row_w8a8_int8,
               0.0124, 1e38f, kW8A8RowHeaderBytes},
    // Q8_T: the per-token activation partner of w8a8_int8, quantized by the kernels
    // (engine/kernels/quant_dot.h); known by name, never stored.
    TypeTraits{TensorType::Q8_T, "q8_t", 1, 1, nullptr, nullptr, 0.0, 0.0f, kW8A8RowHeaderBytes},
};

template <typename T, size_t A, size_t B, size_t C>
constexpr std::array<T, A + B + C> concat(const std::array<T, A>& a, const std::array<T, B>& b,
                                          const std::array<T, C>& c) {
  std::array<T, A + B + C> out{};
  size_t k = 0;
  for (const T& x : a) out[k++] = x;
  for (const T& x : b) out[k++] = x;
  for (const T& x : c) out[k++] = x;
  return out;
}

constexpr auto kTypes = concat(kGgmlTypes, int_entries(std::make_integer_sequence<uint32_t, kIntFormatCount>{}),
                               kCodeBookTypes);

constexpr bool table_sorted_and_unique() {
  for (size_t i = 1; i < kTypes.size(); ++i) {
    if (uint32_t(kTypes[i - 1].type) >= uint32_t(kTypes[i].type)) return false;
  }
  return true;
}
static_assert(table_sorted_and_unique(), "kTypes must be sorted by id without duplicates");

// Also checked at run time by tests/engine/test_formats.cc (FormatsTable.WritableTypesAreReadable
// AndHaveAnInputRange), which is what covers the sanitizer build: under -fsanitize=null (part of
// -fsanitize=undefined) GCC 12 assumes a function defined in another translation unit may sit at
// address 0 (-fno-delete-null-pointer-checks), so `&f != nullptr` is no constant expression.
constexpr bool table_consistent() {
  for (const auto& t : kTypes) {
    if (t.quantize_row != nullptr && t.dequantize_row == nullptr) return false;
    if (t.quantize_row != nullptr && !(t.max_abs_input > 0.0f)) return false;
  }
  return true;
}
#ifndef QBENCH_SANITIZE
static_assert(table_consistent(), "a writable type must be readable and have an input range");
#endif

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
                   uint8_t* dst, std::string_view what, const float* importance) {
  QB_ASSERT(!importance || t.quantize_row_weighted);
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
    if (importance) {
      t.quantize_row_weighted(row, dst + size_t(r) * rb, n_cols, importance);
    } else {
      t.quantize_row(row, dst + size_t(r) * rb, n_cols);
    }
  }
}

}  // namespace qbench
