// Scalar reference kernels of quant_dot.h: the definition the SIMD paths are tested against.
// Plain loops in the order ggml's generic ggml_vec_dot_* use: an exact integer sum per block,
// then one float update per block and token.
#include <array>
#include <utility>
#include <cstring>

#include "engine/core/error.h"
#include "engine/core/half.h"
#include "engine/formats/float_codes.h"
#include "engine/formats/int_quants.h"
#include "engine/formats/k_quants.h"
#include "engine/formats/legacy_quants.h"
#include "engine/formats/w8a8.h"
#include "engine/kernels/quant_dot.h"

namespace qbench::quant_dot_detail {
namespace {

template <typename Block>
Block load(const uint8_t* p, int64_t index) {
  Block b;
  std::memcpy(&b, p + index * int64_t(sizeof(Block)), sizeof(Block));
  return b;
}

float h2f(uint16_t h) { return fp16_to_fp32(h); }

// Value j of a 32-value legacy block as an unsigned quant (before subtracting any offset).
int nibble(const uint8_t* qs, int j) { return j < 16 ? qs[j] & 0x0F : qs[j - 16] >> 4; }
int high_bit(const uint8_t* qh, int j) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  return int((h >> j) & 1u);
}

// Drives a per-block function over blocks and tokens: y_t = sum over blocks of f(w, a_t), summed
// in float in block order.
template <typename WBlock, typename ABlock, typename F>
void dot_blocks(int64_t n, int64_t qk, const uint8_t* w, const uint8_t* a, size_t a_stride, int n_tok,
                float* y, size_t y_stride, F f) {
  QB_ASSERT(n % qk == 0 && n_tok >= 1 && n_tok <= kMaxTokenTile);
  for (int t = 0; t < n_tok; ++t) {
    const uint8_t* at = a + size_t(t) * a_stride;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / qk; ++ib) sumf += f(load<WBlock>(w, ib), load<ABlock>(at, ib));
    y[size_t(t) * y_stride] = sumf;
  }
}

void dot_q4_0(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  dot_blocks<BlockQ4_0, BlockQ8_0>(n, 32, w, a, as, nt, y, ys, [](const BlockQ4_0& x, const BlockQ8_0& v) {
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += (nibble(x.qs, j) - 8) * v.qs[j];
    return float(sumi) * (h2f(x.d) * h2f(v.d));
  });
}

void dot_q4_1(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  dot_blocks<BlockQ4_1, BlockQ8_1>(n, 32, w, a, as, nt, y, ys, [](const BlockQ4_1& x, const BlockQ8_1& v) {
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += nibble(x.qs, j) * v.qs[j];
    return float(sumi) * (h2f(x.d) * h2f(v.d)) + h2f(x.m) * h2f(v.s);
  });
}

void dot_q5_0(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  dot_blocks<BlockQ5_0, BlockQ8_0>(n, 32, w, a, as, nt, y, ys, [](const BlockQ5_0& x, const BlockQ8_0& v) {
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += ((nibble(x.qs, j) | (high_bit(x.qh, j) << 4)) - 16) * v.qs[j];
    return float(sumi) * (h2f(x.d) * h2f(v.d));
  });
}

void dot_q5_1(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  dot_blocks<BlockQ5_1, BlockQ8_1>(n, 32, w, a, as, nt, y, ys, [](const BlockQ5_1& x, const BlockQ8_1& v) {
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += (nibble(x.qs, j) | (high_bit(x.qh, j) << 4)) * v.qs[j];
    return float(sumi) * (h2f(x.d) * h2f(v.d)) + h2f(x.m) * h2f(v.s);
  });
}

void dot_q8_0(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  dot_blocks<BlockQ8_0, BlockQ8_0>(n, 32, w, a, as, nt, y, ys, [](const BlockQ8_0& x, const BlockQ8_0& v) {
    int sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += int(x.qs[j]) * int(v.qs[j]);
    return float(sumi) * (h2f(x.d) * h2f(v.d));
  });
}

// A k-quant super-block in the common form every k-quant kernel reduces to: value i (in Q8_K
// order) is d * sc[g] * (q[i] - z) - dmin * m[g] with g = i / 16, q unsigned. Scales and mins of
// the 32-value sub-blocks of Q4_K/Q5_K appear twice (once per 16-value group).
struct KUnpacked {
  uint8_t q[kQK_K];
  int sc[16], m[16];
  int z;
  float d, dmin;
};

