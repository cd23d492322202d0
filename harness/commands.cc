#include "harness/commands.h"

#include "harness/cli.h"

namespace qbench::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"info", "show a model's architecture, sizes and weight types", cmd_info},
      {"tokenize", "print the tokens of a text", cmd_tokenize},
      {"generate", "continue a prompt (greedy, or sampled with --temperature)", cmd_generate},
      {"perplexity", "token-level perplexity with llama.cpp's protocol", cmd_perplexity},
      {"schemes", "list quantization schemes, their options and llama.cpp mixes", cmd_schemes},
      {"quantize", "quantize a model with a scheme and write a GGUF", cmd_quantize},
  };
  return table;
}

}  // namespace qbench::cli
