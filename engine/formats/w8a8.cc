#include "engine/formats/w8a8.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace qbench {

void pack_row_w8a8(const float* x, int64_t n, float d, uint8_t* dst) {
  std::memcpy(dst, &d, 4);
  auto* q = reinterpret_cast<int8_t*>(dst + kW8A8RowHeaderBytes);
  if (!(d > 0.0f)) {
    std::memset(q, 0, size_t(n));
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    // roundf (halfway cases away from zero) in a form the compiler vectorizes: v - trunc(v) is
    // exact for |v| < 2^23. |x / d| <= 127 up to the rounding of d; the clamp covers a d that
    // lost precision (subnormal).
    const float v = x[i] / d, t = std::trunc(v);
    const float r = std::fabs(v - t) >= 0.5f ? t + std::copysign(1.0f, v) : t;
    q[i] = int8_t(std::clamp(r, -127.0f, 127.0f));
  }
}

void quantize_row_w8a8_int8(const float* x, void* y, int64_t n) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  pack_row_w8a8(x, n, amax / 127.0f, static_cast<uint8_t*>(y));
}

void dequantize_row_w8a8_int8(const uint8_t* src, float* y, int64_t n) {
  float d;
  std::memcpy(&d, src, 4);
  const auto* q = reinterpret_cast<const int8_t*>(src + kW8A8RowHeaderBytes);
  for (int64_t i = 0; i < n; ++i) y[i] = d * float(q[i]);
}

}  // namespace qbench
