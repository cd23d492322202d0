// The byte-level BPE pre-tokenizers that llama.cpp selects by GGUF `tokenizer.ggml.pre`: one
// table entry per type (regexes applied in order, whether a word that is itself a token skips
// the merges, whether BOS is added by default), looked up by any of its names.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qbench {

enum class PreTokenizerType {
  Default,  // llama.cpp's LLAMA_VOCAB_PRE_TYPE_DEFAULT (name "default", or no key)
  Gpt2,
  Llama3,
  Qwen2,
  Smollm,
  DeepseekLlm,
  DeepseekCoder,
  Falcon,
  Starcoder,
  Refact,
  Mpt,
  Dbrx,
  Olmo,
  CommandR,
  Stablelm2,
};

struct PreTokenizerInfo {
  PreTokenizerType type;
  std::vector<std::string_view> names;   // GGUF `tokenizer.ggml.pre` values, first is canonical
  std::vector<std::string> patterns;     // PCRE2 syntax, applied in order (see regex_split.h)
  bool ignore_merges;                    // a pre-token found whole in the vocabulary is emitted as is
  bool add_bos;                          // default of tokenizer.ggml.add_bos_token
};

// Every known pre-tokenizer.
std::span<const PreTokenizerInfo> pre_tokenizers();

// The entry named `name`; throws qbench::Error naming it (and the known names) when unknown.
const PreTokenizerInfo& find_pre_tokenizer(std::string_view name);

// The GPT-2 pattern (also Hugging Face's ByteLevel pre-tokenizer with use_regex = true).
extern const char* const kGpt2Pattern;

}  // namespace qbench