void scale_min_k4(int j, const uint8_t* s, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

KUnpacked unpack(const BlockQ2_K& b) {
  KUnpacked u;
  for (int i = 0; i < kQK_K; ++i) {
    const int h = i / 128, s = (i % 128) / 32, l = i % 32;
    u.q[i] = uint8_t((b.qs[32 * h + l] >> (2 * s)) & 3);
  }
  for (int g = 0; g < 16; ++g) {
    u.sc[g] = b.scales[g] & 0xF;
    u.m[g] = b.scales[g] >> 4;
  }
  u.z = 0;
  u.d = h2f(b.d);
  u.dmin = h2f(b.dmin);
  return u;
}

KUnpacked unpack(const BlockQ3_K& b) {
  KUnpacked u;
  for (int i = 0; i < kQK_K; ++i) {
    const int h = i / 128, s = (i % 128) / 32, l = i % 32;
    const int low = (b.qs[32 * h + l] >> (2 * s)) & 3;
    const int high = (b.hmask[l] >> (4 * h + s)) & 1;
    u.q[i] = uint8_t(low | (high << 2));
  }
  for (int g = 0; g < 16; ++g) {
    const int low = g < 8 ? b.scales[g] & 0xF : b.scales[g - 8] >> 4;
    u.sc[g] = (low | (((b.scales[8 + g % 4] >> (2 * (g / 4))) & 3) << 4)) - 32;
    u.m[g] = 0;
  }
  u.z = 4;
  u.d = h2f(b.d);
  u.dmin = 0;
  return u;
}

template <typename Block>  // BlockQ4_K or BlockQ5_K
void scales_k4(const Block& b, KUnpacked& u) {
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    scale_min_k4(j, b.scales, &sc, &m);
    u.sc[2 * j] = u.sc[2 * j + 1] = sc;
    u.m[2 * j] = u.m[2 * j + 1] = m;
  }
  u.z = 0;
  u.d = h2f(b.d);
  u.dmin = h2f(b.dmin);
}

KUnpacked unpack(const BlockQ4_K& b) {
  KUnpacked u;
  for (int i = 0; i < kQK_K; ++i) {
    const int p = i / 64, hi = (i % 64) / 32, l = i % 32;
    u.q[i] = uint8_t((b.qs[32 * p + l] >> (4 * hi)) & 0xF);
  }
  scales_k4(b, u);
  return u;
}

KUnpacked unpack(const BlockQ5_K& b) {
  KUnpacked u;
  for (int i = 0; i < kQK_K; ++i) {
    const int p = i / 64, hi = (i % 64) / 32, l = i % 32;
    const int low = (b.qs[32 * p + l] >> (4 * hi)) & 0xF;
    const int high = (b.qh[l] >> (2 * p + hi)) & 1;
    u.q[i] = uint8_t(low | (high << 4));
  }
  scales_k4(b, u);
  return u;
}

KUnpacked unpack(const BlockQ6_K& b) {
  KUnpacked u;
  for (int i = 0; i < kQK_K; ++i) {
    const int h = i / 128, s = (i % 128) / 32, l = i % 32;
    // s = 0: ql[l] low, 1: ql[32 + l] low, 2: ql[l] high, 3: ql[32 + l] high (within half h).
    const uint8_t ql = b.ql[64 * h + 32 * (s & 1) + l];
    const int low = (s < 2 ? ql : ql >> 4) & 0xF;
    const int high = (b.qh[32 * h + l] >> (2 * s)) & 3;
    u.q[i] = uint8_t(low | (high << 4));
  }
  for (int g = 0; g < 16; ++g) {
    u.sc[g] = b.scales[g];
    u.m[g] = 0;
  }
  u.z = 32;
  u.d = h2f(b.d);
  u.dmin = 0;
  return u;
}

