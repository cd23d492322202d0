// Writing a Model as a Hugging Face folder (config.json, safetensors, tokenizer.json,
// tokenizer_config.json) that engine/model/hf_model.h and Transformers read: the inverse of
// load_hf_folder. q/k rows go back to the checkpoint's rotary layout for architectures whose
// converter permutes them (arch.h). Matrices of any computable format are written as the chosen
// float dtype (a quantized model is written dequantized).
#pragma once

#include <cstddef>
#include <string>

#include "engine/io/safetensors.h"
#include "engine/model/model.h"

namespace qbench {

struct HfWriteOptions {
  safetensors::DType dtype = safetensors::DType::BF16;  // F32, F16 or BF16
  // Largest shard in bytes: 0 writes one model.safetensors; otherwise model-0000i-of-0000n
  // shards and model.safetensors.index.json, as save_pretrained(max_shard_size=...) does.
  size_t max_shard_bytes = 0;
};

// Writes `m` into the folder `dir` (created if missing). Refuses a folder that already holds a
// config.json or safetensors files, and a model it cannot express (rope frequency factors,
// no tokenizer). Files are written atomically one by one.
void write_hf_folder(const Model& m, const std::string& dir, const HfWriteOptions& opt = {});

}  // namespace qbench
