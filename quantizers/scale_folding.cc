#include "quantizers/scale_folding.h"

#include "engine/core/error.h"
#include "quantizers/calibration.h"

namespace qbench::quant {

std::vector<FoldSite> fold_sites(const ModelConfig& c, LayerWeights& L, int64_t layer) {
  const std::string p = "blk." + std::to_string(layer) + ".";
  std::vector<FoldSite> sites;
  sites.push_back({LinearInput::AttnIn, {{&L.wq, p + "attn_q"}, {&L.wk, p + "attn_k"}, {&L.wv, p + "attn_v"}},
                   &L.attn_norm, nullptr, nullptr, ""});
  if (L.wv.rows == L.wo.cols) {
    sites.push_back({LinearInput::AttnOut, {{&L.wo, p + "attn_output"}}, nullptr, &L.wv, &L.bv, ""});
  } else {
    FoldSite site{LinearInput::AttnOut, {{&L.wo, p + "attn_output"}}, nullptr, nullptr, nullptr,
                  "GQA: attn_v has " + std::to_string(L.wv.rows) + " rows, attn_output " +
                      std::to_string(L.wo.cols) + " columns"};
    const int64_t hd = c.head_dim();
    if (c.n_head_kv > 0 && c.n_head % c.n_head_kv == 0 && L.wo.cols == c.n_head * hd && L.wv.rows == c.n_head_kv * hd) {
      const int64_t group = c.n_head / c.n_head_kv;
      site.shared_prev = &L.wv;
      site.shared_prev_bias = &L.bv;
      for (int64_t j = 0; j < L.wo.cols; ++j) site.prev_row_of.push_back((j / hd / group) * hd + j % hd);
    }
    sites.push_back(std::move(site));
  }
  sites.push_back({LinearInput::FfnIn, {{&L.w_gate, p + "ffn_gate"}, {&L.w_up, p + "ffn_up"}}, &L.ffn_norm, nullptr,
                   nullptr, ""});
  sites.push_back({LinearInput::FfnDown, {{&L.w_down, p + "ffn_down"}}, nullptr, &L.w_up, nullptr, ""});
  return sites;
}

namespace {

void scale_consumers(const FoldSite& site, std::span<const double> s) {
  const int64_t cols = int64_t(s.size());
  for (const FoldLinear& l : site.linears) {
    QB_ASSERT(l.m->cols == cols);
    float* w = mutable_f32(*l.m);
    for (int64_t r = 0; r < l.m->rows; ++r) {
      for (int64_t j = 0; j < cols; ++j) w[r * cols + j] = float(double(w[r * cols + j]) * s[size_t(j)]);
    }
  }
}

// Rows of `prev` (and `bias`) divided by `row_scale`.
void scale_producer_rows(Matrix& prev, std::vector<float>* bias, std::span<const double> row_scale) {
  QB_ASSERT(prev.rows == int64_t(row_scale.size()));
  float* pw = mutable_f32(prev);
  const int64_t pc = prev.cols;
  for (int64_t j = 0; j < prev.rows; ++j) {
    for (int64_t k = 0; k < pc; ++k) pw[j * pc + k] = float(double(pw[j * pc + k]) / row_scale[size_t(j)]);
    if (bias && !bias->empty()) (*bias)[size_t(j)] = float(double((*bias)[size_t(j)]) / row_scale[size_t(j)]);
  }
}

}  // namespace

void fold_input_scales(const FoldSite& site, std::span<const double> s) {
  QB_ASSERT(site.can_fold() && !site.linears.empty());
  const int64_t cols = int64_t(s.size());
  scale_consumers(site, s);
  if (site.norm) {
    QB_ASSERT(int64_t(site.norm->size()) == cols);
    for (int64_t j = 0; j < cols; ++j) (*site.norm)[size_t(j)] = float(double((*site.norm)[size_t(j)]) / s[size_t(j)]);
    return;
  }
  QB_ASSERT(site.prev->rows == cols);
  scale_producer_rows(*site.prev, site.prev_bias, s);
}

void fold_input_scales_shared(const FoldSite& site, std::span<const double> s) {
  QB_ASSERT(site.can_fold_shared() && !site.linears.empty() && site.prev_row_of.size() == s.size());
  std::vector<double> row_scale(size_t(site.shared_prev->rows), 0.0);
  for (size_t j = 0; j < s.size(); ++j) {
    double& r = row_scale[size_t(site.prev_row_of[j])];
    QB_ASSERT(r == 0.0 || r == s[j]);
    r = s[j];
  }
  for (double& r : row_scale) {
    if (r == 0.0) r = 1.0;  // a row no column reads (cannot happen for GQA's mapping)
  }
  scale_consumers(site, s);
  scale_producer_rows(*site.shared_prev, site.shared_prev_bias, row_scale);
}

}  // namespace qbench::quant
