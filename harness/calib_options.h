// Calibration options shared by the commands that quantize (quantize, perplexity --scheme,
// imatrix): --calib FILE, --calib-samples N, --calib-ctx T, --calib-seed S, --imatrix FILE.
#pragma once

#include <optional>
#include <string>

#include "harness/cli.h"
#include "quantizers/calibration.h"

namespace qbench::cli {

struct CalibOptions {
  quant::CalibConfig config;
  std::string imatrix_path;
};

// `with_imatrix`: also offer --imatrix (not for `qbench imatrix` itself).
void add_calib_options(po::options_description& desc, CalibOptions& o, bool with_imatrix = true);
// nullopt when neither --calib nor --imatrix was given. Throws qbench::Error on a bad file.
std::optional<quant::Calibration> make_calibration(const Model& m, const CalibOptions& o);

}  // namespace qbench::cli
