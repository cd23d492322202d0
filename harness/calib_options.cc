#include "harness/calib_options.h"

namespace qbench::cli {

void add_calib_options(po::options_description& desc, CalibOptions& o, bool with_imatrix) {
  desc.add_options()
      ("calib", po::value(&o.config.text_path)->value_name("FILE"),
       "calibration text for calibration-based schemes (gptq, awq, smoothquant) and the importance matrix")
      ("calib-samples", po::value(&o.config.samples)->default_value(128)->value_name("N"), "calibration windows")
      ("calib-ctx", po::value(&o.config.ctx)->default_value(256)->value_name("T"), "tokens per calibration window")
      ("calib-seed", po::value(&o.config.seed)->default_value(0)->value_name("S"), "seed of the window positions");
  if (with_imatrix) {
    desc.add_options()("imatrix", po::value(&o.imatrix_path)->value_name("FILE"),
                       "importance matrix for the GGUF block types q4_0..q5_1, q2_K..q6_K (and mixes) and rtn clip=mse: llama.cpp's GGUF or legacy .dat imatrix (llama-imatrix), or qbench imatrix's file");
  }
}

std::optional<quant::Calibration> make_calibration(const Model& m, const CalibOptions& o) {
  if (o.config.text_path.empty() && o.imatrix_path.empty()) return std::nullopt;
  quant::Calibration c;
  if (!o.config.text_path.empty()) c.windows = quant::make_calib_windows(m, o.config);
  if (!o.imatrix_path.empty()) c.imatrix = quant::read_imatrix(o.imatrix_path);
  return c;
}

}  // namespace qbench::cli
