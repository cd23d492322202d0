#include "engine/tokenizer/pre_tokenizer.h"

#include "engine/core/error.h"

namespace qbench {

// The patterns are those of the tokenizers' own tokenizer.json files as llama.cpp lists them
// in llama-vocab.cpp; "(?i:'s|...)" is written out case by case there, PCRE2 takes either.
const char* const kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

namespace {

constexpr const char* kLlama3Pattern =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen2Pattern =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// DeepSeek's CJK ranges: CJK unified ideographs U+4E00-U+9FA5, U+0800-U+4E00, Hangul
// U+AC00-U+D7FF. llama.cpp runs the patterns without \p{..} on text whose non-ASCII white space
// is replaced by U+000B, so white space (U+1680, U+2000.., U+3000, inside these ranges) never
// matches a listed range: "(?!\s)" keeps that.
constexpr const char* kDeepseekCjk =
    "(?:(?!\\s)[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}])+";
// DeepSeek LLM's letters: the Latin, Greek, Cyrillic, Armenian, Georgian, Cherokee, ... ranges
// of its tokenizer.json, as code point ranges.
constexpr const char* kDeepseekLlmLetters =
    "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}"
    "\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}"
    "\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}"
    "\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"
    "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}"
    "\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}"
    "\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}"
    "\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"
    "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}"
    "\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}"
    "\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}"
    "\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}"
    "\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"
    "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"
    "\\x{1E900}-\\x{1E943}]+";
constexpr const char* kDeepseekLlmPunct =
    "\\s?(?:(?!\\s)[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}])+";

std::vector<PreTokenizerInfo> make_table() {
  const std::string gpt2 = kGpt2Pattern;
  // llama.cpp's gpt-2 group lists the pattern without the final "|\s+"; the split is the same
  // (white space it leaves unmatched becomes a gap piece of its own).
  return {
      {PreTokenizerType::Default, {"default"},
       {"[\\p{P}\\$\\+<=>\\^~\\|]+", gpt2, "\\p{N}+", "[0-9][0-9][0-9]"}, false, false},
      {PreTokenizerType::Gpt2, {"gpt-2", "phi-2", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de"},
       {gpt2}, false, false},
      {PreTokenizerType::Llama3, {"llama-bpe", "llama3", "llama-v3", "falcon3", "pixtral"},
       {kLlama3Pattern}, true, true},
      {PreTokenizerType::Qwen2, {"qwen2", "deepseek-r1-qwen", "megrez"}, {kQwen2Pattern}, false, false},
      {PreTokenizerType::Smollm, {"smollm"}, {"\\p{N}", gpt2}, false, false},
      {PreTokenizerType::DeepseekLlm, {"deepseek-llm"},
       {"[\\r\\n]", kDeepseekLlmLetters, kDeepseekLlmPunct, "\\s+$", kDeepseekCjk, "\\p{N}+"}, false, false},
      {PreTokenizerType::DeepseekCoder, {"deepseek-coder"},
       {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", kDeepseekCjk, "\\p{N}"}, false, false},
      {PreTokenizerType::Falcon, {"falcon"},
       {"[\\p{P}\\$\\+<=>\\^~\\|`]+", gpt2, "[0-9][0-9][0-9]"}, false, false},
      {PreTokenizerType::Starcoder, {"starcoder"}, {"\\p{N}", gpt2}, false, false},
      {PreTokenizerType::Refact, {"refact"}, {"\\p{N}", gpt2}, false, false},
      {PreTokenizerType::Mpt, {"mpt"}, {gpt2}, false, false},
      {PreTokenizerType::Dbrx, {"dbrx", "smaug-bpe"}, {kLlama3Pattern}, false, false},
      {PreTokenizerType::Olmo, {"olmo"}, {gpt2}, false, false},
      {PreTokenizerType::CommandR, {"command-r"}, {"\\p{N}", gpt2}, false, false},
      {PreTokenizerType::Stablelm2, {"stablelm2"}, {kQwen2Pattern}, false, false},
  };
}

}  // namespace

std::span<const PreTokenizerInfo> pre_tokenizers() {
  static const std::vector<PreTokenizerInfo> table = make_table();
  return table;
}

const PreTokenizerInfo& find_pre_tokenizer(std::string_view name) {
  for (const PreTokenizerInfo& p : pre_tokenizers()) {
    for (std::string_view n : p.names) {
      if (n == name) return p;
    }
  }
  std::string known;
  for (const PreTokenizerInfo& p : pre_tokenizers()) {
    for (std::string_view n : p.names) known += (known.empty() ? "" : ", ") + std::string(n);
  }
  throw Error("unknown BPE pre-tokenizer '" + std::string(name) + "' (known: " + known + ")");
}

}  // namespace qbench
