// W8A8 schemes: int8 weights per output channel on int8 activations quantized per token at run
// time (engine/formats/w8a8.h; the kernel is an exact int32 dot product per row, prefill and
// decode alike).
//
// `w8a8`: round-to-nearest, no calibration: the baseline SmoothQuant improves on.
//
// `smoothquant` (Xiao et al. 2023, "SmoothQuant: Accurate and Efficient Post-Training
// Quantization for Large Language Models"), following mit-han-lab/smoothquant smooth.py
// (smooth_ln_fcs): per input channel j of every smoothable input x (calibration.h's LinearInput)
//   s_j = max|X_j|^alpha / max|W_:,j|^(1 - alpha)
// with max|X_j| over the calibration tokens of the FP model and max|W_:,j| over every linear
// reading x (clamped below at 1e-5 like the reference, and s_j >= 1e-5). Then x / s is folded into
// the producer and W diag(s) into the linears (quantizers/scale_folding.h, exact in FP): the
// activation outliers that make per-token int8 scales coarse move into the weights, whose
// per-channel scales absorb them better. Finally every linear is quantized as `w8a8`.
// Smoothed inputs: attn_q/k/v (attn_norm), ffn_gate/up (ffn_norm), as the reference for
// Llama; and, beyond it, attn_output (rows of attn_v; with GQA one scale per v row, shared by the
// columns of the heads reading it, max|X| and max|W| taken over those columns) and ffn_down (rows
// of ffn_up). Not smoothed: output.weight (its producer, output_norm, could take it, but the
// reference keeps lm_head in FP16; here it is plain W8A8 like every other tensor of the scheme).
// Channels never non-zero in the calibration text keep s = 1 (the reference's clamp would give
// them s = 1e-5, i.e. x 1e5 should they ever fire later).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "engine/core/error.h"
#include "engine/formats/w8a8.h"
#include "quantizers/calibration.h"
#include "quantizers/packing.h"
#include "quantizers/registry.h"
#include "quantizers/scale_folding.h"

