// qbench imatrix: the importance matrix (per linear, mean x^2 of every input channel) of a model
// over calibration windows of a text, written as llama.cpp's GGUF imatrix or qbench's JSON
// (quantizers/imatrix.h, docs/schemes.md).
#include <cstdio>

#include "engine/core/error.h"
#include "harness/calib_options.h"
#include "harness/commands.h"

namespace qbench::cli {

int cmd_imatrix(const std::vector<std::string>& args) {
  ModelOptions o;
  CalibOptions c;
  std::string out;
  po::options_description desc("qbench imatrix options");
  desc.add_options()
      ("text,f", po::value(&c.config.text_path)->value_name("FILE"), "calibration text (llama-imatrix's -f; same as --calib)")
      ("out,o", po::value(&out)->required()->value_name("FILE"), "output file, written atomically: llama.cpp's GGUF imatrix when it ends in .gguf (llama-quantize reads it), qbench's JSON otherwise");
  add_calib_options(desc, c, /*with_imatrix=*/false);
  add_model_options(desc, o);
  po::variables_map vm;
  if (!parse(args, desc,
             "usage: qbench imatrix [--model FILE] --calib FILE --out FILE.gguf|FILE.imatrix [--calib-samples N] [--calib-ctx T]\n\n"
             "Runs the model over N random windows of T tokens and writes, for every linear weight, the mean\n"
             "square of each input channel (llama.cpp's importance matrix), for qbench quantize --imatrix.",
             vm)) {
    return 0;
  }
  if (c.config.text_path.empty()) throw Error("no calibration text: give --calib FILE (or --text FILE)");
  set_threads(o.threads);
  const Model m = load_model_from(o);
  const quant::CalibWindows w = quant::make_calib_windows(m, c.config);
  const quant::Imatrix im = quant::make_imatrix(m, quant::collect_stats(m, w, {false, -1}), w);
  quant::write_imatrix(im, out);
  if (o.json) {
    print_json({{"command", "imatrix"}, {"model", model_json(m)}, {"source", im.source}, {"n_tokens", im.n_tokens},
                {"tensors", im.tensors.size()}, {"out", out}});
  } else {
    std::printf("imatrix of %zu tensors over %lld tokens (%s); wrote %s\n", im.tensors.size(), (long long)im.n_tokens,
                im.source.c_str(), out.c_str());
  }
  return 0;
}

}  // namespace qbench::cli
