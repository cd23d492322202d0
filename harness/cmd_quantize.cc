// qbench quantize: apply a scheme (or a llama.cpp mix) to a model and write a GGUF.
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "engine/core/error.h"
#include "engine/model/model_writer.h"
#include "harness/calib_options.h"
#include "harness/cli.h"
#include "harness/commands.h"
#include "quantizers/quantize_model.h"

namespace qbench::cli {

int cmd_quantize(const std::vector<std::string>& args) {
  ModelOptions o;
  std::string scheme, out, output_type, embd_type;
  std::vector<std::string> tensor_types;
  bool pure = false;
  CalibOptions calib_opts;
  po::options_description desc("qbench quantize options");
  desc.add_options()
      ("scheme,s", po::value(&scheme)->required()->value_name("S"),
       "scheme spec (rtn:int4,group=128 / nf4 / fp8 / fp16 / q4_0 ...) or llama.cpp mix (Q4_K_M ...); see qbench schemes")
      ("out,o", po::value(&out)->required()->value_name("FILE"), "output GGUF (written atomically)")
      ("pure", po::bool_switch(&pure), "no llama.cpp mix: every tensor in the scheme's type")
      ("tensor-type", po::value(&tensor_types)->value_name("PATTERN=S"),
       "scheme for tensors whose name matches the regex PATTERN (repeatable; first match wins)")
      ("output-tensor-type", po::value(&output_type)->value_name("S"), "scheme for output.weight")
      ("token-embedding-type", po::value(&embd_type)->value_name("S"), "scheme for token_embd.weight");
  add_calib_options(desc, calib_opts);
  add_model_options(desc, o);
  po::variables_map vm;
  if (!parse(args, desc,
             "usage: qbench quantize [--model FILE] --scheme S --out FILE.gguf [--pure] [--tensor-type PATTERN=S]...\n"
             "                       [--output-tensor-type S] [--token-embedding-type S] [--json]\n"
             "                       [--calib FILE [--calib-samples N] [--calib-ctx T] [--calib-seed S]] [--imatrix FILE]\n\n"
             "Quantizes every linear weight (and, for GGUF types, the token embedding) and writes a GGUF with the\n"
             "source's metadata. Files whose tensors all use ggml types load in llama.cpp. Prints per-tensor\n"
             "format, bits per weight, bytes, weight MSE, SQNR and time, and the totals.",
             vm)) {
    return 0;
  }
  set_threads(o.threads);
  quant::Recipe recipe = quant::make_recipe(scheme);
  if (recipe.kv_cache) {
    throw Error("scheme " + scheme + ": the KV cache (+kv=) is chosen when the model runs, not stored in a GGUF; "
                "quantize without it and give --kv-cache to perplexity/eval (or +kv= in qbench run/bench)");
  }
  recipe.pure = pure;
  for (const auto& t : tensor_types) recipe.rules.push_back(quant::parse_rule(t));
  if (!output_type.empty()) recipe.output = quant::parse_scheme(output_type);
  if (!embd_type.empty()) recipe.token_embd = quant::parse_scheme(embd_type);
  const Model m = load_model_from(o);
  quant::QuantizeReport rep;
  const std::optional<quant::Calibration> calib = make_calibration(m, calib_opts);
  const Model q = quant::quantize_model(m, recipe, &rep, calib ? &*calib : nullptr);
  gguf::Writer w = model_gguf_writer(q);
  w.set("general.file_type", gguf::Value::u32(quant::gguf_file_type(recipe, rep.all_ggml)));
  w.set("general.quantization_version", gguf::Value::u32(2));
  w.set("qbench.scheme", gguf::Value::str(recipe.ftype && !pure ? recipe.name : recipe.scheme.to_string()));
  const size_t file_bytes = w.write(out);  // out may be a device or FIFO: no file_size()
  if (o.json) {
    nlohmann::json j = rep.to_json();
    j["command"] = "quantize";
    j["model"] = model_json(m);
    j["scheme"] = recipe.name;
    j["scheme_canonical"] = recipe.scheme.to_string();
    j["pure"] = pure;
    j["out"] = out;
    j["file_bytes"] = file_bytes;
    j["threads"] = thread_count();
    j["model_params"] = m.n_params();
    j["model_bytes"] = m.weight_bytes();
    print_json(j);
    return 0;
  }
  std::printf("%-28s %-16s %10s %6s %10s %11s %8s %8s  %s\n", "tensor", "format", "shape", "bpw", "bytes", "mse",
              "sqnr_dB", "ms", "note");
  for (const auto& t : rep.tensors) {
    const std::string shape = std::to_string(t.cols) + "x" + std::to_string(t.rows);
    std::printf("%-28s %-16s %10s %6.3f %10zu %11.4g %8.2f %8.2f  %s\n", t.name.c_str(), t.format.c_str(), shape.c_str(),
                t.bits_per_weight, t.bytes, t.mse, std::isfinite(t.sqnr_db) ? t.sqnr_db : INFINITY, 1e3 * t.seconds,
                t.note.c_str());
  }
  for (const auto& n : rep.notes) std::printf("note: %s\n", n.c_str());
  for (const auto& f : rep.fallbacks) std::printf("fallback: %s\n", f.c_str());
  if (!rep.calibration.empty()) {
    std::printf("calibration: %s; observing %.3f s, transform %.3f s\n", rep.calibration.c_str(), rep.calib_seconds,
                rep.transform_seconds);
  }
  if (!rep.imatrix.empty()) std::printf("imatrix: %s\n", rep.imatrix.c_str());
  std::printf("model: %lld parameters, %zu bytes\n", (long long)m.n_params(), m.weight_bytes());
  std::printf("total: %lld weights, %zu bytes, %.4f bits/weight, quantized in %.3f s; wrote %s (%zu bytes%s)\n",
              (long long)rep.n_weights, rep.bytes, rep.bits_per_weight, rep.seconds, out.c_str(), file_bytes,
              rep.all_ggml ? ", llama.cpp-loadable types" : ", uses qbench-only formats");
  return 0;
}

}  // namespace qbench::cli
