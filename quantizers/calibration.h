// Calibration, phase one of calibration-based PTQ (STYLE.md 5: observe, then convert).
//
// The FP model runs over N random windows of T tokens of a calibration text; an observer on
// Forward (engine/model/forward.h) streams every linear's input into per-input statistics, never
// keeping the activations themselves:
//   - sum_sq[j]  = Σ_t x[t,j]^2      (per input channel; mean = importance matrix / AWQ-free energy)
//   - sum_abs[j] = Σ_t |x[t,j]|      (AWQ's activation magnitude)
//   - absmax[j]  = max_t |x[t,j]|    (SmoothQuant)
//   - hessian    = Σ_t x[t,:]^T x[t,:], cols x cols, double, full symmetric (GPTQ, AWQ's
//                  output-error loss ||(Ŵ - W) X||² = Σ_rows e H e^T)
// Linears that read the same activation (attn_q/k/v, ffn_gate/up) share one InputStats.
//
// Windows: start positions drawn with a splitmix64 stream seeded by `seed` (portable: the same
// windows on every platform), uniform in [0, n_tokens - T]; the first token of each window is
// replaced by BOS when the vocabulary adds one, as llama.cpp's perplexity does with its chunks.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/model/forward.h"
#include "engine/model/model.h"
#include "quantizers/imatrix.h"

namespace qbench::quant {

struct CalibConfig {
  std::string text_path;  // calibration text (UTF-8)
  int64_t samples = 128;  // windows
  int64_t ctx = 256;      // tokens per window
  uint64_t seed = 0;
};

struct CalibWindows {
  std::vector<std::vector<int32_t>> windows;
  std::string description;  // "FILE: N windows x T tokens of M, seed S"
};

// Tokenizes `cfg.text_path` with the model's tokenizer and draws the windows. Throws
// qbench::Error naming the file when it has fewer than ctx + 1 tokens, or samples/ctx < 1.
CalibWindows make_calib_windows(const Model& m, const CalibConfig& cfg);
// Same from already-tokenized text (`what` names the source in messages).
CalibWindows make_calib_windows(const std::vector<int32_t>& tokens, const CalibConfig& cfg, const std::string& what,
                                int32_t bos);

struct InputStats {
  int64_t cols = 0;
  int64_t n_tokens = 0;
  std::vector<double> sum_sq, sum_abs;
  std::vector<float> absmax;
  std::vector<double> hessian;  // cols*cols row-major; empty when not collected

  void init(int64_t cols, bool with_hessian);
  bool empty() const { return n_tokens == 0; }
  void add(const float* x, int64_t n_tokens);  // x row-major [n_tokens x cols]
  double mean_sq(int64_t j) const { return n_tokens ? sum_sq[size_t(j)] / double(n_tokens) : 0.0; }
  double mean_abs(int64_t j) const { return n_tokens ? sum_abs[size_t(j)] / double(n_tokens) : 0.0; }
  double h(int64_t i, int64_t j) const { return hessian[size_t(i * cols + j)]; }
};

struct CalibStats {
  // stats[layer][LinearInput] for layers 0..n_layer-1; stats[n_layer][Output] for output.weight.
  std::vector<std::vector<InputStats>> stats;
  const InputStats& at(int64_t layer, LinearInput in) const { return stats[size_t(layer)][size_t(in)]; }
};

struct CollectOptions {
  bool hessian = true;
  int64_t only_layer = -1;  // >= 0: collect only that layer's inputs (n_layer = output.weight)
};

// Runs `m` over every window (one after the other; each Forward::eval is parallel inside, so
// the sums are accumulated in a fixed order and do not depend on the thread count).
CalibStats collect_stats(const Model& m, const CalibWindows& w, const CollectOptions& opt);

// Which activation a linear reads: the layer index (n_layer for output.weight) and the input,
// from its GGUF name ("blk.3.ffn_up.weight"); nullopt for token_embd or an unknown name.
struct LinearSite {
  int64_t layer;
  LinearInput input;
};
std::optional<LinearSite> linear_site(const Model& m, const std::string& tensor_name);

// The importance matrix (quantizers/imatrix.h) of the linears in `s`: per input column the mean
// of x_j^2, with the sums and token counts kept for llama.cpp's GGUF form; `w` gives the source
// and the chunk count and size recorded with it.
Imatrix make_imatrix(const Model& m, const CalibStats& s, const CalibWindows& w);

// A copy of `m` whose linears (and untied output) are owned F32 buffers kept in its storage:
// the working model of a PrepareFn (AWQ, SmoothQuant), which rewrites them through mutable_f32.
Model f32_working_copy(const Model& m);
// Writable view of an F32 matrix of a working copy (asserts F32; never call it on a Model
// whose bytes belong to a file mapping or to another model).
float* mutable_f32(Matrix& w);

// Everything calibration-based schemes may use; quantize_model takes it optionally.
struct Calibration {
  CalibWindows windows;           // empty: no calibration text
  std::optional<Imatrix> imatrix; // given with --imatrix (otherwise derived from the windows)
};

}  // namespace qbench::quant
