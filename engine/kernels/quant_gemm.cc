// Tile packing and dispatch of quant_gemm.h (portable code; the kernels are in
// quant_gemm_avx512.cc, compiled with their own flags).
#include "engine/kernels/quant_gemm.h"

#include <algorithm>
#include <cstring>

#include "engine/core/error.h"
#include "engine/formats/k_quants.h"
#include "engine/formats/legacy_quants.h"
#include "engine/kernels/quant_dot.h"

namespace qbench {

const QuantGemmKernel* find_quant_gemm(TensorType type, CpuIsa isa) {
  if (isa != CpuIsa::Avx512 || !isa_available(isa)) return nullptr;
  return quant_gemm_detail::avx512_gemm(type);
}

FloatGemmFn find_float_gemm(TensorType type, CpuIsa isa) {
  if (isa != CpuIsa::Avx512 || !isa_available(isa)) return nullptr;
  return quant_gemm_detail::avx512_float_gemm(type);
}

GemvFn find_float_gemv(TensorType type, CpuIsa isa) {
  if (isa != CpuIsa::Avx512 || !isa_available(isa)) return nullptr;
  return quant_gemm_detail::avx512_float_gemv(type);
}

size_t float_gemm_tiles_bytes(int64_t n_tokens, int64_t n) {
  const int64_t tiles = (n_tokens + kGemmTokens - 1) / kGemmTokens;
  return size_t(tiles) * size_t(n) * kGemmTokens * sizeof(float);
}

void pack_float_gemm_tiles(const float* x, int64_t n_tokens, int64_t n, float* dst) {
  for (int64_t t0 = 0; t0 < n_tokens; t0 += kGemmTokens) {
    const int nt = int(std::min<int64_t>(kGemmTokens, n_tokens - t0));
    float* tile = dst + (t0 / kGemmTokens) * n * kGemmTokens;
    for (int64_t k = 0; k < n; ++k) {
      float* col = tile + k * kGemmTokens;
      for (int t = 0; t < nt; ++t) col[t] = x[(t0 + t) * n + k];
      for (int t = nt; t < kGemmTokens; ++t) col[t] = 0.0f;
    }
  }
}

size_t gemm_tile_bytes(GemmActLayout layout, int64_t n) {
  return layout == GemmActLayout::K ? size_t(n / kQK_K) * kGemmKBlockBytes : size_t(n / 32) * kGemmBlockBytes;
}

size_t gemm_tiles_bytes(GemmActLayout layout, int64_t n_tokens, int64_t n) {
  return size_t((n_tokens + kGemmTokens - 1) / kGemmTokens) * gemm_tile_bytes(layout, n);
}

namespace {

// K layout from Q8_K rows (ggml blocks: fp32 d, 256 quants, int16 bsums).
void pack_k_tile(const uint8_t* rows, size_t a_row, int nt, int64_t n, uint8_t* tile) {
  QB_ASSERT(n % kQK_K == 0);
  for (int t = 0; t < nt; ++t) {
    const uint8_t* row = rows + size_t(t) * a_row;
    for (int64_t b = 0; b < n / kQK_K; ++b) {
      BlockQ8_K src;
      std::memcpy(&src, row + size_t(b) * sizeof src, sizeof src);
      uint8_t* blk = tile + size_t(b) * kGemmKBlockBytes;
      for (int j = 0; j < 8; ++j) {
        int32_t sum = 0;
        for (int k = 0; k < 8; ++k) {
          for (int i = 0; i < 4; ++i) {
            const int8_t v = src.qs[32 * j + 4 * k + i];
            sum += v;
            blk[64 * (8 * j + k) + 4 * t + i] = uint8_t(v);
          }
        }
        std::memcpy(blk + 4096 + 64 + 64 * j + 4 * t, &sum, 4);
      }
      std::memcpy(blk + 4096 + 4 * t, &src.d, 4);
    }
  }
}

// Signed / Unsigned layouts from Q8_0 rows: the kernel-side copies after the row's ggml blocks
// (quant_dot.h), fp32 d, then the quants.
void pack_q8_0_tile(bool is_signed, const uint8_t* rows, size_t a_row, int nt, int64_t n, uint8_t* tile) {
  QB_ASSERT(n % 32 == 0);
  const int64_t nb = n / 32;
  for (int t = 0; t < nt; ++t) {
    const uint8_t* row = rows + size_t(t) * a_row;
    const uint8_t* d = row + size_t(nb) * sizeof(BlockQ8_0);
    const int8_t* q = reinterpret_cast<const int8_t*>(d + size_t(nb) * 4);
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* blk = tile + size_t(b) * kGemmBlockBytes;
      int32_t sum = 0;
      for (int k = 0; k < 8; ++k) {
        for (int j = 0; j < 4; ++j) {
          const int8_t v = q[b * 32 + 4 * k + j];
          sum += v;
          blk[64 * k + 4 * t + j] = is_signed ? uint8_t(v) : uint8_t(int(v) + 128);
        }
      }
      std::memcpy(blk + 512 + 4 * t, d + 4 * b, 4);
      const int32_t offset = is_signed ? -sum : 0;
      std::memcpy(blk + 576 + 4 * t, &offset, 4);
    }
  }
}

}  // namespace

void pack_gemm_tile(GemmActLayout layout, const uint8_t* rows, size_t a_row, int64_t n_tokens, int64_t n, uint8_t* dst) {
  QB_ASSERT(n_tokens >= 1 && n_tokens <= kGemmTokens);
  // Lanes past the last token stay zero (d = 0): they compute zeros, never read.
  std::memset(dst, 0, gemm_tile_bytes(layout, n));
  if (layout == GemmActLayout::K) {
    pack_k_tile(rows, a_row, int(n_tokens), n, dst);
  } else {
    pack_q8_0_tile(layout == GemmActLayout::Signed, rows, a_row, int(n_tokens), n, dst);
  }
}

}  // namespace qbench
