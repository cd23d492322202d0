// qbench perplexity: llama.cpp's llama-perplexity protocol (see tasks/perplexity.h).
#include <chrono>
#include <optional>
#include <cstdio>
#include <iostream>

#include "datasets/text.h"
#include "engine/core/error.h"
#include "harness/cli.h"
#include "harness/commands.h"
#include "harness/sysinfo.h"
#include "harness/calib_options.h"
#include "quantizers/quantize_model.h"
#include "tasks/kl.h"
#include "tasks/perplexity.h"

namespace qbench::cli {

int cmd_perplexity(const std::vector<std::string>& args) {
  ModelOptions o;
  std::string text_path, scheme, activations = "kernel", kv_types;
  PerplexityOptions popt;
  bool kl = false, pure = false;
  int64_t kl_top_k = 64;
  CalibOptions calib_opts;
  std::vector<std::string> tensor_types;
  po::options_description desc("qbench perplexity options");
  desc.add_options()
      ("text,f", po::value(&text_path)->required()->value_name("FILE"), "UTF-8 text file to score")
      ("ctx,c", po::value(&popt.n_ctx)->default_value(512)->value_name("N"),
       "chunk size in tokens (llama.cpp's -c); by default 512, or the model's training context when that is "
       "smaller (beyond it RoPE positions were never trained and the number means little; an explicit larger N "
       "is measured with a warning)")
      ("chunks", po::value(&popt.max_chunks)->default_value(-1)->value_name("K"), "score at most K chunks (-1: all)")
      ("scheme", po::value(&scheme)->value_name("S"), "quantize the model with scheme S first (see qbench schemes)")
      ("pure", po::bool_switch(&pure), "with --scheme: no llama.cpp mix, every tensor in the scheme's type (as qbench quantize)")
      ("tensor-type", po::value(&tensor_types)->value_name("PATTERN=S"),
       "with --scheme: scheme for tensors matching the regex PATTERN (as qbench quantize)")
      ("kl", po::bool_switch(&kl), "with --scheme: KL divergence of the quantized model against the unquantized one "
                                   "on the same positions (llama.cpp --kl-divergence statistics)")
      ("kl-top-k", po::value(&kl_top_k)->default_value(64)->value_name("K"), "reference log-probabilities kept per position")
      ("rolling", po::bool_switch(&popt.rolling), "also report word/byte perplexity and bits per byte over every position");
  add_calib_options(desc, calib_opts);
  add_model_options(desc, o);
  add_activation_option(desc, activations);
  add_kv_cache_option(desc, kv_types);
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
  if (kl && scheme.empty() && kv_types.empty()) {
    throw Error("--kl needs --scheme or --kv-cache (the reference is the unquantized model with an f32 KV cache)");
  }
  const Model source = load_model_from(o);
  const int64_t n_ctx_train = source.config.n_ctx_train;
  if (n_ctx_train > 0 && popt.n_ctx > n_ctx_train) {
    if (vm["ctx"].defaulted()) {
      popt.n_ctx = n_ctx_train;
      std::fprintf(stderr, "perplexity: --ctx %lld, the model's training context (llama.cpp's default 512 exceeds it)\n",
                   (long long)n_ctx_train);
    } else {
      std::fprintf(stderr, "perplexity: warning: --ctx %lld exceeds the model's training context %lld; positions beyond "
                   "it were never trained\n", (long long)popt.n_ctx, (long long)n_ctx_train);
    }
  }
  quant::QuantizeReport qreport;
  const std::optional<quant::Calibration> calib = make_calibration(source, calib_opts);
  quant::Recipe recipe;
  if (!scheme.empty()) {
    recipe = quant::make_recipe(scheme);
    recipe.pure = pure;
    for (const auto& t : tensor_types) recipe.rules.push_back(quant::parse_rule(t));
  } else if (!tensor_types.empty() || pure) {
    throw Error(std::string(pure ? "--pure" : "--tensor-type") + " needs --scheme");
  }
  Model m = scheme.empty() ? source : quant::quantize_model(source, recipe, &qreport, calib ? &*calib : nullptr);
  const nlohmann::json matmul = apply_activations(m, activations, popt.n_ctx);
  const std::string kv_cache = apply_kv_cache(m, kv_types);
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
  std::optional<KlResult> klr;
  if (kl) {
    const ReferenceLogits ref = compute_reference_logits(source, tokens, popt, kl_top_k);
    klr = kl_divergence(m, ref, tokens, popt);
  }
  nlohmann::json jkl = nullptr;
  if (klr) {
    jkl = {{"positions", klr->n_positions}, {"top_k", kl_top_k}, {"mean", klr->kld_mean}, {"stderr", klr->kld_stderr},
           {"max", klr->kld_max}, {"p99_9", klr->kld_p99_9}, {"p99", klr->kld_p99}, {"p95", klr->kld_p95},
           {"p90", klr->kld_p90}, {"median", klr->kld_median}, {"p10", klr->kld_p10}, {"p5", klr->kld_p5},
           {"p1", klr->kld_p1}, {"p0_1", klr->kld_p0_1}, {"same_top", klr->same_top},
           {"same_top_stderr", klr->same_top_stderr}, {"ppl_ref", klr->ppl_ref},
           {"ln_ppl_ratio", klr->ln_ppl_ratio}, {"ln_ppl_ratio_stderr", klr->ln_ppl_ratio_stderr},
           {"delta_p_mean", klr->delta_p_mean}, {"delta_p_stderr", klr->delta_p_stderr}, {"delta_p_rms", klr->delta_p_rms}};
  }
  nlohmann::json jroll = nullptr;
  if (popt.rolling) {
    jroll = {{"tokens", r.rolling.count}, {"bytes", r.rolling_bytes}, {"words", r.rolling_words},
             {"word_perplexity", r.word_perplexity}, {"byte_perplexity", r.byte_perplexity}, {"bits_per_byte", r.bits_per_byte}};
  }
  nlohmann::json jq = nullptr;
  if (!scheme.empty()) {
    jq = {{"scheme", scheme}, {"pure", pure}, {"bits_per_weight", qreport.bits_per_weight}, {"bytes", qreport.bytes}, {"seconds", qreport.seconds},
          {"calibration", qreport.calibration}, {"calib_seconds", qreport.calib_seconds},
          {"imatrix", qreport.imatrix.empty() ? nlohmann::json(nullptr) : nlohmann::json(qreport.imatrix)}};
  }
  if (o.json) {
    print_json({
        {"quantization", jq},
        {"kl_divergence", jkl},
        {"matmul", matmul},
        {"kv_cache", kv_cache},
        {"rolling", jroll},
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
  if (!scheme.empty()) std::printf("scheme %s: %.4f bits per weight\n", scheme.c_str(), qreport.bits_per_weight);
  if (!qreport.imatrix.empty()) std::printf("imatrix: %s\n", qreport.imatrix.c_str());
  std::printf("%s\n", activations_summary(matmul).c_str());
  if (kv_cache != "f32") std::printf("KV cache: %s\n", kv_cache.c_str());
  std::printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_stderr);
  if (popt.rolling) {
    std::printf("word perplexity %.4f, byte perplexity %.5f, bits per byte %.5f (%lld tokens, %lld bytes, %lld words)\n",
                r.word_perplexity, r.byte_perplexity, r.bits_per_byte, (long long)r.rolling.count,
                (long long)r.rolling_bytes, (long long)r.rolling_words);
  }
  if (klr) {
    std::printf("KL divergence vs the unquantized model over %lld positions (top-%lld reference):\n",
                (long long)klr->n_positions, (long long)kl_top_k);
    std::printf("  Mean KLD %.6f +/- %.6f   max %.6f   99.9%% %.6f   99%% %.6f   95%% %.6f   90%% %.6f\n", klr->kld_mean,
                klr->kld_stderr, klr->kld_max, klr->kld_p99_9, klr->kld_p99, klr->kld_p95, klr->kld_p90);
    std::printf("  median %.6f   10%% %.6f   5%% %.6f   1%% %.6f   0.1%% %.6f\n", klr->kld_median, klr->kld_p10, klr->kld_p5,
                klr->kld_p1, klr->kld_p0_1);
    std::printf("  ln(PPL(Q)/PPL(base)) %.6f +/- %.6f   same top %.3f%% +/- %.3f%%   RMS dp %.4f%%\n", klr->ln_ppl_ratio,
                klr->ln_ppl_ratio_stderr, 100 * klr->same_top, 100 * klr->same_top_stderr, 100 * klr->delta_p_rms);
  }
  std::printf("%.1f tokens/s (%.2f s, %d threads), peak RSS %.1f MiB\n", r.tokens_per_second, r.seconds,
              thread_count(), double(peak_rss_bytes()) / (1024.0 * 1024.0));
  return 0;
}

}  // namespace qbench::cli
