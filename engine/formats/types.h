// The one table of tensor storage formats (STYLE.md, convention 2).
//
// Ids are append-only and never change: they are stored in files. Ids below 1024 are ggml's own
// `enum ggml_type` values, so a GGUF tensor's type field maps directly; qbench's own formats
// (documented in docs/formats.md) take ids from 1024 up. A format that is known by name but has
// no implementation yet has `dequantize_row == nullptr`: loading a tensor of that type reports
// the type by name instead of crashing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace qbench {

enum class TensorType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  // qbench's own formats (docs/formats.md), ids from 1024 up, append-only.
  // 1024..1079: integer RTN formats, id = 1024 + ((bits - 2) * 2 + asym) * 4 + granularity
  // (granularity 0/1/2 = groups of 32/64/128 along the row, 3 = one scale per row); see
  // engine/formats/int_quants.h.
  INT_FIRST = 1024,
  INT_LAST = 1079,
  NF4 = 1080,       // bitsandbytes NormalFloat-4, blocks of 64, fp16 absmax
  FP8_E4M3 = 1081,  // OCP FP8 E4M3 values with one fp32 scale per row
  W8A8_INT8 = 1082, // int8 per output channel (fp32 row scale); kernel partner Q8_T (SmoothQuant's W8A8)
  Q8_T = 1083,      // activation format: int8 per token (fp32 row scale); produced by the kernels only
};

// Converts `n` consecutive values (a multiple of the block size) from packed bytes to float.
using DequantizeRowFn = void (*)(const uint8_t* src, float* dst, int64_t n);
// Packs `n` consecutive floats (a multiple of the block size) into row_bytes(n) bytes. For the
// ggml block types this is the scalar reference quantizer, byte for byte what llama.cpp's
// quantize_row_*_ref writes (and what llama-quantize writes without an importance matrix).
// Defined for every finite input; see TypeTraits::max_abs_input for the range it represents.
using QuantizeRowFn = void (*)(const float* src, void* dst, int64_t n);
// The importance-weighted quantizer of one row (llama.cpp's quantize_row_*_impl with
// quant_weights): `importance` holds the row's n non-negative weights, one per value (the imatrix
// entry of each column). Same layout as QuantizeRowFn's output, other scale choices.
using QuantizeRowWeightedFn = void (*)(const float* src, void* dst, int64_t n, const float* importance);

struct TypeTraits {
  TensorType type;
  std::string_view name;      // as ggml prints it: "f32", "q4_K", ...
  int64_t block_size;         // values per block
  size_t bytes_per_block;     // bytes per block, scales included
  DequantizeRowFn dequantize_row;  // nullptr: known, not implemented
  QuantizeRowFn quantize_row;      // nullptr: can be read but not written (or neither)
  // Bound on the relative RMS error ||dequant(quant(x)) - x|| / ||x|| of one row of 4096
  // standard Gaussian values, checked by tests/engine/test_formats.cc (which also requires the
  // measured error to be at least half the bound). About 1.3x what the reference quantizer
  // measures, so a regression in scale or rounding choice shows. 0 for a lossless format.
  double test_tolerance;
  // Largest |x| a row may hold and still quantize to finite values. For ggml's block types the
  // scales are fp16, so a block whose scale would exceed 65504 stores Inf (as llama.cpp does);
  // 65504 keeps every scale (always <= the block's largest magnitude) in range.
  float max_abs_input;
  // Bytes at the start of every row, before its blocks (a per-row scale, zero point). 0 for all
  // ggml types; qbench's per-row formats keep their scale here (docs/formats.md).
  size_t row_header_bytes = 0;
  // Importance-weighted quantizer of one whole row (`n` = the row length), or nullptr when the
  // type has none (llama-quantize ignores an imatrix for it: q8_0, the float types).
  QuantizeRowWeightedFn quantize_row_weighted = nullptr;
  // Bits per weight of the blocks alone (the limit for long rows).
  double bits_per_weight() const { return 8.0 * double(bytes_per_block) / double(block_size); }
  // Bits per weight of a row of `n` values, header included.
  double bits_per_weight(int64_t n) const {
    return 8.0 * double(row_header_bytes + size_t(n / block_size) * bytes_per_block) / double(n);
  }
  bool supported() const { return dequantize_row != nullptr; }
  bool can_quantize() const { return quantize_row != nullptr; }
};

// Traits of a type id, or nullptr for an id that is in no table (e.g. a corrupt file).
const TypeTraits* find_type_traits(uint32_t id);
// Traits of a known type (asserts).
const TypeTraits& type_traits(TensorType type);
// Parses a name such as "q4_K", case-insensitively; nullopt when unknown.
std::optional<TensorType> parse_type_name(std::string_view name);
// All entries of the table, in id order.
std::span<const TypeTraits> all_type_traits();

// Bytes taken by a row of `n` values, row header included; `n` must be a multiple of the block
// size.
inline size_t row_bytes(const TypeTraits& t, int64_t n) {
  return t.row_header_bytes + size_t(n / t.block_size) * t.bytes_per_block;
}

// Quantizes `n_rows` rows of `n_cols` floats (row-major) into `dst` (n_rows * row_bytes bytes)
// with the type's reference quantizer, after checking the input: throws qbench::Error naming
// `what` (e.g. a tensor name), the row and the value when a value is NaN, infinite or larger
// in magnitude than `max_abs_input`, when the type cannot be written, or when `n_cols` is not
// a multiple of the block size.
// With `importance` (n_cols non-negative weights, one per column), every row goes through
// `quantize_row_weighted` instead; the type must have one (asserted).
void quantize_rows(const TypeTraits& t, const float* src, int64_t n_rows, int64_t n_cols,
                   uint8_t* dst, std::string_view what, const float* importance = nullptr);

}  // namespace qbench
