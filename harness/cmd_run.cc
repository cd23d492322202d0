// qbench run: an experiment (model x schemes x perplexity, KL, suites, speed) into one results
// JSON; see harness/run/runner.h for the order of work and caching.
#include <csignal>
#include <cstdio>
#include <iostream>

#include "engine/core/error.h"
#include "harness/cli.h"
#include "harness/commands.h"
#include "harness/run/config.h"
#include "harness/run/report.h"
#include "harness/run/runner.h"

namespace qbench::cli {
namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_sigint(int) {
  g_stop.store(true);
  // A second Ctrl-C ends the process at once (the results file is valid after every unit).
  std::signal(SIGINT, SIG_DFL);
}

}  // namespace

int cmd_run(const std::vector<std::string>& args) {
  std::string config_path, out, chat_template, model, speed_shape;
  bool resume = false, force = false, reuse_stale = false, quiet = false, json = false, list_fields = false;
  int threads = -1;
  po::options_description desc("qbench run options");
  desc.add_options()
      ("config,c", po::value(&config_path)->value_name("FILE"), "experiment config (experiments/NAME.json); default: the built-in default experiment")
      ("model,m", po::value(&model)->value_name("PATH"),
       "override the config's model: a GGUF file, a Hugging Face folder, or a llama2.c checkpoint; without --config "
       "its speed is measured on the model itself (the default experiment's speed_shape stands in for the built-in "
       "model only)")
      ("speed-shape", po::value(&speed_shape)->value_name("NAME|none"),
       "override the config's speed_shape: measure speed on random weights of this shape (qbench bench --help lists "
       "them), or none: on the model itself")
      ("out,o", po::value(&out)->value_name("FILE"), "results JSON (default: results/runs/NAME.json); per-item JSONL go to NAME.items/ beside it")
      ("resume", po::bool_switch(&resume), "continue an interrupted run in the output file (error when there is none)")
      ("force", po::bool_switch(&force), "measure everything again instead of reusing cached units of the output file; "
       "replaces a file of another plan, keeping it as NAME.bak-TIME.json")
      ("reuse-stale", po::bool_switch(&reuse_stale), "reuse units measured by other code (another build: a unit's key "
       "includes the hashes of the sources that measure it); each is recorded as stale and flagged by report")
      ("threads,t", po::value(&threads)->value_name("N"), "override the config's threads (quality work)")
      ("chat-template", po::value(&chat_template)->value_name("NAME"),
       "override the config's chat_template: the chat template of the chat tasks (see qbench eval --help)")
      ("quiet,q", po::bool_switch(&quiet), "no progress lines on stderr")
      ("json", po::bool_switch(&json), "print the results document on stdout instead of the table")
      ("list-fields", po::bool_switch(&list_fields), "list the config fields with their defaults and help")
      ("help,h", "show this help");
  po::variables_map vm;
  if (!parse(args, desc,
             "usage: qbench run [--config experiments/NAME.json] [--model PATH] [--out FILE] [--resume] [--force] [--quiet]\n\n"
             "Runs an experiment: loads the model once, quantizes each scheme once, runs perplexity, KL divergence\n"
             "against the unquantized model and the task suites of all schemes concurrently, then measures\n"
             "prefill/decode speed alone. The results JSON (results/SCHEMA.md) is rewritten atomically after\n"
             "every unit, so Ctrl-C leaves a valid file; a rerun reuses units whose content key matches (the key covers\n"
             "the model, data, scheme and settings, and the code that measures them: a rebuild with changed kernels,\n"
             "quantizers or tasks measures again). A config that would replace measured units of the file, or a\n"
             "file held by another running qbench run, is refused.\n"
             "Without --config: the default experiment (experiments/default.json) on the built-in model.\n"
             "Exit status: 0 everything measured, 1 a scheme or unit failed (recorded in the file), 2 bad input,\n"
             "130 interrupted (Ctrl-C; continue with --resume).",
             vm)) {
    return 0;
  }
  if (list_fields) {
    for (const auto& f : run::experiment_fields()) {
      std::printf("%-14s %-40s %s\n", f.name.c_str(), json_text(f.default_value).c_str(), f.help.c_str());
    }
    return 0;
  }
  run::ExperimentConfig c = config_path.empty() ? run::ExperimentConfig{} : run::load_config(config_path);
  if (threads >= 0) c.threads = threads;
  if (vm.count("chat-template")) c.chat_template = chat_template;
  if (!model.empty()) c.model = model;
  // The default experiment measures speed at a shape because the built-in model sits in cache; a
  // model of one's own is measured itself unless a config or --speed-shape says otherwise.
  if (!model.empty() && config_path.empty()) c.speed_shape.clear();
  if (vm.count("speed-shape")) c.speed_shape = speed_shape == "none" ? "" : speed_shape;
  set_threads(int(c.threads));
  run::RunOptions o;
  o.out = out.empty() ? run::default_results_path(c) : out;
  o.force = force;
  o.resume = resume;
  o.reuse_stale = reuse_stale;
  o.progress = !quiet && stderr_is_tty();
  o.stop = &g_stop;
  o.command_line = "qbench run";
  for (const auto& a : args) o.command_line += " " + a;
  g_stop.store(false);
  auto previous = std::signal(SIGINT, on_sigint);
  run::RunOutcome r;
  try {
    r = run::run_experiment(c, o);
  } catch (...) {
    std::signal(SIGINT, previous);
    throw;
  }
  std::signal(SIGINT, previous);
  if (json) {
    print_json(r.results);
  } else {
    std::cout << run::render_tables({run::report_tables(r.results).front()}, run::ReportFormat::Markdown);
  }
  if (!quiet) {
    std::fprintf(stderr, "%s %s: %d units measured, %d reused from the cache%s, %d failed\n",
                 r.interrupted ? "interrupted; partial results in" : "wrote", o.out.c_str(), r.measured_units,
                 r.cached_units, r.stale_units > 0 ? (" (" + std::to_string(r.stale_units) + " stale)").c_str() : "",
                 r.failed_units);
  }
  if (r.interrupted) return 130;
  return r.failed_units > 0 ? 1 : 0;
}

}  // namespace qbench::cli
