#include "quantizers/scale_folding.h"

#include "engine/core/error.h"
#include "quantizers/calibration.h"

namespace qbench::quant {

std::vector<FoldSite> fold_sites(LayerWeights& L, int64_t layer) {
  const std::string p = "blk." + std::to_string(layer) + ".";
  std::vector<FoldSite> sites;
  sites.push_back({LinearInput::AttnIn, {{&L.wq, p + "attn_q"}, {&L.wk, p + "attn_k"}, {&L.wv, p + "attn_v"}},
                   &L.attn_norm, nullptr, nullptr, ""});
  if (L.wv.rows == L.wo.cols) {
    sites.push_back({LinearInput::AttnOut, {{&L.wo, p + "attn_output"}}, nullptr, &L.wv, &L.bv, ""});
  } else {
    sites.push_back({LinearInput::AttnOut, {{&L.wo, p + "attn_output"}}, nullptr, nullptr, nullptr,
                     "GQA: attn_v has " + std::to_string(L.wv.rows) + " rows, attn_output " +
                         std::to_string(L.wo.cols) + " columns"});
  }
  sites.push_back({LinearInput::FfnIn, {{&L.w_gate, p + "ffn_gate"}, {&L.w_up, p + "ffn_up"}}, &L.ffn_norm, nullptr,
                   nullptr, ""});
  sites.push_back({LinearInput::FfnDown, {{&L.w_down, p + "ffn_down"}}, nullptr, &L.w_up, nullptr, ""});
  return sites;
}

void fold_input_scales(const FoldSite& site, std::span<const double> s) {
  QB_ASSERT(site.can_fold() && !site.linears.empty());
  const int64_t cols = int64_t(s.size());
  for (const FoldLinear& l : site.linears) {
    QB_ASSERT(l.m->cols == cols);
    float* w = mutable_f32(*l.m);
    for (int64_t r = 0; r < l.m->rows; ++r) {
      for (int64_t j = 0; j < cols; ++j) w[r * cols + j] = float(double(w[r * cols + j]) * s[size_t(j)]);
    }
  }
  if (site.norm) {
    QB_ASSERT(int64_t(site.norm->size()) == cols);
    for (int64_t j = 0; j < cols; ++j) (*site.norm)[size_t(j)] = float(double((*site.norm)[size_t(j)]) / s[size_t(j)]);
    return;
  }
  QB_ASSERT(site.prev->rows == cols);
  float* pw = mutable_f32(*site.prev);
  const int64_t pc = site.prev->cols;
  for (int64_t j = 0; j < cols; ++j) {
    for (int64_t k = 0; k < pc; ++k) pw[j * pc + k] = float(double(pw[j * pc + k]) / s[size_t(j)]);
    if (site.prev_bias && !site.prev_bias->empty()) {
      (*site.prev_bias)[size_t(j)] = float(double((*site.prev_bias)[size_t(j)]) / s[size_t(j)]);
    }
  }
}

}  // namespace qbench::quant
