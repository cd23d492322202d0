// Prefill micro-kernels (GEMM) for q4_0 and q8_0 weights on AVX-512 VNNI, and a decode kernel for
// q4_0. GEMM: one 512-bit register holds 16 tokens, so a weight block is unpacked once and
// multiplied with 16 tokens' activations by 8 vpdpbusd, whose other operand is one weight dword broadcast to every lane. The row kernels
// of quant_dot.h put one weight row's values in the lanes and redo the per-block float work
// (scale product, conversion, fma) for every token; here it is done once per 16 tokens.
//
// Activations are the Q8_0 rows of quant_dot.h (ggml's x86 bytes, the same as the row kernels
// read), rearranged once per matrix product into tiles of kGemmTokens tokens. Per tile and per
// 32-value block, kGemmBlockBytes bytes:
//   8 x 64 bytes   dword k (values 4k..4k+3) of the block of token t at bytes 64k + 4t: the
//                  quants as int8 (Signed layout, for q4_0) or plus 128 as uint8 (Unsigned, for q8_0)
//   16 x fp32      d of each token's block (the fp16 value widened, exact)
//   16 x int32     Signed: minus the sum of each token's 32 quants (times the weights' offset,
//                  8 for q4_0, it starts each integer sum); Unsigned: 0
// Tokens past the end of the last tile are zero (d = 0): their lanes compute zeros, never read.
//
// Per block and token the integer sum is exact and equal to the row kernels' (sum of (q_w - 8)
// q_a for q4_0: the nibbles as uint8 times the quants, plus 8 times the precomputed -sum q_a; sum
// q_w q_a for q8_0: (q_a + 128) as uint8 times q_w, minus 128 sum q_w of the weight block), then
// acc_t += float(sum) * (d_w * d_a,t) over the blocks in order. Each token's lane sees the same
// operations whatever the other lanes hold, so a token's result does not depend on the tile or
// on the number of tokens; it differs from the row kernels' only in the order of float additions.
//
// Decode (one token) of q4_0 and the symmetric int4 formats has its own kernel (gemv): 16 rows
// per call, two rows' blocks per register against the token's block, the 8 row pairs' integer
// sums added down to one lane per row, then one float update per block for all 16 rows. It reads
// 16 rows as 16 streams and prefetches the next 16 rows into L2 itself. f16 / bf16 decode has a
// gemv too (find_float_gemv: row pairs, the same prefetch). q8_0 decodes on the row kernel: a
// gemv of the q4_0 design was slower there (20.4 against 21.4 t/s on one thread).
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/formats/types.h"
#include "engine/kernels/kernel_options.h"

