#include "engine/formats/int_quants.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/core/error.h"
#include "engine/core/half.h"
#include "engine/formats/quant_util.h"

namespace qbench {
namespace {

using quant_detail::nearest_int;

// Value offset added to the signed code before it is stored.
int code_offset(const IntFormat& f, IntParams p) { return f.sym ? (1 << (f.bits - 1)) : int(p.zero); }

// Code of one value: round half to even of x/d, plus the offset, clamped to the format's range.
// The clamp before rounding keeps nearest_int inside its exact range for any parameters.
inline int encode(float x, float inv_d, int offset, int lo, int hi) {
  const float v = std::clamp(x * inv_d, -512.0f, 512.0f);
  return std::clamp(nearest_int(v) + offset, lo, hi);
}

struct CodeRange {
  int lo, hi;
};
CodeRange code_range(const IntFormat& f) {
  // Symmetric codes use -qmax..qmax around 2^(N-1); code 0 is never written.
  return f.sym ? CodeRange{1, f.levels() - 1} : CodeRange{0, f.levels() - 1};
}

size_t codes_bytes(const IntFormat& f, int64_t n) { return size_t((n * f.bits + 7) / 8); }

}  // namespace

TensorType int_format_type(const IntFormat& f) {
  QB_ASSERT(f.bits >= kIntMinBits && f.bits <= kIntMaxBits);
  int gi = -1;
  for (int i = 0; i < 4; ++i) gi = kIntGroups[i] == f.group ? i : gi;
  QB_ASSERT(gi >= 0);
  return TensorType(uint32_t(TensorType::INT_FIRST) + int_format_index(f.bits, f.sym, gi));
}

std::optional<IntFormat> int_format_of(TensorType t) {
  const uint32_t id = uint32_t(t);
  if (id < uint32_t(TensorType::INT_FIRST) || id > uint32_t(TensorType::INT_LAST)) return std::nullopt;
  return int_format_at(id - uint32_t(TensorType::INT_FIRST));
}

IntParams int_params_from_range(const IntFormat& f, float amin, float amax, float clip) {
  IntParams p;
  if (f.sym) {
    const float m = std::max(std::fabs(amin), std::fabs(amax)) * clip;
    p.d = fp32_to_fp16(m / float(f.qmax_sym()));
    return p;
  }
  const float lo = std::min(amin, 0.0f) * clip, hi = std::max(amax, 0.0f) * clip;
  p.d = fp32_to_fp16((hi - lo) / float(f.levels() - 1));
  const float d = fp16_to_fp32(p.d);
  if (d > 0.0f) p.zero = uint8_t(std::clamp(nearest_int(std::min(-lo / d, 512.0f)), 0, f.levels() - 1));
  return p;
}

IntParams int_params_minmax(const IntFormat& f, const float* x, int64_t n, float clip) {
  float mn = 0.0f, mx = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
  return int_params_from_range(f, mn, mx, clip);
}

size_t int_pack(const IntFormat& f, const float* x, int64_t n, IntParams p, uint8_t* dst) {
  std::memcpy(dst, &p.d, 2);
  if (!f.sym) dst[2] = p.zero;
  uint8_t* out = dst + f.header_bytes();
  const float d = fp16_to_fp32(p.d);
  const float inv = d != 0.0f ? 1.0f / d : 0.0f;
  const int off = code_offset(f, p);
  const CodeRange r = code_range(f);
  uint64_t acc = 0;
  int nb = 0;
  for (int64_t i = 0; i < n; ++i) {
    acc |= uint64_t(encode(x[i], inv, off, r.lo, r.hi)) << nb;
    nb += f.bits;
    while (nb >= 8) {
      *out++ = uint8_t(acc);
      acc >>= 8;
      nb -= 8;
    }
  }
  if (nb > 0) *out++ = uint8_t(acc);
  return size_t(out - dst);
}

void int_unpack(const IntFormat& f, const uint8_t* src, float* y, int64_t n) {
  uint16_t dh;
  std::memcpy(&dh, src, 2);
  const float d = fp16_to_fp32(dh);
  const int off = f.sym ? (1 << (f.bits - 1)) : int(src[2]);
  const uint8_t* in = src + f.header_bytes();
  if (f.bits == 8) {
    for (int64_t i = 0; i < n; ++i) y[i] = d * float(int(in[i]) - off);
    return;
  }
  if (f.bits == 4) {
    for (int64_t i = 0; i + 1 < n; i += 2) {
      y[i] = d * float(int(in[i / 2] & 15) - off);
      y[i + 1] = d * float(int(in[i / 2] >> 4) - off);
    }
    return;
  }
  const uint32_t mask = (1u << f.bits) - 1;
  uint64_t acc = 0;
  int nb = 0;
  for (int64_t i = 0; i < n; ++i) {
    while (nb < f.bits) {
      acc |= uint64_t(*in++) << nb;
      nb += 8;
    }
    y[i] = d * float(int(acc & mask) - off);
    acc >>= f.bits;
    nb -= f.bits;
  }
}

void int_fake_quant(const IntFormat& f, const float* x, int64_t n, IntParams p, float* y) {
  const float d = fp16_to_fp32(p.d);
  const float inv = d != 0.0f ? 1.0f / d : 0.0f;
  const int off = code_offset(f, p);
  const CodeRange r = code_range(f);
  for (int64_t i = 0; i < n; ++i) y[i] = d * float(encode(x[i], inv, off, r.lo, r.hi) - off);
}

int int_codes(const IntFormat& f, const float* x, int64_t n, IntParams p, int* u) {
  const float d = fp16_to_fp32(p.d);
  const float inv = d != 0.0f ? 1.0f / d : 0.0f;
  const int off = code_offset(f, p);
  const CodeRange r = code_range(f);
  for (int64_t i = 0; i < n; ++i) u[i] = encode(x[i], inv, off, r.lo, r.hi);
  return off;
}

double int_sq_error(const IntFormat& f, const float* x, int64_t n, IntParams p) {
  const float d = fp16_to_fp32(p.d);
  const float inv = d != 0.0f ? 1.0f / d : 0.0f;
  const int off = code_offset(f, p);
  const CodeRange r = code_range(f);
  double err = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float q = d * float(encode(x[i], inv, off, r.lo, r.hi) - off);
    const double e = double(x[i]) - double(q);
    err += e * e;
  }
  return err;
}

void quantize_row_int(const IntFormat& f, const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint8_t*>(y);
  if (f.per_row()) {
    int_pack(f, x, n, int_params_minmax(f, x, n), out);
    return;
  }
  for (int64_t g = 0; g < n; g += f.group) {
    out += int_pack(f, x + g, f.group, int_params_minmax(f, x + g, f.group), out);
  }
}

void dequantize_row_int(const IntFormat& f, const uint8_t* src, float* y, int64_t n) {
  if (f.per_row()) {
    int_unpack(f, src, y, n);
    return;
  }
  const size_t block = size_t(f.header_bytes()) + codes_bytes(f, f.group);
  for (int64_t g = 0; g < n; g += f.group, src += block) int_unpack(f, src, y + g, f.group);
}

}  // namespace qbench
