// GPTQ (Frantar et al., 2022, "GPTQ: Accurate Post-Training Quantization for Generative
// Pre-trained Transformers"), following the reference implementation (IST-DASLab/gptq, gptq.py
// fasterquant) into qbench's integer formats:
//
//   H = X^T X / n (double; calibration.h), dead inputs (H_jj = 0): H_jj = 1 and W[:, j] = 0;
//   act_order: columns permuted by descending H_jj; H += damp * mean(diag H) * I;
//   U = upper Cholesky factor of H^-1 (Cholesky, inverse, Cholesky; Eigen LLT in double);
//   for each block of `block` columns, for each column i: q = RTN(w_i) with the scale (and zero)
//   of its group, err = (w_i - q) / U_ii, the block's later columns -= err * U_i,i:, and after
//   the block the remaining columns -= Err * U_block,rest (lazy batch update).
//
// Scales: those RTN of the target format would choose (rtn_group_params: min/max rule, or the
// clip=mse search), computed from the current (already error-updated) weights when a group's
// first column is reached, as the reference does; per-channel formats take the row's scale from
// the original weights before any update (the reference's find_params(W) at the start). With
// act_order and groups, storage groups are contiguous in the original order, so the scales are
// computed up front from the original weights (the reference's static_groups=True).
//
// Fallbacks (documented in docs/schemes.md, never NaN): no calibration tokens or an all-zero
// input -> plain RTN with a note; a Cholesky failure (H not positive definite after damping, e.g.
// rank-deficient and damp=0) -> damping x10 up to 4 times, then RTN with a note.
#include <tbb/parallel_for.h>

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "engine/core/error.h"
#include "quantizers/calibration.h"
#include "quantizers/int_rules.h"
#include "quantizers/registry.h"

namespace qbench::quant {
namespace {

using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>;  // column-major: column updates

PackedTensor pack_rtn(const WeightView& w, const IntFormat& f, bool mse, std::string note) {
  PackedTensor out;
  out.type = int_format_type(f);
  const size_t rb = row_bytes(type_traits(out.type), w.cols);
  out.bytes.resize(size_t(w.rows) * rb);
  const int64_t g = f.per_row() ? w.cols : f.group;
  tbb::parallel_for(int64_t(0), w.rows, [&](int64_t r) {
    const float* x = w.data + r * w.cols;
    uint8_t* dst = out.bytes.data() + size_t(r) * rb;
    for (int64_t c = 0; c < w.cols; c += g) dst += int_pack(f, x + c, g, rtn_group_params(f, x + c, g, mse), dst);
  });
  out.note = std::move(note);
  return out;
}

// U = upper Cholesky factor of (H + damp*I)^-1; false when H + damp*I is not positive definite.
bool inverse_cholesky_upper(const MatD& H, double damp, MatD& U) {
  MatD Hd = H;
  Hd.diagonal().array() += damp;
  Eigen::LLT<MatD> llt(Hd);
  if (llt.info() != Eigen::Success) return false;
  const MatD Hinv = llt.solve(MatD::Identity(H.rows(), H.cols()));
  Eigen::LLT<MatD> llt2(Hinv);
  if (llt2.info() != Eigen::Success) return false;
  U = llt2.matrixU();
  return U.allFinite();
}

PackedTensor quantize_gptq(const WeightView& w, const SchemeSpec& spec, const CalibContext& ctx) {
  const IntFormat f = int_format_of_spec(spec);
  const bool mse = spec.get("clip") == "mse";
  const double damp_ratio = std::stod(spec.get("damp"));
  const bool act_order = spec.get_bool("act_order");
  const int64_t block = spec.get_int("block");
  const TypeTraits& t = type_traits(int_format_type(f));
  if (f.per_row()) {
    check_row_multiple(w, t.block_size, "gptq int" + std::to_string(f.bits) + " per-channel packing unit of");
  } else {
    check_row_multiple(w, f.group, "gptq group size");
  }
  check_range(w, t.max_abs_input, t.name);
  const int64_t rows = w.rows, cols = w.cols;
  const InputStats* st = ctx.stats;
  QB_ASSERT(st != nullptr);
  if (st->cols != cols || int64_t(st->hessian.size()) != cols * cols) {
    throw Error(std::string(w.name) + ": gptq calibration statistics have " + std::to_string(st->cols) +
                " input channels, the weight has " + std::to_string(cols));
  }
  if (st->n_tokens == 0) return pack_rtn(w, f, mse, "gptq: no calibration tokens, plain RTN");

  MatD H = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
               st->hessian.data(), cols, cols) / double(st->n_tokens);
  MatD W = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(w.data, rows, cols)
               .cast<double>();
  if (H.diagonal().maxCoeff() <= 0.0) return pack_rtn(w, f, mse, "gptq: all inputs are zero, plain RTN");

  // Per-channel scales from the original weights (before dead columns are zeroed, as the reference).
  const int64_t gsize = f.per_row() ? cols : f.group;
  const int64_t n_groups = cols / gsize;
  std::vector<IntParams> params(size_t(rows * n_groups));
  auto set_group_params = [&](const MatD& src, int64_t g) {
    tbb::parallel_for(int64_t(0), rows, [&](int64_t r) {
      std::vector<float> v(static_cast<size_t>(gsize));
      for (int64_t j = 0; j < gsize; ++j) v[size_t(j)] = float(src(r, g * gsize + j));
      params[size_t(r * n_groups + g)] = rtn_group_params(f, v.data(), gsize, mse);
    });
  };
  const bool static_groups = f.per_row() || act_order;
  int64_t n_dead = 0;
  for (int64_t j = 0; j < cols; ++j) {
    if (H(j, j) == 0.0) {
      H(j, j) = 1.0;
      W.col(j).setZero();
      ++n_dead;
    }
  }
  if (f.per_row()) {
    MatD W0 = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(w.data, rows, cols)
                  .cast<double>();
    set_group_params(W0, 0);
  } else if (static_groups) {
    for (int64_t g = 0; g < n_groups; ++g) set_group_params(W, g);
  }

