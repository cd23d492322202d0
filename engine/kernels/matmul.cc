#include "engine/kernels/matmul.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "engine/core/error.h"
#include "engine/kernels/gemm_eigen.h"
#include "engine/kernels/quant_gemm.h"

namespace qbench {
namespace {

// Reference path: dequantize kDequantRowChunk rows at a time, one Eigen product per chunk, by
// Eigen compiled for `isa` (gemm_eigen.h: a portable build would otherwise run it on SSE2).
void matmul_dequantize(const Matrix& w, const float* x, int64_t n_tokens, float* y, CpuIsa isa) {
  const int64_t rows = w.rows, cols = w.cols;
  const int64_t n_chunks = (rows + kDequantRowChunk - 1) / kDequantRowChunk;
  const bool f32 = w.type == TensorType::F32;
  const DequantizeRowFn deq = w.traits().dequantize_row;
  QB_ASSERT(deq != nullptr);
  tbb::parallel_for(int64_t(0), n_chunks, [&](int64_t c) {
    const int64_t r0 = c * kDequantRowChunk;
    const int64_t nr = std::min(kDequantRowChunk, rows - r0);
    if (f32) {
      gemm_xwt(isa, x, n_tokens, cols, reinterpret_cast<const float*>(w.row(r0)), nr, y + r0, rows);
    } else {
      // The fallback keeps its own per-task tile (the kernel path takes caller scratch).
      std::vector<float> tile(size_t(nr * cols));
      for (int64_t r = 0; r < nr; ++r) deq(w.row(r0 + r), tile.data() + r * cols, cols);
      gemm_xwt(isa, x, n_tokens, cols, tile.data(), nr, y + r0, rows);
    }
  });
}

// Kernel path; `a` holds n_tokens activation rows of `a_row` bytes in the kernel's format.
// With `gemv` (one token only), whole chunks of kGemmMaxRows rows use it instead of k.
void matmul_kernel(const Matrix& w, const uint8_t* a, size_t a_row, int64_t n_tokens, float* y,
                   const QuantDotKernel& k, GemvFn gemv = nullptr) {
  static_assert(kKernelRowChunk == kGemmMaxRows);
  QB_ASSERT(gemv == nullptr || n_tokens == 1);
  const int64_t rows = w.rows, cols = w.cols;
  const int64_t n_tasks = (rows + kKernelTaskRows - 1) / kKernelTaskRows;
  tbb::parallel_for(int64_t(0), n_tasks, [&](int64_t task) {
    const int64_t task_end = std::min(rows, (task + 1) * kKernelTaskRows);
    for (int64_t r0 = task * kKernelTaskRows; r0 < task_end; r0 += kKernelRowChunk) {
      const int64_t r1 = std::min(task_end, r0 + kKernelRowChunk);
      if (gemv != nullptr && r1 - r0 == kGemmMaxRows) {
        gemv(cols, w.row(r0), w.row_bytes(), a, y + r0);
        continue;
      }
      for (int64_t t0 = 0; t0 < n_tokens; t0 += kMaxTokenTile) {
        const int nt = int(std::min<int64_t>(kMaxTokenTile, n_tokens - t0));
        const uint8_t* at = a + size_t(t0) * a_row;
        float* yt = y + t0 * rows;
        for (int64_t r = r0; r < r1; ++r) k.dot(cols, w.row(r), at, a_row, nt, yt + r, size_t(rows));
      }
    }
  });
}

// GEMM path (quant_gemm.h); `tiles` holds the activations packed in tiles of kGemmTokens tokens.
// Tasks as in matmul_kernel; inside a task, each chunk of kGemmMaxRows rows stays in cache while
// every tile passes over it.
void matmul_gemm(const Matrix& w, const uint8_t* tiles, int64_t n_tokens, float* y, const QuantGemmKernel& g) {
  const int64_t rows = w.rows, cols = w.cols;
  const int64_t n_tasks = (rows + kKernelTaskRows - 1) / kKernelTaskRows;
  static_assert(kKernelTaskRows % kGemmMaxRows == 0);
  const size_t tile_bytes = gemm_tile_bytes(g.layout, cols);
  tbb::parallel_for(int64_t(0), n_tasks, [&](int64_t task) {
    alignas(64) float out[kGemmMaxRows * kGemmTokens];
    const int64_t task_end = std::min(rows, (task + 1) * kKernelTaskRows);
    for (int64_t r0 = task * kKernelTaskRows; r0 < task_end; r0 += kGemmMaxRows) {
      const int nr = int(std::min<int64_t>(kGemmMaxRows, task_end - r0));
      for (int64_t t0 = 0; t0 < n_tokens; t0 += kGemmTokens) {
        g.gemm(cols, w.row(r0), w.row_bytes(), nr, tiles + size_t(t0 / kGemmTokens) * tile_bytes, out);
        const int nt = int(std::min<int64_t>(kGemmTokens, n_tokens - t0));
        for (int t = 0; t < nt; ++t) {
          float* yt = y + (t0 + t) * rows + r0;
          for (int r = 0; r < nr; ++r) yt[r] = out[r * kGemmTokens + t];
        }
      }
    }
  });
}

CpuIsa chosen_isa(const MatmulOptions& opt) { return opt.isa ? *opt.isa : default_isa(); }

bool gemm_disabled() {
  static const bool off = [] {
    const char* v = std::getenv("QBENCH_GEMM");
    return v != nullptr && std::string_view(v) == "0";
  }();
  return off;
}

// The f16 / bf16 prefill GEMM for this product, or nullptr.
FloatGemmFn select_float_gemm(const Matrix& w, int64_t n_tokens, const MatmulOptions& opt) {
  if (opt.path != MatmulPath::Kernels || n_tokens < kGemmMinTokens || gemm_disabled()) return nullptr;
  return find_float_gemm(w.type, chosen_isa(opt));
}

// f16 / bf16 prefill: tasks of kKernelTaskRows rows, each chunk of kGemmMaxRows rows widened once
// into the task's buffer and multiplied with every tile.
void matmul_float_gemm(const Matrix& w, const float* tiles, int64_t n_tokens, float* y, FloatGemmFn fg) {
  const int64_t rows = w.rows, cols = w.cols;
  const int64_t n_tasks = (rows + kKernelTaskRows - 1) / kKernelTaskRows;
  const int64_t n_tiles = (n_tokens + kGemmTokens - 1) / kGemmTokens;
  const size_t out_tile = size_t(kGemmMaxRows) * kGemmTokens;
  tbb::parallel_for(int64_t(0), n_tasks, [&](int64_t task) {
    // Per-thread buffers, grown once: a fresh allocation of this size per task and product
    // (hundreds of KiB) would cost a page-faulting mmap each time.
    thread_local std::vector<float> wbuf, out;
    wbuf.resize(std::max(wbuf.size(), float_gemm_buffer_floats(cols)));
    out.resize(std::max(out.size(), size_t(n_tiles) * out_tile));
    const int64_t task_end = std::min(rows, (task + 1) * kKernelTaskRows);
    for (int64_t r0 = task * kKernelTaskRows; r0 < task_end; r0 += kGemmMaxRows) {
      const int nr = int(std::min<int64_t>(kGemmMaxRows, task_end - r0));
      fg(cols, w.row(r0), w.row_bytes(), nr, tiles, n_tiles, wbuf.data(), out.data(), out_tile);
      for (int64_t t = 0; t < n_tokens; ++t) {
        const float* o = out.data() + size_t(t / kGemmTokens) * out_tile + t % kGemmTokens;
        float* yt = y + t * rows + r0;
        for (int r = 0; r < nr; ++r) yt[r] = o[r * kGemmTokens];
      }
    }
  });
}

// The GEMM kernels for this product, or nullptr (then the row kernel k, or no kernel). Its gemm
// serves n_tokens >= kGemmMinTokens, its gemv one token.
const QuantGemmKernel* select_gemm(const Matrix& w, const QuantDotKernel* k, int64_t n_tokens, const MatmulOptions& opt) {
  if (k == nullptr || (n_tokens < kGemmMinTokens && n_tokens != 1)) return nullptr;
  if (gemm_disabled()) return nullptr;
  return find_quant_gemm(w.type, chosen_isa(opt));
}

}  // namespace

const QuantDotKernel* select_kernel(const Matrix& w, int64_t n_tokens, const MatmulOptions& opt) {
  if (opt.path != MatmulPath::Kernels) return nullptr;
  const QuantDotKernel* k = find_quant_dot(w.type, chosen_isa(opt));
  if (k == nullptr) return nullptr;
  // F32 weights stay on Eigen, used in place: its GEMV streams them as fast as the f32 kernel
  // (measured 0.22 vs 0.36 ms at 2048 x 2048, 1.30 vs 1.53 ms at 5632 x 2048), and nothing needs
  // converting. f16/bf16: the kernel wins while the product is bandwidth-bound (few tokens);
  // beyond that Eigen's blocked GEMM on a dequantized tile does more FLOPs per byte.
  if (w.type == TensorType::F32) return nullptr;
  // Rows that do not split into whole activation blocks (possible for qbench's per-row integer
  // formats, whose own blocks are 1..8 values) stay on the dequantize path.
  if (w.cols % activation_block_size(k->activation_type) != 0) return nullptr;
  if (k->activation_type == TensorType::F32 && n_tokens > kFloatKernelMaxTokens) return nullptr;
  return k;
}

std::string_view matmul_path_name(const Matrix& w, int64_t n_tokens, const MatmulOptions& opt) {
  const bool kernel = select_kernel(w, n_tokens, opt) != nullptr || select_float_gemm(w, n_tokens, opt) != nullptr;
  return kernel ? isa_name(chosen_isa(opt)) : "dequant";
}

size_t matmul_scratch_bytes(const Matrix& w, int64_t n_tokens, const MatmulOptions& opt) {
  if (select_float_gemm(w, n_tokens, opt) != nullptr) return float_gemm_tiles_bytes(n_tokens, w.cols);
  const QuantDotKernel* k = select_kernel(w, n_tokens, opt);
  if (k == nullptr || k->activation_type == TensorType::F32) return 0;
  const size_t rows = activation_row_bytes(k->activation_type, w.cols) * size_t(n_tokens);
  const QuantGemmKernel* g = n_tokens >= kGemmMinTokens ? select_gemm(w, k, n_tokens, opt) : nullptr;
  if (g == nullptr) return rows;
  return rows + gemm_tiles_bytes(g->layout, n_tokens, w.cols);
}

void matmul(const Matrix& w, const float* x, int64_t n_tokens, float* y, std::span<uint8_t> scratch,
            const MatmulOptions& opt) {
  QB_ASSERT(!w.empty() && n_tokens > 0);
  if (const FloatGemmFn fg = select_float_gemm(w, n_tokens, opt)) {
    QB_ASSERT(scratch.size() >= float_gemm_tiles_bytes(n_tokens, w.cols));
    float* tiles = reinterpret_cast<float*>(scratch.data());
    const int64_t n_tiles = (n_tokens + kGemmTokens - 1) / kGemmTokens;
    tbb::parallel_for(int64_t(0), n_tiles, [&](int64_t tile) {
      const int64_t t0 = tile * kGemmTokens;
      pack_float_gemm_tiles(x + t0 * w.cols, std::min<int64_t>(kGemmTokens, n_tokens - t0), w.cols,
                            tiles + t0 * w.cols);
    });
    matmul_float_gemm(w, tiles, n_tokens, y, fg);
    return;
  }
  const QuantDotKernel* k = select_kernel(w, n_tokens, opt);
  if (k == nullptr) {
    const CpuIsa isa = chosen_isa(opt);
    QB_ASSERT(isa_available(isa));
    matmul_dequantize(w, x, n_tokens, y, isa);
    return;
  }
  const int64_t cols = w.cols;
  // The kernels' contract (quant_dot.h): whole blocks of weights and of activations.
  QB_ASSERT(cols % w.traits().block_size == 0);
  if (k->activation_type == TensorType::F32) {
    // One token on AVX-512: f16 / bf16 chunks of kGemmMaxRows rows on their gemv (same bits).
    const GemvFn gemv = n_tokens == 1 && !gemm_disabled() ? find_float_gemv(w.type, chosen_isa(opt)) : nullptr;
    matmul_kernel(w, reinterpret_cast<const uint8_t*>(x), size_t(cols) * sizeof(float), n_tokens, y, *k, gemv);
    return;
  }
  const size_t a_row = activation_row_bytes(k->activation_type, cols);
  QB_ASSERT(scratch.size() >= a_row * size_t(n_tokens));
  // Each row is quantized by one task on its own: the bytes do not depend on the thread count.
  tbb::parallel_for(int64_t(0), n_tokens, [&](int64_t t) {
    quantize_activation_row(k->activation_type, x + t * cols, scratch.data() + size_t(t) * a_row, cols);
  });
  const QuantGemmKernel* g = select_gemm(w, k, n_tokens, opt);
  if (g != nullptr && n_tokens >= kGemmMinTokens) {
    uint8_t* tiles = scratch.data() + a_row * size_t(n_tokens);
    QB_ASSERT(scratch.size() >= a_row * size_t(n_tokens) + gemm_tiles_bytes(g->layout, n_tokens, cols));
    const size_t tile_bytes = gemm_tile_bytes(g->layout, cols);
    const int64_t n_tiles = (n_tokens + kGemmTokens - 1) / kGemmTokens;
    tbb::parallel_for(int64_t(0), n_tiles, [&](int64_t tile) {
      const int64_t t0 = tile * kGemmTokens;
      pack_gemm_tile(g->layout, scratch.data() + size_t(t0) * a_row, a_row, std::min<int64_t>(kGemmTokens, n_tokens - t0),
                     cols, tiles + size_t(tile) * tile_bytes);
    });
    matmul_gemm(w, tiles, n_tokens, y, *g);
    return;
  }
  matmul_kernel(w, scratch.data(), a_row, n_tokens, y, *k, g != nullptr ? g->gemv : nullptr);
}

void matmul(const Matrix& w, const float* x, int64_t n_tokens, float* y) {
  const MatmulOptions opt;
  std::vector<uint8_t> scratch(matmul_scratch_bytes(w, n_tokens, opt));
  matmul(w, x, n_tokens, y, scratch, opt);
}

std::string_view activation_precision(TensorType act) {
  switch (act) {
    case TensorType::F32: return "f32";
    case TensorType::Q8_0: return "q8_0 (int8 per 32 values)";
    case TensorType::Q8_1: return "q8_1 (int8 per 32 values, with block sums)";
    case TensorType::Q8_K: return "q8_K (int8 per 256 values)";
    case TensorType::Q8_T: return "int8 per token";
    default: return type_traits(act).name;
  }
}

std::vector<MatmulPathInfo> describe_matmul_paths(const Model& m, int64_t prefill_tokens) {
  std::vector<MatmulPathInfo> out;
  auto describe = [&](const Matrix& w, int64_t n_tokens, std::string& path, std::string& act) {
    const QuantDotKernel* k = select_kernel(w, n_tokens, m.matmul);
    path = std::string(matmul_path_name(w, n_tokens, m.matmul));
    act = std::string(activation_precision(k ? k->activation_type : TensorType::F32));
  };
  for (const auto& [name, w] : m.linear_weights()) {
    MatmulPathInfo info;
    info.weight_format = std::string(w->traits().name);
    describe(*w, 1, info.decode_path, info.decode_activations);
    describe(*w, prefill_tokens, info.prefill_path, info.prefill_activations);
    auto same = [&](const MatmulPathInfo& x) {
      return x.weight_format == info.weight_format && x.decode_path == info.decode_path &&
             x.prefill_path == info.prefill_path;
    };
    auto it = std::find_if(out.begin(), out.end(), same);
    if (it == out.end()) it = out.insert(out.end(), info);
    ++it->n_matrices;
  }
  return out;
}

void matrix_row(const Matrix& w, int64_t r, float* dst) {
  QB_ASSERT(r >= 0 && r < w.rows);
  w.traits().dequantize_row(w.row(r), dst, w.cols);
}

}  // namespace qbench
