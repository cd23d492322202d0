// llama.cpp's quantization mixes ("file types"): which ggml type each tensor of a Llama model
// gets for, e.g., Q4_K_M. The rules follow llama.cpp's src/llama-quant.cpp
// (llama_tensor_get_type / llama_tensor_get_type_impl) for a dense Llama model without an
// importance matrix; the Falcon, 70B, MoE and IQ-type branches are not reproduced.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "engine/formats/types.h"

namespace qbench::quant {

enum class LlamaFtype { Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K };

struct FtypeInfo {
  LlamaFtype ftype;
  std::string_view name;    // as llama-quantize spells it: "Q4_K_M"
  TensorType base;          // the default type of quantized tensors
  uint32_t file_type;       // llama.cpp's enum llama_ftype value (GGUF general.file_type)
  std::string_view summary;
};

std::span<const FtypeInfo> all_ftypes();
const FtypeInfo& ftype_info(LlamaFtype f);
// By name, case-insensitively ("q4_k_m"); llama-quantize's short aliases "Q3_K", "Q4_K", "Q5_K"
// mean the _M mixes, and a legacy/k type name means its own file type ("q4_0", "q6_K").
std::optional<LlamaFtype> find_ftype(std::string_view name);

enum class TensorCategory { TokenEmbd, Output, AttnQ, AttnK, AttnV, AttnOutput, FfnGate, FfnUp, FfnDown, Other };
TensorCategory tensor_category(std::string_view name);

// State of one pass over a model's tensors in file order (llama.cpp's quantize_state_impl):
// counters of attn_v and ffn_down tensors seen so far, totals, and the model's GQA factor.
struct MixState {
  int n_attention_wv = 0, i_attention_wv = 0;
  int n_ffn_down = 0, i_ffn_down = 0;
  int64_t n_gqa = 1;
  bool tied_embeddings = false;
};

// The type llama_tensor_get_type_impl chooses for a tensor (before shape fallbacks), advancing
// the counters as llama.cpp does. `cols` is the row length.
TensorType llama_mix_type(LlamaFtype f, std::string_view name, int64_t cols, MixState& st);

}  // namespace qbench::quant
