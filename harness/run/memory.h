// Memory figures recorded per scheme: bytes of the KV cache and bits per weight of the
// matrices the forward pass multiplies.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/model/config.h"
#include "quantizers/quantize_model.h"

namespace qbench::run {

// Bytes of the F32 KV cache of one sequence of n_ctx tokens (keys and values, all layers).
size_t kv_cache_bytes(const ModelConfig& c, int64_t n_ctx);

// 8 * bytes / weights over the multiplied matrices, scales and zero points included. The token
// embedding is a lookup table (non-GGUF schemes keep it F32), so it counts only when the output
// shares it (tied).
double linear_bits_per_weight(const quant::QuantizeReport& report, bool tied_output);

}  // namespace qbench::run