namespace qbench {

inline constexpr int kGemmTokens = 16;
inline constexpr int kGemmMaxRows = 16;  // rows per call
inline constexpr size_t kGemmBlockBytes = 8 * 64 + 16 * 4 + 16 * 4;

enum class GemmActLayout : uint8_t { Signed, Unsigned, K };

// K layout (q4_K against Q8_K activations), per tile and 256-value super-block, kGemmKBlockBytes:
//   8 x 8 x 64 bytes  sub-block j (values 32j..32j+31), dword k: the 16 tokens' int8 quants
//   16 x fp32         each token's d
//   8 x 16 x int32    sub-block j: each token's sum of its 32 quants
inline constexpr size_t kGemmKBlockBytes = 64 * 64 + 16 * 4 + 8 * 16 * 4;

// For r < n_rows (<= kGemmMaxRows), t < kGemmTokens:
//   out[r * kGemmTokens + t] = sum_{i < n} W_r[i] * A_t[i]
// W_r = w + r * w_stride (packed rows of n values, n a multiple of 32), A the tile at `tile`.
using GemmFn = void (*)(int64_t n, const uint8_t* w, size_t w_stride, int n_rows, const uint8_t* tile, float* out);

// Decode: y[r] = sum_{i < n} W_r[i] * A[i] for r < kGemmMaxRows (exactly that many rows), A one
// activation row in the row kernels' format (Q8_0 of quant_dot.h).
using GemvFn = void (*)(int64_t n, const uint8_t* w, size_t w_stride, const uint8_t* a, float* y);

struct QuantGemmKernel {
  TensorType weight_type;
  GemmActLayout layout;
  GemmFn gemm;
  GemvFn gemv;  // nullptr: decode uses the row kernel
};

// The GEMM kernel for weights of `type` on `isa`, or nullptr (q4_0, q8_0, q4_K and qbench's
// integer formats on Avx512 only; every other case uses the row kernels).
const QuantGemmKernel* find_quant_gemm(TensorType type, CpuIsa isa);

// Bytes of one tile (16 tokens) of activation rows of n values in `layout`, and of the tiles of
// n_tokens rows. Tile i starts at i * gemm_tile_bytes(layout, n).
size_t gemm_tile_bytes(GemmActLayout layout, int64_t n);
size_t gemm_tiles_bytes(GemmActLayout layout, int64_t n_tokens, int64_t n);
// Rearranges n_tokens <= kGemmTokens activation rows (quantize_activation_row, a_row bytes apart:
// Q8_0 rows for Signed/Unsigned, Q8_K rows for K) into one tile at dst.
void pack_gemm_tile(GemmActLayout layout, const uint8_t* rows, size_t a_row, int64_t n_tokens, int64_t n, uint8_t* dst);

// f16 / bf16 / nf4 / fp8 prefill (AVX-512). Activations are FP32, rearranged into tiles of kGemmTokens
// tokens: per tile, for each column k, the 16 tokens' x[t][k] (64 bytes; zeros past the last
// token). Per chunk of up to kGemmMaxRows weight rows, the rows are widened to FP32 once into
// the caller's buffer (float_gemm_buffer_floats; nf4 and fp8 by their reference dequantizer),
// then every tile passes over them: for each k,
// one load of the tile's 16 values and one FMA per row with the row's widened weight broadcast.
// out[r * kGemmTokens + t] = sum_k W_r[k] x_t[k], summed in the order of k with one FMA each: a
// token's result does not depend on the tile or on the number of tokens.
using FloatGemmFn = void (*)(int64_t n, const uint8_t* w, size_t w_stride, int n_rows, const float* tiles, int64_t n_tiles,
                             float* wbuf, float* out, size_t out_tile_stride);
// The kernel for `type` (F16, BF16, NF4, FP8_E4M3) on `isa`, or nullptr. For t < 16 tiles' tokens, writes
// out[tile * out_tile_stride + r * kGemmTokens + t].
FloatGemmFn find_float_gemm(TensorType type, CpuIsa isa);
inline size_t float_gemm_buffer_floats(int64_t n) { return size_t(kGemmMaxRows) * size_t(n); }
size_t float_gemm_tiles_bytes(int64_t n_tokens, int64_t n);
// Rearranges n_tokens FP32 rows of n values (x, row-major) into tiles at dst.
void pack_float_gemm_tiles(const float* x, int64_t n_tokens, int64_t n, float* dst);

// f16 / bf16 decode (AVX-512): a GemvFn whose activation row is the token's FP32 values, 16 rows
// per call read as 4 groups of 4 side-by-side streams with the next rows prefetched into L2.
// Each row's sum is the row kernel's (quant_dot.h) bit for bit. nullptr for other types / ISAs.
GemvFn find_float_gemv(TensorType type, CpuIsa isa);

namespace quant_gemm_detail {
// Defined in quant_dot_avx512.cc (kernels in quant_gemm_avx512-inl.h).
const QuantGemmKernel* avx512_gemm(TensorType type);
FloatGemmFn avx512_float_gemm(TensorType type);
GemvFn avx512_float_gemv(TensorType type);
}

}  // namespace qbench
