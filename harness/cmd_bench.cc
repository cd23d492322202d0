// qbench bench: prefill and decode speed of one scheme, llama-bench style, on a model file or a
// random-weight model of a published architecture (--shape).
#include <cstdio>
#include <map>
#include <optional>

#include "engine/core/error.h"
#include "engine/kernels/quant_dot.h"
#include "engine/model/model_writer.h"
#include "harness/cli.h"
#include "harness/commands.h"
#include "harness/run/bandwidth.h"
#include "harness/run/config.h"
#include "harness/run/memory.h"
#include "harness/run/shapes.h"
#include "harness/run/speed.h"
#include "harness/sysinfo.h"
#include "quantizers/quantize_model.h"

namespace qbench::cli {
namespace {

// Writes a --shape model (already quantized) as a GGUF llama.cpp loads: the shape's llama.*
// keys, a placeholder SentencePiece vocabulary (<unk>, <s>, </s>, the 256 byte tokens, then
// "[PAD<i>]" up to n_vocab; only its size matters to a speed benchmark) and the file type.
void save_shape_gguf(Model& m, const std::string& shape, const std::string& scheme, const quant::Recipe& recipe,
                     const quant::QuantizeReport& rep, const std::string& out) {
  m.tokenizer = Tokenizer::byte_fallback({});
  if (m.tokenizer.n_tokens() > m.config.n_vocab) throw Error("--save: shape " + shape + " has fewer tokens than the placeholder vocabulary");
  m.tokenizer.pad_to(int32_t(m.config.n_vocab));
  m.config.name = shape + " (random weights)";
  gguf::Writer w = model_gguf_writer(m);
  w.set("general.file_type", gguf::Value::u32(quant::gguf_file_type(recipe, rep.all_ggml)));
  w.set("general.quantization_version", gguf::Value::u32(2));
  w.set("qbench.scheme", gguf::Value::str(scheme));
  w.set("qbench.shape", gguf::Value::str(shape));
  const size_t bytes = w.write(out);
  std::printf("wrote %s: %s, scheme %s, %.1f MiB\n", out.c_str(), shape.c_str(), scheme.c_str(),
              double(bytes) / (1024.0 * 1024.0));
}

}  // namespace

int cmd_bench(const std::vector<std::string>& args) {
  ModelOptions o;
  std::string shape_name, scheme, save;
  run::SpeedOptions so;
  int64_t bandwidth_mib = 512;
  std::string shape_names;
  for (const auto& s : run::model_shapes()) shape_names += (shape_names.empty() ? "" : ", ") + s.name;
  po::options_description desc("qbench bench options");
  desc.add_options()
      ("shape", po::value(&shape_name)->value_name("NAME"),
       ("random-weight model of a published architecture instead of --model: " + shape_names).c_str())
      ("scheme,s", po::value(&scheme)->value_name("S"),
       "quantization scheme (see qbench schemes); default: keep (the model file as stored, as llama-bench measures it), "
       "or fp16 with --shape")
      ("prefill,p", po::value(&so.prefill)->value_name("N"), "prefill tokens (default 128)")
      ("decode,n", po::value(&so.decode)->value_name("N"), "decode tokens after the prefill (default 32)")
      ("reps,r", po::value(&so.reps)->value_name("N"), "measured repetitions (default 5)")
      ("warmup", po::value(&so.warmup)->value_name("N"), "unmeasured warm-up repetitions (default 1)")
      ("bandwidth-mib", po::value(&bandwidth_mib)->value_name("MIB"),
       "buffer of the memory read-bandwidth probe run after the measurement (default 512, far beyond the L3 "
       "cache; 0: no probe)")
      ("save", po::value(&save)->value_name("FILE"),
       "with --shape: write the quantized random-weight model as a GGUF (placeholder vocabulary) that llama.cpp "
       "loads, instead of measuring; `qbench bench --model FILE` and llama-bench then run the same bytes");
  add_model_options(desc, o);
  po::variables_map vm;
  if (!parse(args, desc,
             "usage: qbench bench (--model FILE | --shape NAME) [--scheme S] [--prefill 128] [--decode 32] [--reps 5] [--json]\n"
             "       qbench bench --shape NAME [--scheme S] --save FILE.gguf\n\n"
             "Measures prefill (pp) and decode (tg) tokens/s of the quantized model alone, after warm-up, with a\n"
             "fixed thread count: mean +/- sd and median over the repetitions, like llama-bench. --shape builds\n"
             "random weights of that architecture in memory (no file): one F32 layer shared by all layers until each\n"
             "is quantized into its own packed copy, then the F32 bytes are released. Without --scheme a model file\n"
             "is measured as stored (scheme 'keep', shown with the weight formats found, e.g. keep (q4_K+q6_K)).\n"
             "Decode is also given as GB/s of weights read per token (every layer matrix and the output head as\n"
             "packed, plus one token-embedding row, times the median decode tokens/s) and as a share of the\n"
             "machine's read bandwidth, measured once afterwards by summing a --bandwidth-mib buffer (best pass).",
             vm)) {
    return 0;
  }
  if (!shape_name.empty() && !o.model.empty()) throw Error("give --model or --shape, not both");
  if (!save.empty() && shape_name.empty()) throw Error("--save writes a --shape model; a --model file is already one");
  if (so.prefill < 1 || so.decode < 1 || so.reps < 1 || so.warmup < 0) {
    throw Error("--prefill, --decode and --reps must be >= 1, --warmup >= 0");
  }
  if (bandwidth_mib < 0 || bandwidth_mib > (int64_t(1) << 20)) {
    throw Error("--bandwidth-mib must be 0 (no probe) or a buffer size in MiB up to 1048576, got " + std::to_string(bandwidth_mib));
  }
  // A model file is measured as stored unless a scheme is asked for: re-quantizing a Q4_K_M file to
  // fp16 would report another model's speed. A --shape has no stored format (random F32 weights).
  if (scheme.empty()) scheme = shape_name.empty() ? "keep" : "fp16";
  set_threads(o.threads);
  so.threads = thread_count();
  const quant::Recipe recipe = quant::make_recipe(scheme);
  quant::QuantizeReport rep;
  std::optional<Model> model;
  int64_t n_params = 0;
  nlohmann::json mj;
  if (shape_name.empty()) {
    // The source lives only in this scope: the variant keeps what it shares.
    const Model source = load_model_from(o);
    n_params = source.n_params();
    mj = model_json(source);
    model.emplace(quant::quantize_model(source, recipe, &rep));
  } else {
    // Random weights of the shape, released as soon as they are packed.
    model.emplace(run::quantized_random_model(run::find_shape(shape_name), scheme, &rep));
    n_params = model->n_params();
    mj = model_json(*model);
  }
  const double bpw = run::linear_bits_per_weight(rep, model->tied_output);
  if (!save.empty()) {
    save_shape_gguf(*model, shape_name, scheme, recipe, rep, save);
    return 0;
  }
  const run::SpeedResult r = run::measure_speed(*model, so);
  // The peak of the measurement; the probe's buffer comes after it.
  const uint64_t peak_rss = peak_rss_bytes();
  std::optional<run::ReadBandwidth> probe;
  if (bandwidth_mib > 0) {
    run::BandwidthOptions bo;
    bo.buffer_bytes = size_t(bandwidth_mib) << 20;
    bo.threads = so.threads;
    probe = run::measure_read_bandwidth(bo);
  }
  const run::DecodeWeightBytes decode_bytes = run::decode_weight_bytes(*model);
  const nlohmann::json decode_bw = run::decode_bandwidth_json(decode_bytes, r.decode.median, probe ? &*probe : nullptr);
  const std::string model_name = shape_name.empty() ? model->config.name : shape_name;
  const std::string simd(isa_name(default_isa()));
  // What was measured: the formats of the linear weights (for `keep`, the file's own).
  std::map<std::string, int64_t> formats;
  for (const auto& t : rep.tensors) {
    if (t.name != "token_embd.weight" || model->tied_output) ++formats[t.format];
  }
  std::string shown = scheme;
  if (run::scheme_canonical(scheme) == "keep") {
    std::string list;
    for (const auto& [f, n] : formats) list += (list.empty() ? "" : "+") + f;
    shown = "keep (" + list + ")";
  }
  if (o.json) {
    print_json({{"command", "bench"}, {"model", mj}, {"shape", shape_name.empty() ? nlohmann::json(nullptr) : nlohmann::json(shape_name)},
                {"scheme", scheme}, {"scheme_canonical", run::scheme_canonical(scheme)}, {"weight_formats", formats},
                {"bits_per_weight", bpw}, {"all_weights_bits_per_weight", rep.bits_per_weight}, {"weight_bytes", model->weight_bytes()},
                {"quantize_seconds", rep.seconds}, {"simd_path", simd}, {"cpu", cpu_name()},
                {"peak_rss_bytes", peak_rss}, {"speed", r.to_json()}, {"decode_bandwidth", decode_bw},
                {"read_bandwidth", probe ? probe->to_json() : nlohmann::json(nullptr)}});
    return 0;
  }
  std::printf("| %-16s | %8s | %10s | %-20s | %5s | %7s | %6s | %18s | %9s |\n", "model", "params", "size", "scheme", "bpw",
              "threads", "test", "t/s (mean +/- sd)", "median");
  std::printf("| %-16s | %8s | %10s | %-20s | %5s | %7s | %6s | %18s | %9s |\n", "---", "---:", "---:", "---", "---:",
              "---:", "---:", "---:", "---:");
  for (int phase = 0; phase < 2; ++phase) {
    const run::RateStats& s = phase == 0 ? r.prefill : r.decode;
    const std::string test = (phase == 0 ? "pp" : "tg") + std::to_string(phase == 0 ? so.prefill : so.decode);
    char params[32], size[32], rate[48];
    std::snprintf(params, sizeof params, "%.2f M", double(n_params) / 1e6);
    std::snprintf(size, sizeof size, "%.2f MiB", double(model->weight_bytes()) / (1024.0 * 1024.0));
    std::snprintf(rate, sizeof rate, "%.2f +/- %.2f", s.mean, s.sd);
    std::printf("| %-16s | %8s | %10s | %-20s | %5.2f | %7d | %6s | %18s | %9.2f |\n", model_name.c_str(), params, size,
                shown.c_str(), bpw, so.threads, test.c_str(), rate, s.median);
  }
  // Decode against the memory bound: weights read per token x tokens/s, and that over the probe.
  const double mib = 1024.0 * 1024.0;
  std::printf("\ndecode weights read per token: %.2f MiB (layers %.2f + output head %.2f + one embedding row %.4f)"
              " x %.2f t/s = %.2f GB/s", double(decode_bytes.total()) / mib, double(decode_bytes.layers) / mib,
              double(decode_bytes.output) / mib, double(decode_bytes.embedding_row) / mib, r.decode.median,
              decode_bw["weight_gb_per_s"].get<double>());
  if (probe) {
    std::printf(", %.1f%% of the read bandwidth %.2f GB/s (best of %zu passes over %lld MiB, %d threads)\n",
                100.0 * decode_bw["fraction_of_read_bandwidth"].get<double>(), probe->best_bytes_per_second / 1e9,
                probe->pass_bytes_per_second.size(), (long long)bandwidth_mib, probe->threads);
  } else {
    std::printf(" (no bandwidth probe: --bandwidth-mib 0)\n");
  }
  std::fprintf(stderr, "[%s, simd path %s, %lld reps after %lld warm-up, peak RSS %.1f MiB]\n", cpu_name().c_str(),
               simd.c_str(), (long long)so.reps, (long long)so.warmup, double(peak_rss) / mib);
  return 0;
}

}  // namespace qbench::cli
