// qbench perplexity: llama.cpp's llama-perplexity protocol (see tasks/perplexity.h).
#include <chrono>
#include <cstdio>
#include <iostream>

#include "datasets/text.h"
#include "engine/core/error.h"
#include "harness/cli.h"
#include "harness/commands.h"
#include "harness/sysinfo.h"
#include "tasks/perplexity.h"

namespace qbench::cli {

int cmd_perplexity(const std::vector<std::string>& args) {
  ModelOptions o;
  std::string text_path;
  PerplexityOptions popt;
  po::options_description desc("qbench perplexity options");
  desc.add_options()
      ("text,f", po::value(&text_path)->required()->value_name("FILE"), "UTF-8 text file to score")
      ("ctx,c", po::value(&popt.n_ctx)->default_value(512)->value_name("N"), "chunk size in tokens (llama.cpp's -c)")
      ("chunks", po::value(&popt.max_chunks)->default_value(-1)->value_name("K"), "score at most K chunks (-1: all)");
  add_model_options(desc, o);
  po::variables_map vm;
  if (!parse(args, desc,
             "usage: qbench perplexity [--model FILE] --text FILE [--ctx N] [--chunks K] [--json]\n\n"
             "Token-level perplexity exactly as llama.cpp's llama-perplexity computes it: the file is\n"
             "tokenized once (BOS first), cut into non-overlapping chunks of N tokens, each starting\n"
             "with BOS, and the second half of every chunk is scored. Prints PPL +/- its standard error.",
             vm)) {
    return 0;
  }
  set_threads(o.threads);
  const Model m = load_model_from(o);
  const Tokenizer& tok = m.require_tokenizer();
  const std::string text = read_text_file(text_path);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int32_t> tokens = tok.encode(text, true);
  const double tokenize_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!o.json) {
    std::fprintf(stderr, "tokenized %s: %zu tokens in %.2f s\n", text_path.c_str(), tokens.size(), tokenize_s);
  }
  const bool tty = stderr_is_tty();
  const auto start = std::chrono::steady_clock::now();
  const PerplexityResult r = llama_perplexity(m, tokens, popt, [&](int64_t done, int64_t total) {
    if (!tty) return;
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "\r[%lld/%lld chunks] %.1f s, ETA %.0f s   ", (long long)done, (long long)total, el,
                 el / double(done) * double(total - done));
    if (done == total) std::fprintf(stderr, "\n");
  });
  if (o.json) {
    print_json({
        {"command", "perplexity"},
        {"model", model_json(m)},
        {"text", text_path},
        {"protocol", "llama.cpp llama-perplexity"},
        {"n_ctx", r.n_ctx},
        {"n_text_tokens", r.n_text_tokens},
        {"n_chunks", r.n_chunks},
        {"n_scored", r.stats.count},
        {"ppl", r.ppl},
        {"ppl_stderr", r.ppl_stderr},
        {"mean_nll", r.stats.mean()},
        {"seconds", r.seconds},
        {"tokens_per_second", r.tokens_per_second},
        {"tokenize_seconds", tokenize_s},
        {"threads", thread_count()},
        {"peak_rss_bytes", peak_rss_bytes()},
    });
    return 0;
  }
  std::printf("%s on %s: %lld tokens, %lld chunks of %lld, %lld scored\n", m.path.c_str(), text_path.c_str(),
              (long long)r.n_text_tokens, (long long)r.n_chunks, (long long)r.n_ctx, (long long)r.stats.count);
  std::printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_stderr);
  std::printf("%.1f tokens/s (%.2f s, %d threads), peak RSS %.1f MiB\n", r.tokens_per_second, r.seconds,
              thread_count(), double(peak_rss_bytes()) / (1024.0 * 1024.0));
  return 0;
}

}  // namespace qbench::cli
