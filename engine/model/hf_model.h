// Loading a Hugging Face model folder:
//   config.json                       architecture and hyper-parameters
//   model.safetensors                 weights, or shards model-0000i-of-0000n.safetensors listed
//   model.safetensors.index.json        by the index's weight_map
//   tokenizer.json                    the tokenizer (byte-level BPE or SentencePiece-style)
//   tokenizer_config.json             BOS/EOS and whether to add them; chat_template
//
// Architectures come from engine/model/arch.h (LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM). F32, F16 and BF16 weights stay in the file mappings and are computed with
// directly (no F32 copy); only the q and k projections of architectures that llama.cpp's
// converter permutes are copied, in their own dtype, into GGUF's rotary row order, so a Model
// from a folder equals the Model from the GGUF that llama.cpp's converter writes from it.
// Every problem (a missing or extra tensor, a dtype or shape that disagrees with config.json, a
// missing shard, an unsupported option) is a qbench::Error naming the file and the key.
#pragma once

#include <string>

#include "engine/model/model.h"

namespace qbench {

// True when `path` is a directory (a model folder, as opposed to a model file).
bool is_hf_folder(const std::string& path);
Model load_hf_folder(const std::string& dir);

}  // namespace qbench
