// Quantization-aware training of a whole model (the `qat` scheme, quantizers/qat_spec.h): the
// post-training start, the trainer with the fake quantizer and the FP teacher, checkpoints, and
// the packed result. Used by `qbench qat` and by `qbench run` for qat:... schemes.
//
// Data: by default the items of the recipe's generators at its training seed (never evaluation
// items; models/default.json), tokenized with the model's own tokenizer; or windows of a text.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "engine/model/model.h"
#include "quantizers/calibration.h"
#include "quantizers/qat_spec.h"
#include "quantizers/quantize_model.h"

namespace qbench {

struct QatRunOptions {
  std::string data_text;  // a text to take windows of; empty: data_path
  std::string data_path;  // a file of such a text; empty: the recipe's generators
  std::string recipe_path = QBENCH_SOURCE_DIR "/models/default.json";
  std::string checkpoint;       // empty: no checkpoints (and no resume)
  int64_t checkpoint_every = 100;
  bool resume = false;          // continue from `checkpoint` when it exists
  std::string log_path;         // CSV of the steps (empty: none); appended when resuming
  int64_t max_steps = -1;       // stop after this many more steps (< 0: no limit)
  double minutes = 0;           // stop after this much wall time (0: no limit)
  std::function<void(const std::string&)> say;  // progress lines (may be empty)
  const std::atomic<bool>* stop = nullptr;      // set (e.g. by SIGINT): stop at the next step
};

struct QatOutcome {
  Model model;                    // the PTQ model with the trained packed weights and norms
  quant::QuantizeReport ptq;      // of the post-training start
  int64_t step = 0, total_steps = 0;
  bool finished = false;
  double loss = 0;                // of the last step
  int64_t train_tokens = 0;       // predicted positions over all steps, resumed runs included
  double train_seconds = 0;       // wall time of the training, resumed runs included
};

// Throws qbench::Error for a model the trainer cannot take, a tensor the format cannot hold,
// bad data, or a checkpoint of another run. `calib` is needed for init=gptq/awq.
QatOutcome run_qat(const Model& m, const quant::QatSettings& s, const QatRunOptions& o,
                   const quant::Calibration* calib = nullptr);

// The hash of what a run of run_qat with these options trains on (the text, or the recipe file),
// for results keys.
std::string qat_data_sha256(const QatRunOptions& o);

}  // namespace qbench
