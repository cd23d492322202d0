#include "harness/run/memory.h"

#include <string>

#include "engine/core/error.h"

namespace qbench::run {

size_t kv_cache_bytes(const ModelConfig& c, int64_t n_ctx, const KvCacheTypes& kv) {
  const int64_t hd = c.head_dim();
  size_t per_head = 0;
  for (TensorType t : {kv.k, kv.v}) {
    const TypeTraits& tr = type_traits(t);
    if (hd % tr.block_size != 0) {
      throw Error("KV cache type " + std::string(tr.name) + ": the head size " + std::to_string(hd) +
                  " is not a multiple of its block size " + std::to_string(tr.block_size) +
                  " (llama.cpp refuses this model with it too)");
    }
    per_head += row_bytes(tr, hd);
  }
  return size_t(c.n_layer) * size_t(n_ctx) * size_t(c.n_head_kv) * per_head;
}

double linear_bits_per_weight(const quant::QuantizeReport& report, bool tied_output) {
  double bits = 0, n = 0;
  for (const auto& t : report.tensors) {
    if (t.name == "token_embd.weight" && !tied_output) continue;
    bits += 8.0 * double(t.bytes);
    n += double(t.rows) * double(t.cols);
  }
  return n > 0 ? bits / n : 0.0;
}

}  // namespace qbench::run