// y_t = sum over super-blocks of d_a * (d * S1 - dmin * S2) with the exact integers
// S1 = sum_g sc_g * (sum_{i in g} q_i a_i - z * bsum_g) and S2 = sum_g m_g * bsum_g.
template <typename Block>
void dot_k(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  dot_blocks<Block, BlockQ8_K>(n, kQK_K, w, a, as, nt, y, ys, [](const Block& x, const BlockQ8_K& v) {
    const KUnpacked u = unpack(x);
    int s1 = 0, s2 = 0;
    for (int g = 0; g < 16; ++g) {
      int dot = 0;
      for (int i = 16 * g; i < 16 * g + 16; ++i) dot += int(u.q[i]) * int(v.qs[i]);
      s1 += u.sc[g] * (dot - u.z * v.bsums[g]);
      s2 += u.m[g] * v.bsums[g];
    }
    return (v.d * u.d) * float(s1) - (v.d * u.dmin) * float(s2);
  });
}

// Float weights times FP32 activations: sequential float sum.
template <float (*Widen)(const uint8_t*, int64_t)>
void dot_float(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  QB_ASSERT(n >= 1 && nt >= 1 && nt <= kMaxTokenTile);
  for (int t = 0; t < nt; ++t) {
    const uint8_t* at = a + size_t(t) * as;
    float sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      float x;
      std::memcpy(&x, at + 4 * i, 4);
      sum += Widen(w, i) * x;
    }
    y[size_t(t) * ys] = sum;
  }
}

float widen_f32(const uint8_t* w, int64_t i) {
  float v;
  std::memcpy(&v, w + 4 * i, 4);
  return v;
}
float widen_f16(const uint8_t* w, int64_t i) {
  uint16_t h;
  std::memcpy(&h, w + 2 * i, 2);
  return fp16_to_fp32(h);
}
float widen_bf16(const uint8_t* w, int64_t i) {
  uint16_t h;
  std::memcpy(&h, w + 2 * i, 2);
  return bf16_to_fp32(h);
}

// qbench's integer formats (int_quants.h) times Q8_0 activations: per 32-value activation block
// the exact integer sum (u - off) * a (off = 2^(N-1), or the zero point), then one float update.
int int_code(const uint8_t* codes, int bits, int64_t j) {
  const int64_t bit = j * bits;
  const int shift = int(bit & 7);
  unsigned v = codes[bit >> 3];
  if (shift + bits > 8) v |= unsigned(codes[(bit >> 3) + 1]) << 8;
  return int((v >> shift) & ((1u << bits) - 1));
}

template <uint32_t I>
void dot_int(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  constexpr IntFormat f = int_format_at(I);
  const int64_t G = f.per_row() ? n : f.group;
  const int64_t group_bytes = f.header_bytes() + G * f.bits / 8;
  QB_ASSERT(n % 32 == 0 && n % G == 0 && nt >= 1 && nt <= kMaxTokenTile);
  for (int t = 0; t < nt; ++t) {
    const uint8_t* at = a + size_t(t) * as;
    float sumf = 0;
    for (int64_t g = 0; g < n / G; ++g) {
      const uint8_t* blk = w + g * group_bytes;
      uint16_t dh;
      std::memcpy(&dh, blk, 2);
      const float d = h2f(dh);
      const int off = f.sym ? 1 << (f.bits - 1) : blk[2];
      const uint8_t* codes = blk + f.header_bytes();
      for (int64_t c = 0; c < G / 32; ++c) {
        const BlockQ8_0 v = load<BlockQ8_0>(at, g * (G / 32) + c);
        int sumi = 0;
        for (int j = 0; j < 32; ++j) sumi += (int_code(codes, f.bits, c * 32 + j) - off) * v.qs[j];
        sumf += float(sumi) * (d * h2f(v.d));
      }
    }
    y[size_t(t) * ys] = sumf;
  }
}

// The SIMD paths re-derive the parameters of entry I (quant_dot_simd-inl.h); they must agree.
consteval bool int_table_layout_as_simd_assumes() {
  for (uint32_t i = 0; i < uint32_t(kIntFormatCount); ++i) {
    const IntFormat f = int_format_at(i);
    if (f.bits != 2 + int(i / 8) || f.sym != ((i / 4) % 2 == 0) || f.group != (i % 4 == 3 ? 0 : 32 << (i % 4))) {
      return false;
    }
  }
  return true;
}
static_assert(int_table_layout_as_simd_assumes());

