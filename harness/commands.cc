#include "harness/commands.h"

#include "harness/cli.h"

namespace qbench::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"info", "show a model's architecture, sizes and weight types", cmd_info},
      {"tokenize", "print the tokens of a text", cmd_tokenize},
      {"generate", "continue a prompt (greedy, or sampled with --temperature)", cmd_generate},
      {"perplexity", "token-level perplexity with llama.cpp's protocol", cmd_perplexity},
  };
  return table;
}

}  // namespace qbench::cli
