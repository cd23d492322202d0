// qbench generate: greedy (default) or sampled continuation of a prompt.
#include <cstdio>
#include <iostream>

#include "engine/core/error.h"
#include "harness/cli.h"
#include "harness/commands.h"
#include "tasks/generate.h"

namespace qbench::cli {

int cmd_generate(const std::vector<std::string>& args) {
  ModelOptions o;
  std::string prompt;
  GenerateOptions g;
  bool no_bos = false;
  po::options_description desc("qbench generate options");
  desc.add_options()
      ("prompt,p", po::value(&prompt)->default_value("")->value_name("TEXT"), "prompt text (empty: start from BOS)")
      ("n,n", po::value(&g.max_tokens)->default_value(64)->value_name("N"), "tokens to generate")
      ("temperature", po::value(&g.temperature)->default_value(0.0f)->value_name("T"), "0: greedy; > 0: sample from softmax(logits/T)")
      ("top-k", po::value(&g.top_k)->default_value(0)->value_name("K"), "sample among the K most likely tokens (0: all)")
      ("seed", po::value(&g.seed)->default_value(42)->value_name("S"), "random seed for sampling")
      ("ignore-eos", "keep generating after the end-of-sequence token")
      ("stop", po::value(&g.stop)->value_name("TEXT")->composing(), "stop when the output contains TEXT (repeatable)")
      ("no-bos", po::bool_switch(&no_bos), "do not prepend BOS to the prompt");
  add_model_options(desc, o);
  po::variables_map vm;
  if (!parse(args, desc, "usage: qbench generate [--model FILE] --prompt TEXT [-n N] [--temperature T --top-k K --seed S] [--json]", vm)) {
    return 0;
  }
  set_threads(o.threads);
  if (g.max_tokens < 0) throw Error("-n must be >= 0");
  if (g.temperature < 0) throw Error("--temperature must be >= 0");
  g.stop_at_eos = vm.count("ignore-eos") == 0;
  const Model m = load_model_from(o);
  const Tokenizer& tok = m.require_tokenizer();
  std::vector<int32_t> ids = tok.encode(prompt, !no_bos);
  if (ids.empty()) ids.push_back(tok.bos());
  if (!o.json) std::cout << prompt << std::flush;
  const GenerateResult r = generate(m, ids, g, [&](int32_t, const std::string& piece) {
    if (!o.json) std::cout << piece << std::flush;
  });
  const double tps = r.gen_seconds > 0 ? double(r.tokens.size()) / r.gen_seconds : 0.0;
  if (o.json) {
    print_json({{"command", "generate"}, {"model", model_json(m)}, {"prompt", prompt},
                {"prompt_tokens", ids.size()}, {"tokens", r.tokens}, {"text", r.text},
                {"stop_reason", r.stop_reason}, {"temperature", g.temperature}, {"top_k", g.top_k},
                {"seed", g.seed}, {"decode_tokens_per_second", tps}});
    return 0;
  }
  std::cout << "\n";
  std::fprintf(stderr, "[%zu prompt tokens, %zu generated (%s), %.1f tokens/s]\n", ids.size(), r.tokens.size(),
               r.stop_reason.c_str(), tps);
  return 0;
}

}  // namespace qbench::cli
