#include "quantizers/calibration.h"

#include <tbb/parallel_for.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/core/utf8.h"
#include "engine/kernels/gemm_eigen.h"
#include "engine/kernels/matmul.h"
#include "engine/model/arch.h"

namespace qbench::quant {
namespace {

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

CalibWindows make_calib_windows(const std::vector<int32_t>& tokens, const CalibConfig& cfg, const std::string& what,
                                int32_t bos) {
  if (cfg.samples < 1) throw Error("--calib-samples must be at least 1, got " + std::to_string(cfg.samples));
  if (cfg.ctx < 2) throw Error("--calib-ctx must be at least 2, got " + std::to_string(cfg.ctx));
  const int64_t n = int64_t(tokens.size());
  if (n - 1 < cfg.ctx) {  // n < ctx + 1, without overflow for a huge --calib-ctx
    throw Error(what + ": calibration text has " + std::to_string(n) + " tokens, fewer than one window of --calib-ctx " +
                std::to_string(cfg.ctx) + " (+1); use a longer text or a smaller --calib-ctx");
  }
  const uint64_t span = uint64_t(n - cfg.ctx + 1);  // possible start positions
  // More windows than the text has distinct ones only repeats them (and --calib-samples 10^9
  // would run for days): what the text can provide is the bound.
  if (uint64_t(cfg.samples) > span) {
    throw Error(what + ": " + std::to_string(n) + " tokens give " + std::to_string(span) + " distinct windows of " +
                std::to_string(cfg.ctx) + " tokens; --calib-samples " + std::to_string(cfg.samples) +
                " would repeat windows (use at most " + std::to_string(span) + ", or a longer text)");
  }
  CalibWindows out;
  uint64_t state = cfg.seed;
  for (int64_t i = 0; i < cfg.samples; ++i) {
    const int64_t start = int64_t(splitmix64(state) % span);  // modulo bias < span / 2^64: negligible
    std::vector<int32_t> w(tokens.begin() + start, tokens.begin() + start + cfg.ctx);
    if (bos >= 0) w[0] = bos;
    out.windows.push_back(std::move(w));
  }
  out.description = what + ": " + std::to_string(cfg.samples) + " windows x " + std::to_string(cfg.ctx) +
                    " tokens of " + std::to_string(n) + ", seed " + std::to_string(cfg.seed);
  return out;
}

CalibWindows make_calib_windows(const Model& m, const CalibConfig& cfg) {
  const Tokenizer& tok = m.require_tokenizer();
  const std::string text = read_text_file(cfg.text_path);  // refuses empty, binary (not UTF-8), FIFOs
  const std::vector<int32_t> tokens = tok.encode(text, true);
  return make_calib_windows(tokens, cfg, cfg.text_path, tok.add_bos() ? tok.bos() : -1);
}

void InputStats::init(int64_t c, bool with_hessian) {
  cols = c;
  n_tokens = 0;
  sum_sq.assign(size_t(c), 0.0);
  sum_abs.assign(size_t(c), 0.0);
  absmax.assign(size_t(c), 0.0f);
  hessian.assign(with_hessian ? size_t(c * c) : 0, 0.0);
}

void InputStats::add(const float* x, int64_t n) {
  QB_ASSERT(cols > 0);
  for (int64_t t = 0; t < n; ++t) {
    const float* row = x + t * cols;
    for (int64_t j = 0; j < cols; ++j) {
      const double v = row[j];
      sum_sq[size_t(j)] += v * v;
      sum_abs[size_t(j)] += std::fabs(v);
      absmax[size_t(j)] = std::max(absmax[size_t(j)], std::fabs(row[j]));
    }
  }
  // XᵀX on the kernels' instruction set (a portable build would run baseline Eigen: 3x slower).
  if (!hessian.empty()) gram_add(default_isa(), x, n, cols, hessian.data());
  n_tokens += n;
}

CalibStats collect_stats(const Model& m, const CalibWindows& w, const CollectOptions& opt) {
  const ModelConfig& c = m.config;
  CalibStats s;
  s.stats.resize(size_t(c.n_layer + 1));
  for (int64_t l = 0; l <= c.n_layer; ++l) {
    s.stats[size_t(l)].resize(kLinearInputCount);
    if (opt.only_layer >= 0 && l != opt.only_layer) continue;
    auto& v = s.stats[size_t(l)];
    if (l < c.n_layer) {
      v[size_t(LinearInput::AttnIn)].init(c.n_embd, opt.hessian);
      v[size_t(LinearInput::AttnOut)].init(c.n_embd, opt.hessian);
      v[size_t(LinearInput::FfnIn)].init(c.n_embd, opt.hessian);
      v[size_t(LinearInput::FfnDown)].init(c.n_ff, opt.hessian);
    } else {
      v[size_t(LinearInput::Output)].init(c.n_embd, opt.hessian);
    }
  }
  int64_t max_len = 0;
  for (const auto& win : w.windows) max_len = std::max<int64_t>(max_len, int64_t(win.size()));
  if (max_len == 0) return s;
  Forward fwd(m, max_len);
  fwd.set_observer([&](int64_t layer, LinearInput in, const float* x, int64_t n, int64_t cols) {
    InputStats& st = s.stats[size_t(layer)][size_t(in)];
    if (st.cols == 0) return;  // not collected
    QB_ASSERT(st.cols == cols);
    st.add(x, n);
  });
  // The output layer sees only the positions whose logits are requested: ask for all of them
  // when output.weight is calibrated, else only the last (cheaper).
  const bool want_output = opt.only_layer < 0 || opt.only_layer == c.n_layer;
  std::vector<float> logits;
  for (const auto& win : w.windows) {
    fwd.reset();
    fwd.eval(win, logits, want_output ? 0 : int64_t(win.size()) - 1);
  }
  if (!want_output) s.stats[size_t(c.n_layer)][size_t(LinearInput::Output)] = InputStats{};
  return s;
}

std::optional<LinearSite> linear_site(const Model& m, const std::string& name) {
  if (name == kGgufOutput) return LinearSite{m.config.n_layer, LinearInput::Output};
  int layer = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1 || layer < 0 || layer >= m.config.n_layer) return std::nullopt;
  for (const LayerTensor& t : layer_tensors()) {
    if (t.matrix && t.gguf_name(layer) == name) return LinearSite{layer, t.input};
  }
  return std::nullopt;
}

Model f32_working_copy(const Model& m) {
  Model out = m;
  auto own = [&](Matrix& w) {
    auto buf = std::make_shared<std::vector<float>>(size_t(w.rows * w.cols));
    tbb::parallel_for(int64_t(0), w.rows, [&](int64_t r) { matrix_row(w, r, buf->data() + r * w.cols); });
    w = Matrix{TensorType::F32, w.rows, w.cols, reinterpret_cast<const uint8_t*>(buf->data())};
    out.storage.push_back(std::shared_ptr<const void>(buf, buf->data()));
  };
  for (LayerWeights& L : out.layers) {
    for (Matrix* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) own(*w);
  }
  if (!out.tied_output) own(out.output);
  return out;
}

float* mutable_f32(Matrix& w) {
  QB_ASSERT(w.type == TensorType::F32 && !w.empty());
  return const_cast<float*>(reinterpret_cast<const float*>(w.data));
}

Imatrix make_imatrix(const Model& m, const CalibStats& s, const CalibWindows& w) {
  Imatrix im;
  im.source = w.description;
  im.chunk_count = int64_t(w.windows.size());
  im.chunk_size = w.windows.empty() ? 0 : int64_t(w.windows.front().size());
  for (const auto& [name, wt] : m.linear_weights()) {
    const auto site = linear_site(m, name);
    if (!site) continue;
    const InputStats& st = s.at(site->layer, site->input);
    if (st.empty()) continue;
    std::vector<float> mean(static_cast<size_t>(st.cols)), sums(mean.size());
    for (int64_t j = 0; j < st.cols; ++j) {
      mean[size_t(j)] = float(st.mean_sq(j));
      sums[size_t(j)] = float(st.sum_sq[size_t(j)]);
    }
    im.tensors[name] = std::move(mean);
    im.sums[name] = std::move(sums);
    im.counts[name] = float(st.n_tokens);
    im.n_tokens = std::max(im.n_tokens, st.n_tokens);
  }
  return im;
}

}  // namespace qbench::quant
