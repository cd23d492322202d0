#include "harness/run/memory.h"

namespace qbench::run {

size_t kv_cache_bytes(const ModelConfig& c, int64_t n_ctx) {
  return size_t(2) * size_t(c.n_layer) * size_t(n_ctx) * size_t(c.n_embd_kv()) * sizeof(float);
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
