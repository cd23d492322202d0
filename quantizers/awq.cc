// AWQ (Lin et al., 2023, "AWQ: Activation-aware Weight Quantization for LLM Compression and
// Acceleration"), following mit-han-lab/llm-awq (auto_scale.py, auto_clip.py), then RTN into
// qbench's integer formats.
//
// Per layer and per shared input (calibration.h's LinearInput), with the FP model's statistics:
//   scale search: for α in {0, 1/grid, ..., (grid-1)/grid}: s_j = max(mean|x_j|^α, 1e-4),
//     s /= sqrt(max(s) * min(s)); loss(α) = Σ over the linears reading x of
//     ||Q(W diag(s)) diag(s)^-1 X - W X||² = Σ_rows e H e^T  (e = Q(W diag s)/s - W, H = X^T X),
//     computed from the Hessian instead of stored activations. α = 0 (s = 1) is plain RTN, so the
//     chosen scales never increase this loss.
//   folding (exact in FP, quantizers/scale_folding.h): W[:, j] *= s_j for every linear reading x,
//     and the producer of x is divided by s: attn_norm for attn_q/k/v, ffn_norm for ffn_gate/up,
//     the rows of attn_v (and its bias) for attn_output (only when n_head_kv == n_head: with GQA
//     one v row feeds several heads' columns, llm-awq skips it too), the rows of ffn_up for
//     ffn_down.
//   clip search (clip=true; not for attn_q/attn_k, as llm-awq): per row and group, clamp to
//     ±r·max|w| for r = 1, 1 - 1/grid, ..., > 0.5 minimising the group's output error
//     e_g H'_gg e_g^T in the scaled coordinates (H' = S^-1 H S^-1); the FP weights are clamped.
//   Then every linear is RTN-quantized into the format (the clamped range is the min/max rule's).
//
// Differences from llm-awq: the loss is the linears' output error (the brief's objective), not
// the whole attention / MLP block's output; symmetric codes by default (sym=false for llm-awq's
// zero points), the same default as rtn so the two compare on one format.
#include <tbb/parallel_for.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <string>

#include "engine/core/error.h"
#include "quantizers/calibration.h"
#include "quantizers/int_rules.h"
#include "quantizers/registry.h"
#include "quantizers/scale_folding.h"

namespace qbench::quant {
namespace {

using RowMatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct Linear {
  Matrix* m;
  std::string name;
  bool clip;  // llm-awq skips q/k in the clip search
  const SchemeSpec* spec = nullptr;  // its awq spec; nullptr: quantized by another scheme or kept
};

// The integer format of an awq spec, after checking that it fits the weight (so that no search
// runs on a shape the final quantization would reject).
IntFormat checked_format(const SchemeSpec& spec, const Matrix& w, const std::string& name) {
  const IntFormat f = int_format_of_spec(spec);
  const int64_t unit = f.per_row() ? type_traits(int_format_type(f)).block_size : f.group;
  if (w.cols % unit != 0) {
    throw Error(name + ".weight: " + spec.to_string() + ": group " + std::to_string(unit) +
                " does not divide the row length " + std::to_string(w.cols) +
                " (give it group=channel with --tensor-type)");
  }
  return f;
}

// Σ_rows e H e^T for e = what - W (row-major rows x cols), H cols x cols.
double output_error(const std::vector<float>& approx, const float* w, int64_t rows, int64_t cols, const RowMatD& H) {
  RowMatD E(rows, cols);
  for (int64_t i = 0; i < rows * cols; ++i) E.data()[i] = double(approx[size_t(i)]) - double(w[i]);
  return (E * H).cwiseProduct(E).sum();
}

// The loss of scales `s` over the site's linears, original coordinates.
double scaled_loss(const std::vector<Linear>& lins, const std::vector<double>& s, const RowMatD& H) {
  double loss = 0.0;
  for (const Linear& l : lins) {
    if (!l.spec) continue;
    const IntFormat f = int_format_of_spec(*l.spec);
    const int64_t rows = l.m->rows, cols = l.m->cols;
    const float* w = mutable_f32(*l.m);
    std::vector<float> ws(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) ws[size_t(r * cols + c)] = float(double(w[r * cols + c]) * s[size_t(c)]);
    }
    rtn_fake_quant(f, false, ws.data(), rows, cols, ws.data());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) ws[size_t(r * cols + c)] = float(double(ws[size_t(r * cols + c)]) / s[size_t(c)]);
    }
    loss += output_error(ws, w, rows, cols, H);
  }
  return loss;
}

