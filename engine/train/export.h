// Export of trained parameters as a GGUF model the inference engine (and llama.cpp) loads:
// arch "llama", F32 tensors with ggml dims (ne[0] = input features), the llama.* hyper-parameter
// keys engine/model/model.cc reads, and the tokenizer's tokenizer.ggml.* keys. A tied output is
// written as no output.weight tensor (the loader then reuses token_embd.weight).
#pragma once

#include <string>

#include "engine/model/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/train/params.h"

namespace qbench::train {

// Writes atomically (temporary file + rename). Throws qbench::Error when the tokenizer's size
// differs from the model's vocabulary or on I/O failure.
void export_gguf(const TrainParams& params, const Tokenizer& tokenizer, const std::string& name,
                 const std::string& path);

// The other way: copies the weights of a loaded model (any storage format, dequantized) into
// `params`, tensor by tensor by GGUF name. Throws qbench::Error naming `path` when a tensor is
// missing or has another shape.
void import_params(TrainParams& params, const Model& m, const std::string& path);

}  // namespace qbench::train
