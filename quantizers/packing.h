// Row-parallel packing with a format's reference quantizer (internal to quantizers/).
#pragma once

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <string>

#include "engine/formats/types.h"
#include "quantizers/registry.h"

namespace qbench::quant {

// Packs every row of `w` with `t.quantize_row` (after quantize_rows' range and shape checks), or
// with `t.quantize_row_weighted` when `importance` (w.cols weights) is given. Rows are
// independent, so the bytes do not depend on the thread count.
inline PackedTensor pack_with_reference(const WeightView& w, const TypeTraits& t, const float* importance = nullptr) {
  PackedTensor out;
  out.type = t.type;
  const size_t rb = row_bytes(t, w.cols);
  out.bytes.resize(size_t(w.rows) * rb);
  const std::string name(w.name);
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, w.rows, 16), [&](const tbb::blocked_range<int64_t>& r) {
    quantize_rows(t, w.data + r.begin() * w.cols, r.end() - r.begin(), w.cols, out.bytes.data() + size_t(r.begin()) * rb,
                  name, importance);
  });
  return out;
}

}  // namespace qbench::quant
