// Writing a Model (e.g. a quantized variant) as a GGUF file.
#pragma once

#include <string>

#include "engine/io/gguf.h"
#include "engine/model/model.h"

namespace qbench {

// A GGUF writer holding `m`: for a model loaded from a GGUF file, every metadata key of that
// file and its tensor order; otherwise (llama2.c) the `llama.*` keys from the configuration and
// the tokenizer (Tokenizer::write_gguf). Tensors in llama.cpp's naming: token_embd, output_norm,
// output (unless tied), then per layer attn_norm, attn_q/k/v(.bias), attn_output, ffn_norm,
// ffn_gate, ffn_up, ffn_down. Norms and biases are written as F32. The caller may set more keys
// (general.file_type, ...) before writing atomically with Writer::write.
gguf::Writer model_gguf_writer(const Model& m);

}  // namespace qbench