// Clamp search for one linear whose input Hessian (in its current coordinates) is H.
void search_clip(Linear& l, const RowMatD& H) {
  const IntFormat f = int_format_of_spec(*l.spec);
  const int grid = l.spec->get_int("grid");
  const int64_t rows = l.m->rows, cols = l.m->cols;
  const int64_t g = f.per_row() ? cols : f.group;
  float* w = mutable_f32(*l.m);
  const int max_step = grid / 2;  // shrink at most to 0.5 (llm-awq's max_shrink)
  tbb::parallel_for(int64_t(0), rows, [&](int64_t r) {
    std::vector<float> clamped(static_cast<size_t>(g)), q(static_cast<size_t>(g));
    Eigen::VectorXd e(g);
    for (int64_t c0 = 0; c0 < cols; c0 += g) {
      float* x = w + r * cols + c0;
      float amax = 0.0f;
      for (int64_t j = 0; j < g; ++j) amax = std::max(amax, std::fabs(x[j]));
      const auto Hg = H.block(c0, c0, g, g);
      double best = INFINITY;
      float best_max = amax;
      for (int step = 0; step < max_step; ++step) {
        const float mv = amax * (1.0f - float(step) / float(grid));
        for (int64_t j = 0; j < g; ++j) clamped[size_t(j)] = std::clamp(x[j], -mv, mv);
        int_fake_quant(f, clamped.data(), g, rtn_group_params(f, clamped.data(), g, false), q.data());
        for (int64_t j = 0; j < g; ++j) e[j] = double(q[size_t(j)]) - double(x[j]);
        const double err = e.dot(Hg * e);
        if (err < best) {  // strict: ties keep the larger range
          best = err;
          best_max = mv;
        }
      }
      for (int64_t j = 0; j < g; ++j) x[j] = std::clamp(x[j], -best_max, best_max);
    }
  });
}

