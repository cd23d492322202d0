// Memory figures recorded per scheme: bytes of the KV cache and bits per weight of the
// matrices the forward pass multiplies.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/model/config.h"
#include "quantizers/quantize_model.h"

namespace qbench::run {

// Bytes of the KV cache of one sequence of n_ctx tokens (keys and values, all layers) in `kv`'s
// types (engine/model/forward.h: per head, row_bytes of the head size). Throws qbench::Error,
// as Forward does, when a type's block does not divide the head size.
size_t kv_cache_bytes(const ModelConfig& c, int64_t n_ctx, const KvCacheTypes& kv = {});

// 8 * bytes / weights over the multiplied matrices, scales and zero points included. The token
// embedding is a lookup table (non-GGUF schemes keep it F32), so it counts only when the output
// shares it (tied).
double linear_bits_per_weight(const quant::QuantizeReport& report, bool tied_output);

}  // namespace qbench::run
