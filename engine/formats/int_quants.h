// qbench's integer formats: N-bit codes (N = 2..8) with an fp16 scale, symmetric or asymmetric
// (with a uint8 zero point), grouped along the row (the input dimension) in groups of 32, 64 or
// 128 values, or with one scale per row. docs/formats.md has the byte layout; summary:
//
//   group formats (block = one group of G values):
//     sym : | fp16 d | G*N/8 bytes of codes |            x = d * (u - 2^(N-1)),  u in [1, 2^N - 1]
//     asym: | fp16 d | u8 z | G*N/8 bytes of codes |     x = d * (u - z),        u in [0, 2^N - 1]
//   row formats ("_row"): the same header once per row (TypeTraits::row_header_bytes), then the
//     codes of the whole row; blocks are the smallest whole-byte unit, 8 / gcd(N, 8) values.
//
// Codes are a little-endian bit stream: value j of a group (or row) occupies bits
// [j*N, j*N + N) counted from bit 0 of the first code byte, least significant bit first.
// The zero point of an asymmetric format is a code (0 .. 2^N - 1), so 0.0 is represented exactly.
//
// Per-tensor granularity is the row format with the same scale (and zero point) written into
// every row: 2 or 3 bytes per row, counted in the bits per weight.
#pragma once

#include <cstdint>
#include <optional>

#include "engine/formats/types.h"

namespace qbench {

inline constexpr int kIntMinBits = 2;
inline constexpr int kIntMaxBits = 8;
inline constexpr int kIntGroups[] = {32, 64, 128, 0};  // 0: one group per row
inline constexpr int kIntFormatCount = (kIntMaxBits - kIntMinBits + 1) * 2 * 4;
static_assert(uint32_t(TensorType::INT_FIRST) + kIntFormatCount - 1 == uint32_t(TensorType::INT_LAST));

struct IntFormat {
  int bits = 4;       // 2..8
  bool sym = true;    // false: asymmetric, uint8 zero point
  int group = 128;    // 32, 64 or 128; 0 = one group per row
  constexpr bool per_row() const { return group == 0; }
  constexpr int header_bytes() const { return sym ? 2 : 3; }
  constexpr int qmax_sym() const { return (1 << (bits - 1)) - 1; }  // symmetric codes are -qmax..qmax
  constexpr int levels() const { return 1 << bits; }
};

// Id <-> parameters. `int_format_type` asserts valid parameters.
TensorType int_format_type(const IntFormat& f);
std::optional<IntFormat> int_format_of(TensorType t);
constexpr uint32_t int_format_index(int bits, bool sym, int group_index) {
  return uint32_t(((bits - kIntMinBits) * 2 + (sym ? 0 : 1)) * 4 + group_index);
}

// Scale and zero point of one group (or row, or tensor).
struct IntParams {
  uint16_t d = 0;   // fp16 bits of the scale
  uint8_t zero = 0; // asymmetric only
};

// The textbook min/max rule on values `x[0..n)` with the range shrunk by `clip` (0 < clip <= 1):
// symmetric d = clip * max|x| / (2^(N-1) - 1); asymmetric over [clip*min(x,0), clip*max(x,0)]:
// d = (hi - lo) / (2^N - 1), z = round(-lo / d). `amin`/`amax` are the caller's precomputed
// extremes (so a per-tensor scale can be derived from the whole tensor).
IntParams int_params_from_range(const IntFormat& f, float amin, float amax, float clip = 1.0f);
IntParams int_params_minmax(const IntFormat& f, const float* x, int64_t n, float clip = 1.0f);

// Writes header + codes of `n` values (one group, or one whole row for a row format) with the
// given parameters: u = clamp(round_half_even(x / d) + offset). Returns bytes written.
size_t int_pack(const IntFormat& f, const float* x, int64_t n, IntParams p, uint8_t* dst);
// Reads what int_pack wrote.
void int_unpack(const IntFormat& f, const uint8_t* src, float* dst, int64_t n);
// dequant(quant(x_i)) with parameters `p` into y[0..n) (y may equal x): the values int_pack
// would store, without packing. Used by algorithms that round with error feedback (GPTQ).
void int_fake_quant(const IntFormat& f, const float* x, int64_t n, IntParams p, float* y);
// The stored codes u_i of `n` values with parameters `p` (what int_pack writes), and the offset
// they are read back with: x_i ~ d * (u_i - offset). Returns the offset.
int int_codes(const IntFormat& f, const float* x, int64_t n, IntParams p, int* u);
// Squared error sum_i (x_i - dequant(quant(x_i)))^2 of packing `x` with `p`, without packing.
double int_sq_error(const IntFormat& f, const float* x, int64_t n, IntParams p);

// Parameters of table entry `index` (0 .. kIntFormatCount-1), i.e. of id INT_FIRST + index.
constexpr IntFormat int_format_at(uint32_t index) {
  return IntFormat{kIntMinBits + int(index / 8), (index / 4) % 2 == 0, kIntGroups[index % 4]};
}

// Reference quantizer and dequantizer of table entry `Index`, the functions in its TypeTraits:
// the plain min/max rule per group (or per row).
void quantize_row_int(const IntFormat& f, const float* x, void* y, int64_t n);
void dequantize_row_int(const IntFormat& f, const uint8_t* src, float* y, int64_t n);
template <uint32_t Index>
void quantize_row_int_t(const float* x, void* y, int64_t n) {
  quantize_row_int(int_format_at(Index), x, y, n);
}
template <uint32_t Index>
void dequantize_row_int_t(const uint8_t* src, float* y, int64_t n) {
  dequantize_row_int(int_format_at(Index), src, y, n);
}

}  // namespace qbench