void awq_prepare(Model& m, const SpecLookup& spec_of, const CalibStats& stats, PrepareNotes& notes) {
  const ModelConfig& c = m.config;
  for (int64_t li = 0; li < c.n_layer; ++li) {
    struct Site {
      FoldSite fold;
      std::vector<Linear> lins;
    };
    std::vector<Site> sites;
    for (FoldSite& f : fold_sites(c, m.layers[size_t(li)], li)) {
      if (!f.no_producer.empty()) notes.fallbacks.push_back(f.linears.front().name + ": no scale (" + f.no_producer + "); clip only");
      Site site{f, {}};
      for (const FoldLinear& l : f.linears) {
        // llm-awq skips q/k in the clip search.
        const bool clip = !l.name.ends_with("attn_q") && !l.name.ends_with("attn_k");
        site.lins.push_back({l.m, l.name, clip});
      }
      sites.push_back(std::move(site));
    }

    for (Site& site : sites) {
      // The site's awq tensors; the grid of the first one drives the scale search.
      int grid = 0;
      for (Linear& l : site.lins) {
        const SchemeSpec* sp = spec_of(l.name + ".weight");
        if (!sp || sp->method != "awq") continue;
        checked_format(*sp, *l.m, l.name);
        l.spec = sp;
        if (grid == 0) grid = sp->get_int("grid");
      }
      if (grid == 0) continue;  // no awq tensor reads this input
      const InputStats& st = stats.at(li, site.fold.input);
      QB_ASSERT(!st.hessian.empty());
      const int64_t cols = st.cols;
      const std::string& first = site.lins.front().name;
      if (st.n_tokens == 0) {
        notes.fallbacks.push_back(first + ": no calibration tokens, RTN");
        continue;
      }
      RowMatD H = Eigen::Map<const RowMatD>(st.hessian.data(), cols, cols) / double(st.n_tokens);
      std::vector<double> s(size_t(cols), 1.0);
      const bool can_scale = site.fold.can_fold();
      bool any_input = false;
      for (int64_t j = 0; j < cols; ++j) any_input = any_input || st.mean_abs(j) > 0;
      if (can_scale && any_input) {
        double best = scaled_loss(site.lins, s, H);
        int best_g = 0;
        std::vector<double> cand(static_cast<size_t>(cols));
        for (int gi = 1; gi < grid; ++gi) {
          const double alpha = double(gi) / double(grid);
          double mx = 0, mn = INFINITY;
          for (int64_t j = 0; j < cols; ++j) {
            cand[size_t(j)] = std::max(std::pow(st.mean_abs(j), alpha), 1e-4);
            mx = std::max(mx, cand[size_t(j)]);
            mn = std::min(mn, cand[size_t(j)]);
          }
          for (auto& v : cand) v /= std::sqrt(mx * mn);
          const double loss = scaled_loss(site.lins, cand, H);
          if (loss < best) {
            best = loss;
            best_g = gi;
            s = cand;
          }
        }
        notes.decisions.push_back(first + ": alpha " + std::to_string(double(best_g) / grid));
        // Fold: producer / s, consumers * s (exact in FP up to float rounding).
        fold_input_scales(site.fold, s);
      }
      if (any_input) {
        // Inputs are now x / s: H' = S^-1 H S^-1.
        for (int64_t i = 0; i < cols; ++i) {
          for (int64_t j = 0; j < cols; ++j) H(i, j) /= s[size_t(i)] * s[size_t(j)];
        }
        for (Linear& l : site.lins) {
          if (l.clip && l.spec && l.spec->get_bool("clip")) search_clip(l, H);
        }
      }
    }
  }
}

PackedTensor quantize_awq_rtn(const WeightView& w, const SchemeSpec& spec, const CalibContext&) {
  const SchemeSpec rtn = parse_scheme("rtn:int" + spec.get("bits") + ",group=" + spec.get("group") + ",sym=" +
                                      spec.get("sym"));
  return registry().method(rtn).quantize(w, rtn);
}

PackedTensor quantize_awq_uncalibrated(const WeightView& w, const SchemeSpec&) {
  throw Error(std::string(w.name) + ": awq needs calibration data (qbench quantize --calib FILE)");
}

}  // namespace

void register_awq(Registry& r) {
  r.add(Method{
      "awq",
      "AWQ (Lin et al. 2023): activation-aware per-channel scales folded into the previous norm/linear, clip search, "
      "then RTN into N-bit integers (needs --calib)",
      {
          {"bits", "4", "bits per code", {}, 2, 8},
          {"group", "128", "values per scale along the row: 32, 64, 128, channel", {"32", "64", "128", "channel"}},
          {"sym", "true", "true: symmetric codes; false: min/max range with a uint8 zero point", {"true", "false"}},
          {"grid", "20", "alpha grid points in [0, 1) (and clip ratios: 1 - i/grid down to 0.5)", {}, 2, 100},
          {"clip", "true", "search a clipping range per group on the calibration output error", {"true", "false"}},
      },
      "bits",
      "int",
      quantize_awq_uncalibrated,
      std::nullopt,
      CalibUse::Required,
      quantize_awq_rtn,
      awq_prepare,
  });
}

}  // namespace qbench::quant
