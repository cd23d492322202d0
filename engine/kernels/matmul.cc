#include "engine/kernels/matmul.h"

#include <tbb/parallel_for.h>

#include <Eigen/Core>
#include <vector>

#include "engine/core/error.h"

namespace qbench {
namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMajor>;
using StridedMap = Eigen::Map<RowMajor, 0, Eigen::OuterStride<>>;

constexpr int64_t kRowChunk = 64;

}  // namespace

void matmul(const Matrix& w, const float* x, int64_t n_tokens, float* y) {
  QB_ASSERT(!w.empty() && n_tokens > 0);
  const int64_t rows = w.rows, cols = w.cols;
  const int64_t n_chunks = (rows + kRowChunk - 1) / kRowChunk;
  const ConstMap X(x, n_tokens, cols);
  const bool f32 = w.type == TensorType::F32;
  const DequantizeRowFn deq = w.traits().dequantize_row;
  QB_ASSERT(deq != nullptr);
  tbb::parallel_for(int64_t(0), n_chunks, [&](int64_t c) {
    const int64_t r0 = c * kRowChunk;
    const int64_t nr = std::min(kRowChunk, rows - r0);
    StridedMap Y(y + r0, n_tokens, nr, Eigen::OuterStride<>(rows));
    if (f32) {
      const ConstMap W(reinterpret_cast<const float*>(w.row(r0)), nr, cols);
      Y.noalias() = X * W.transpose();
    } else {
      std::vector<float> tile(size_t(nr * cols));
      for (int64_t r = 0; r < nr; ++r) deq(w.row(r0 + r), tile.data() + r * cols, cols);
      const ConstMap W(tile.data(), nr, cols);
      Y.noalias() = X * W.transpose();
    }
  });
}

void matrix_row(const Matrix& w, int64_t r, float* dst) {
  QB_ASSERT(r >= 0 && r < w.rows);
  w.traits().dequantize_row(w.row(r), dst, w.cols);
}

}  // namespace qbench