// NF4 times FP32 activations: per 64-value block a float sum of code * a, times the absmax.
void dot_nf4(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  QB_ASSERT(n % kQKNf4 == 0 && nt >= 1 && nt <= kMaxTokenTile);
  for (int t = 0; t < nt; ++t) {
    const uint8_t* at = a + size_t(t) * as;
    float sum = 0;
    for (int64_t b = 0; b < n / kQKNf4; ++b) {
      const BlockNf4 blk = load<BlockNf4>(w, b);
      float s = 0;
      for (int i = 0; i < kQKNf4; ++i) {
        float x;
        std::memcpy(&x, at + 4 * (b * kQKNf4 + i), 4);
        s += kNf4Codes[i % 2 == 0 ? blk.qs[i / 2] >> 4 : blk.qs[i / 2] & 15] * x;
      }
      sum += h2f(blk.absmax) * s;
    }
    y[size_t(t) * ys] = sum;
  }
}

// FP8 E4M3 times FP32 activations: float sum of e4m3(code) * a, times the row scale.
float widen_e4m3(const uint8_t* q, int64_t i) { return e4m3_to_fp32(q[i]); }

void dot_fp8(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  float scale;
  std::memcpy(&scale, w, 4);
  dot_float<widen_e4m3>(n, w + kFp8RowHeaderBytes, a, as, nt, y, ys);
  for (int t = 0; t < nt; ++t) y[size_t(t) * ys] *= scale;
}

// W8A8 (w8a8.h) times Q8_T activations: the exact int32 sum of q_w * q_a over the whole row, then
// one float product (d_w * d_a) * isum. Every path computes the same integer and the same two
// float roundings, so all paths agree bit for bit.
void dot_w8a8(int64_t n, const uint8_t* w, const uint8_t* a, size_t as, int nt, float* y, size_t ys) {
  QB_ASSERT(n >= 1 && n <= kW8A8MaxCols && nt >= 1 && nt <= kMaxTokenTile);
  float dw;
  std::memcpy(&dw, w, 4);
  const auto* qw = reinterpret_cast<const int8_t*>(w + kW8A8RowHeaderBytes);
  for (int t = 0; t < nt; ++t) {
    const uint8_t* at = a + size_t(t) * as;
    float da;
    std::memcpy(&da, at, 4);
    const auto* qa = reinterpret_cast<const int8_t*>(at + kW8A8RowHeaderBytes);
    int32_t isum = 0;
    for (int64_t i = 0; i < n; ++i) isum += int32_t(qw[i]) * int32_t(qa[i]);
    y[size_t(t) * ys] = float(isum) * (dw * da);
  }
}

constexpr auto kScalar = kernel_table([]<TensorType T>() -> DotFn {
  if constexpr (T == TensorType::F32) return dot_float<widen_f32>;
  else if constexpr (T == TensorType::F16) return dot_float<widen_f16>;
  else if constexpr (T == TensorType::BF16) return dot_float<widen_bf16>;
  else if constexpr (T == TensorType::Q4_0) return dot_q4_0;
  else if constexpr (T == TensorType::Q4_1) return dot_q4_1;
  else if constexpr (T == TensorType::Q5_0) return dot_q5_0;
  else if constexpr (T == TensorType::Q5_1) return dot_q5_1;
  else if constexpr (T == TensorType::Q8_0) return dot_q8_0;
  else if constexpr (T == TensorType::Q2_K) return dot_k<BlockQ2_K>;
  else if constexpr (T == TensorType::Q3_K) return dot_k<BlockQ3_K>;
  else if constexpr (T == TensorType::Q4_K) return dot_k<BlockQ4_K>;
  else if constexpr (T == TensorType::Q5_K) return dot_k<BlockQ5_K>;
  else if constexpr (T == TensorType::Q6_K) return dot_k<BlockQ6_K>;
  else if constexpr (T == TensorType::NF4) return dot_nf4;
  else if constexpr (T == TensorType::FP8_E4M3) return dot_fp8;
  else if constexpr (T == TensorType::W8A8_INT8) return dot_w8a8;
  else if constexpr (is_int_kernel_format(T)) return dot_int<int_index(T)>;
  else static_assert(kNoKernelFor<T>, "a format of kListedKernelFormats has no scalar kernel");
});

}  // namespace

std::span<const QuantDotKernel> scalar_kernels() { return kScalar; }

}  // namespace qbench::quant_dot_detail
