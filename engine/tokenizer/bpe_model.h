// Internal to engine/tokenizer (tokenizer.cc, hf_tokenizer.cc): the parts of a byte-level BPE
// vocabulary beyond its tokens, and helpers both files use.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/regex_split.h"
#include "engine/tokenizer/tokenizer.h"

namespace qbench {

struct BpeModel {
  // "left right" (a merge as GGUF and tokenizer.json store it) -> rank (its index; lower first).
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> ranks;
  std::vector<std::string> merges;  // in rank order, for writing back
  RegexSplitter splitter;
  bool ignore_merges = false;  // a pre-token that is itself a token skips the merges
};

// Builds the merge table and the pre-tokenizer: `pre`'s patterns and ignore_merges when given,
// else `patterns` and `ignore_merges`. Throws qbench::Error naming `source` and the entry for a
// merge that is not two non-empty parts separated by one space.
std::shared_ptr<BpeModel> make_bpe_model(const std::vector<std::string>& merges, const PreTokenizerInfo* pre,
                                         const std::vector<std::string>& patterns, bool ignore_merges,
                                         const std::string& source);

// Parses the byte token "<0xNN>" into NN; -1 for any other piece.
int parse_byte_piece(std::string_view piece);

}  // namespace qbench