namespace qbench::quant {
namespace {

PackedTensor quantize_w8a8(const WeightView& w, const SchemeSpec&) {
  if (w.cols > kW8A8MaxCols) {
    throw Error(std::string(w.name) + ": rows of " + std::to_string(w.cols) + " values are too long for w8a8_int8 " +
                "(its int32 dot product holds at most " + std::to_string(kW8A8MaxCols) + ")");
  }
  return pack_with_reference(w, type_traits(TensorType::W8A8_INT8));
}

PackedTensor quantize_smoothquant(const WeightView& w, const SchemeSpec& spec, const CalibContext&) {
  return quantize_w8a8(w, spec);
}

PackedTensor quantize_smoothquant_uncalibrated(const WeightView& w, const SchemeSpec&) {
  throw Error(std::string(w.name) + ": smoothquant needs calibration data (qbench quantize --calib FILE)");
}

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3g", v);
  return b;
}

void smoothquant_prepare(Model& m, const SpecLookup& spec_of, const CalibStats& stats, PrepareNotes& notes) {
  for (int64_t li = 0; li < m.config.n_layer; ++li) {
    for (const FoldSite& site : fold_sites(m.config, m.layers[size_t(li)], li)) {
      const SchemeSpec* spec = nullptr;  // the first smoothquant tensor reading this input
      for (const FoldLinear& l : site.linears) {
        const SchemeSpec* sp = spec_of(l.name + ".weight");
        if (sp && sp->method == "smoothquant") {
          spec = sp;
          break;
        }
      }
      if (!spec) continue;
      const std::string& name = site.linears.front().name;
      const bool shared = !site.can_fold() && site.can_fold_shared();
      if (!site.can_fold() && !shared) {
        notes.fallbacks.push_back(name + ": not smoothed (" + site.no_producer + ")");
        continue;
      }
      const InputStats& st = stats.at(li, site.input);
      if (st.n_tokens == 0) {
        notes.fallbacks.push_back(name + ": no calibration tokens, not smoothed");
        continue;
      }
      const double alpha = spec->get_double("alpha");
      const int64_t cols = st.cols;
      // Scale groups: one per input channel, or (GQA) one per attn_v row, shared by the columns of
      // the heads that read it: max|X| and max|W| are taken over the group's columns.
      const int64_t n_groups = shared ? site.shared_prev->rows : cols;
      auto group_of = [&](int64_t j) { return shared ? site.prev_row_of[size_t(j)] : j; };
      std::vector<double> gx(size_t(n_groups), 0.0), gw(size_t(n_groups), 0.0);
      for (const FoldLinear& l : site.linears) {
        const float* w = mutable_f32(*l.m);
        for (int64_t r = 0; r < l.m->rows; ++r) {
          for (int64_t j = 0; j < cols; ++j) {
            double& v = gw[size_t(group_of(j))];
            v = std::max(v, double(std::fabs(w[r * cols + j])));
          }
        }
      }
      for (int64_t j = 0; j < cols; ++j) {
        double& v = gx[size_t(group_of(j))];
        v = std::max(v, double(st.absmax[size_t(j)]));
      }
      std::vector<double> gs(size_t(n_groups), 1.0);
      int64_t dead = 0;
      for (int64_t g = 0; g < n_groups; ++g) {
        if (gx[size_t(g)] > 0) {
          gs[size_t(g)] = std::max(std::pow(gx[size_t(g)], alpha) / std::pow(std::max(gw[size_t(g)], 1e-5), 1.0 - alpha), 1e-5);
        } else {
          ++dead;
        }
      }
      std::vector<double> s(static_cast<size_t>(cols));
      double xmax_before = 0, xmax_after = 0, smin = INFINITY, smax = 0;
      for (int64_t j = 0; j < cols; ++j) {
        s[size_t(j)] = gs[size_t(group_of(j))];
        xmax_before = std::max(xmax_before, double(st.absmax[size_t(j)]));
        xmax_after = std::max(xmax_after, st.absmax[size_t(j)] / s[size_t(j)]);
        smin = std::min(smin, s[size_t(j)]);
        smax = std::max(smax, s[size_t(j)]);
      }
      if (shared) {
        fold_input_scales_shared(site, s);
      } else {
        fold_input_scales(site, s);
      }
      notes.decisions.push_back(name + ": alpha " + fmt(alpha) + ", s in [" + fmt(smin) + ", " + fmt(smax) + "], max|x| " +
                      fmt(xmax_before) + " -> " + fmt(xmax_after) +
                      (shared ? " (GQA: one scale per attn_v row, shared by " +
                                    std::to_string(m.config.n_head / m.config.n_head_kv) + " heads)"
                              : "") +
                      (dead ? ", " + std::to_string(dead) + (shared ? " groups" : " channels") + " never active (s = 1)" : ""));
    }
  }
}

}  // namespace

void register_smoothquant(Registry& r) {
  r.add(Method{"w8a8",
               "W8A8 without smoothing: int8 weights per output channel (fp32 scale) times int8 activations "
               "quantized per token at run time, exact int32 dot products (the baseline of smoothquant)",
               {}, "", "", quantize_w8a8, std::nullopt});
  r.add(Method{
      "smoothquant",
      "SmoothQuant (Xiao et al. 2023): per-channel scales s = max|X|^alpha / max|W|^(1-alpha) move activation "
      "outliers into the weights (folded into the norms / previous linears), then W8A8 (needs --calib)",
      {{"alpha", "0.5", "migration strength in [0, 1]: 0 leaves activations alone, 1 moves all of max|X| into W", {}, 0, 1,
        true}},
      "",
      "",
      quantize_smoothquant_uncalibrated,
      std::nullopt,
      CalibUse::Required,
      quantize_smoothquant,
      smoothquant_prepare,
  });
}

}  // namespace qbench::quant