  // perm[k] = original column processed k-th.
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  if (act_order) {
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return H(a, a) > H(b, b); });
    MatD Wp(rows, cols), Hp(cols, cols);
    for (int64_t k = 0; k < cols; ++k) Wp.col(k) = W.col(perm[size_t(k)]);
    for (int64_t a = 0; a < cols; ++a) {
      for (int64_t b = 0; b < cols; ++b) Hp(a, b) = H(perm[size_t(a)], perm[size_t(b)]);
    }
    W = std::move(Wp);
    H = std::move(Hp);
  }

  double damp = damp_ratio * H.diagonal().mean();
  MatD U;
  std::string note;
  bool ok = inverse_cholesky_upper(H, damp, U);
  for (int attempt = 0; !ok && attempt < 4; ++attempt) {
    damp = damp > 0 ? damp * 10.0 : 1e-6 * H.diagonal().mean();
    ok = inverse_cholesky_upper(H, damp, U);
    note = "gptq: Hessian not positive definite, damping raised to " + std::to_string(damp);
  }
  if (!ok) return pack_rtn(w, f, mse, "gptq: Hessian not positive definite even with damping, plain RTN");
  if (n_dead > 0) note += (note.empty() ? "" : "; ") + std::string("gptq: ") + std::to_string(n_dead) + " dead inputs";

  // Q holds dequantized values in processing order.
  MatD Q(rows, cols);
  
  for (int64_t i1 = 0; i1 < cols; i1 += block) {
    const int64_t i2 = std::min(i1 + block, cols), count = i2 - i1;
    MatD Err(rows, count);
    for (int64_t i = i1; i < i2; ++i) {
      const int64_t orig = perm[size_t(i)];
      const int64_t g = orig / gsize;
      if (!static_groups && orig % gsize == 0) set_group_params(W, g);  // no act_order: orig == i
      const double d = U(i, i);
      tbb::parallel_for(int64_t(0), rows, [&](int64_t r) {
        const float x = float(W(r, i));
        float q;
        int_fake_quant(f, &x, 1, params[size_t(r * n_groups + g)], &q);
        Q(r, i) = double(q);
        Err(r, i - i1) = (W(r, i) - double(q)) / d;
      });
      // W[:, i+1:i2] -= err * U[i, i+1:i2]
      if (i + 1 < i2) W.middleCols(i + 1, i2 - i - 1).noalias() -= Err.col(i - i1) * U.row(i).segment(i + 1, i2 - i - 1);
    }
    if (i2 < cols) W.rightCols(cols - i2).noalias() -= Err * U.block(i1, i2, count, cols - i2);
  }

  // Back to the original column order, then pack with the group's parameters (the values lie on
  // the grid, so packing reproduces them exactly).

  PackedTensor out;
  out.type = t.type;
  const size_t rb = row_bytes(t, cols);
  out.bytes.resize(size_t(rows) * rb);
  tbb::parallel_for(int64_t(0), rows, [&](int64_t r) {
    std::vector<float> v(static_cast<size_t>(cols));
    for (int64_t k = 0; k < cols; ++k) v[size_t(perm[size_t(k)])] = float(Q(r, k));
    uint8_t* dst = out.bytes.data() + size_t(r) * rb;
    for (int64_t g = 0; g < n_groups; ++g) dst += int_pack(f, v.data() + g * gsize, gsize, params[size_t(r * n_groups + g)], dst);
  });
  out.note = note;
  return out;
}

PackedTensor quantize_gptq_uncalibrated(const WeightView& w, const SchemeSpec&) {
  throw Error(std::string(w.name) + ": gptq needs calibration data (qbench quantize --calib FILE)");
}

}  // namespace

void register_gptq(Registry& r) {
  r.add(Method{
      "gptq",
      "GPTQ (Frantar et al. 2022): column-wise rounding with inverse-Hessian error feedback into N-bit integers "
      "(needs --calib)",
      {
          {"bits", "4", "bits per code", {}, 2, 8},
          {"group", "128", "values per scale along the row: 32, 64, 128, channel", {"32", "64", "128", "channel"}},
          {"sym", "true", "true: symmetric codes; false: min/max range with a uint8 zero point", {"true", "false"}},
          {"clip", "none", "scale rule per group as rtn's clip option", {"none", "mse"}},
          {"damp", "0.01", "dampening added to the Hessian diagonal, as a fraction of its mean",
           {"0", "0.001", "0.01", "0.1", "1"}},
          {"act_order", "false", "process columns by descending Hessian diagonal (static groups)", {"true", "false"}},
          {"block", "128", "columns per lazy-update block", {}, 1, 4096},
      },
      "bits",
      "int",
      quantize_gptq_uncalibrated,
      std::nullopt,
      CalibUse::Sequential,
      quantize_gptq,
  });
}

}  // namespace qbench::quant
