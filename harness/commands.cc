#include "harness/commands.h"

#include "harness/cli.h"

namespace qbench::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"info", "show a model's architecture, sizes and weight types", cmd_info},
      {"tokenize", "print the tokens of a text", cmd_tokenize},
      {"generate", "continue a prompt (greedy, or sampled with --temperature)", cmd_generate},
      {"perplexity", "token-level perplexity with llama.cpp's protocol", cmd_perplexity},
      {"eval", "score a model on task suites (math_reasoning, chat, ...) with standard errors, chats in its template",
       cmd_eval},
      {"tasks", "list the task suites and tasks", cmd_tasks},
      {"datagen", "write items of the built-in generators as text or JSONL", cmd_datagen},
      {"train", "train qbench's default model from a recipe (resumable)", cmd_train},
      {"qat", "quantization-aware training into an integer format: PTQ start, LSQ scales, distillation (resumable)",
       cmd_qat},
      {"schemes", "list quantization schemes, their options and llama.cpp mixes", cmd_schemes},
      {"quantize", "quantize a model with a scheme and write a GGUF", cmd_quantize},
      {"convert", "write a model as a Hugging Face folder (config.json, safetensors, tokenizer.json)", cmd_convert},
      {"run", "run an experiment: schemes x perplexity, KL, suites, speed, memory -> results JSON", cmd_run},
      {"bench", "prefill/decode speed of one scheme (llama-bench style), also on published shapes", cmd_bench},
      {"compare", "regression check of a results file against a baseline (exit 1 on regression)", cmd_compare},
      {"report", "tables of a results file as Markdown, LaTeX or CSV", cmd_report},
      {"imatrix", "importance matrix (mean x^2 per input channel) of a model over a calibration text", cmd_imatrix},
  };
  return table;
}

}  // namespace qbench::cli
