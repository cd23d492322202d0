#include "engine/train/fake_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "engine/core/error.h"
#include "engine/core/half.h"
#include "engine/formats/legacy_quants.h"
#include "engine/formats/quant_util.h"
#include "engine/formats/types.h"
#include "engine/train/ops.h"

namespace qbench::train {
namespace {

// Smallest positive fp16 (2^-24): a learned scale never rounds to a zero scale.
constexpr float kMinScale = 5.9604645e-08f;

IntParams params_of(const IntFormat& f, float d, float z) {
  IntParams p;
  p.d = fp32_to_fp16(d);
  if (!f.sym) p.zero = uint8_t(std::clamp(quant_detail::nearest_int(std::clamp(z, -1.0f, 512.0f)), 0, f.levels() - 1));
  return p;
}

// Q4_0's code of w with the inverse scale id: ggml's (int8)(w * id + 8.5) capped at 15 where
// that is defined (at ggml's own scale the argument is >= 0.5), clamped to 0 below; an argument
// out of int range (a subnormal scale) gives 0, as ggml's cast does on x86-64.
int q4_0_code(float w, float id) {
  const float v = w * id + 8.5f;
  if (!(v >= -2147483648.0f && v < 2147483648.0f)) return 0;
  return std::clamp(int(std::floor(v)), 0, 15);
}
float inverse(float d) { return d != 0.0f ? 1.0f / d : 0.0f; }

// Groups per parallel task (about 16K weights): each group's gradient is summed by one task in
// a fixed order, so the bits are the same for any thread count.
int64_t groups_per_task(int64_t group) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(group, 1)); }

}  // namespace

QatTarget QatTarget::ggml_q4_0() {
  QatTarget t(IntFormat{4, true, kQK4_0});
  t.q4_0 = true;
  return t;
}

TensorType QatTarget::type() const { return q4_0 ? TensorType::Q4_0 : int_format_type(format); }

std::string QatTarget::name() const { return std::string(type_traits(type()).name); }

void fake_quant_group(const QatTarget& t, const float* w, int64_t n, float d, float z, float* y) {
  if (!t.q4_0) return int_fake_quant(t.format, w, n, params_of(t.format, d, z), y);
  const float id = inverse(d), d16 = fp16_to_fp32(fp32_to_fp16(d));
  for (int64_t i = 0; i < n; ++i) y[i] = d16 * float(q4_0_code(w[i], id) - 8);
}

void fake_quant_group_backward(const QatTarget& t, const float* w, int64_t n, float d, float z, const float* dy,
                               float* dx, double* dd, double* dz) {
  const IntFormat& f = t.format;
  const IntParams p = params_of(f, d, z);
  const float d16 = fp16_to_fp32(p.d);
  // The inverse the codes are computed with: of the stored scale (int_pack divides by it), or of
  // the float scale (Q4_0, as ggml).
  const float inv = inverse(t.q4_0 ? d : d16);
  const int lo = f.sym && !t.q4_0 ? 1 : 0, hi = f.levels() - 1;
  double gd = 0.0, gz = 0.0;
  constexpr int kChunk = 256;
  int u[kChunk];
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const int64_t m = std::min<int64_t>(kChunk, n - i0);
    int off = 8;
    if (t.q4_0) {
      for (int64_t i = 0; i < m; ++i) u[i] = q4_0_code(w[i0 + i], inv);
    } else {
      off = int_codes(f, w + i0, m, p, u);
    }
    for (int64_t i = 0; i < m; ++i) {
      const double g = dy[i0 + i];
      const double v = double(w[i0 + i] * inv);
      const double shifted = v + off;
      const double q = double(u[i] - off);
      if (shifted >= lo && shifted <= hi) {
        dx[i0 + i] = float(g);
        gd += g * (q - v);
      } else {
        dx[i0 + i] = 0.0f;
        gd += g * q;
        if (!f.sym) gz -= g * double(d16);
      }
    }
  }
  *dd = gd;
  *dz = gz;
}

double lsq_grad_scale(const QatTarget& t, int64_t n) {
  const IntFormat& f = t.format;
  const double qp = t.q4_0 ? 8.0 : f.sym ? double(f.qmax_sym()) : double(f.levels() - 1);
  return 1.0 / std::sqrt(double(n) * qp);
}

FakeQuantLinear::FakeQuantLinear(const TrainParams& params, const QatConfig& config) : config_(config) {
  const IntFormat& f = config_.target.format;
  const auto& tensors = params.tensors();
  base_.assign(tensors.size(), -1);
  info_.resize(tensors.size());
  eff_.resize(tensors.size());
  for (size_t s = 0; s < tensors.size(); ++s) {
    const ParamTensor& t = tensors[s];
    if (t.kind != ParamKind::Linear) continue;
    const int64_t group = f.per_row() ? t.cols : f.group;
    if (t.cols % group != 0) {
      throw Error("qat: " + t.name + " has rows of " + std::to_string(t.cols) +
                  " values, not a multiple of the group size " + std::to_string(group));
    }
    SlotInfo& in = info_[s];
    in = {t.rows, t.cols, group, t.rows * (t.cols / group)};
    base_[s] = int64_t(values_.size());
    values_.resize(values_.size() + size_t(in.n_groups * (f.sym ? 1 : 2)));
    float* d = values_.data() + base_[s];
    float* z = d + in.n_groups;
    const float* w = params.data(int(s));
    for (int64_t g = 0; g < in.n_groups; ++g) {
      if (config_.target.q4_0) {
        d[g] = quant_detail::signed_max(w + g * group, int(group)).max / -8;  // ggml's scale, unrounded
        continue;
      }
      const IntParams p = int_params_minmax(f, w + g * group, group);
      d[g] = fp16_to_fp32(p.d);  // 0 for a group of zeros, as RTN stores it
      if (!f.sym) z[g] = float(p.zero);
    }
  }
  grad_.assign(values_.size(), 0.0f);
  m_.assign(values_.size(), 0.0f);
  v_.assign(values_.size(), 0.0f);
}

int64_t FakeQuantLinear::groups_per_row(int slot) const {
  const SlotInfo& in = info_[size_t(slot)];
  return in.group > 0 ? in.cols / in.group : 0;
}

std::span<float> FakeQuantLinear::scales(int slot) {
  if (!quantized(slot)) return {};
  return {values_.data() + base_[size_t(slot)], size_t(info_[size_t(slot)].n_groups)};
}
std::span<float> FakeQuantLinear::zeros(int slot) {
  if (!quantized(slot) || config_.target.format.sym) return {};
  const int64_t n = info_[size_t(slot)].n_groups;
  return {values_.data() + base_[size_t(slot)] + n, size_t(n)};
}
std::span<const float> FakeQuantLinear::scale_grad(int slot) const {
  if (!quantized(slot)) return {};
  return {grad_.data() + base_[size_t(slot)], size_t(info_[size_t(slot)].n_groups)};
}
std::span<const float> FakeQuantLinear::zero_grad(int slot) const {
  if (!quantized(slot) || config_.target.format.sym) return {};
  const int64_t n = info_[size_t(slot)].n_groups;
  return {grad_.data() + base_[size_t(slot)] + n, size_t(n)};
}

std::pair<float, float> FakeQuantLinear::group_params(int slot, int64_t g) const {
  const float* d = values_.data() + base_[size_t(slot)];
  return {d[g], config_.target.format.sym ? 0.0f : d[info_[size_t(slot)].n_groups + g]};
}

const float* FakeQuantLinear::forward(int slot, const float* master, int64_t rows, int64_t cols) {
  if (!quantized(slot)) return master;
  const SlotInfo& in = info_[size_t(slot)];
  QB_ASSERT(rows == in.rows && cols == in.cols);
  std::vector<float>& y = eff_[size_t(slot)];
  y.resize(size_t(rows * cols));
  const int64_t n_groups = in.n_groups, group = in.group;
  parallel_chunks(n_groups, groups_per_task(group), [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const auto [d, z] = group_params(slot, g);
      fake_quant_group(config_.target, master + g * group, group, d, z, y.data() + g * group);
    }
  });
  return y.data();
}

void FakeQuantLinear::backward(int slot, const float* master, int64_t rows, int64_t cols, float* grad) {
  if (!quantized(slot)) return;
  const SlotInfo& in = info_[size_t(slot)];
  QB_ASSERT(rows == in.rows && cols == in.cols);
  const QatTarget& t = config_.target;
  const bool sym = t.format.sym;
  const int64_t n_groups = in.n_groups, group = in.group;
  const double scale = lsq_grad_scale(t, group);
  const float* d = values_.data() + base_[size_t(slot)];
  float* gd = grad_.data() + base_[size_t(slot)];
  parallel_chunks(n_groups, groups_per_task(group), [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const float z = sym ? 0.0f : d[n_groups + g];
      double dd = 0.0, dz = 0.0;
      fake_quant_group_backward(t, master + g * group, group, d[g], z, grad + g * group, grad + g * group, &dd, &dz);
      gd[g] = float(dd * scale);
      if (!sym) gd[n_groups + g] = float(dz * scale);
    }
  });
}

void FakeQuantLinear::after_step(double lr) {
  ++t_;
  const QatTarget& target = config_.target;
  // Each scale keeps the side of zero it is on (Q4_0's are signed) and never rounds to a zero
  // scale; a zero scale (of a group of zeros) has no gradient and stays zero.
  signs_.assign(values_.begin(), values_.end());
  AdamUpdate(config_.adam, t_, lr * config_.scale_lr_ratio)
      .apply(values_.data(), m_.data(), v_.data(), grad_.data(), 0, int64_t(values_.size()));
  // Scales stay away from zero, zero points within the codes.
  const float zmax = float(target.format.levels() - 1);
  for (size_t s = 0; s < base_.size(); ++s) {
    if (base_[s] < 0) continue;
    const int64_t n = info_[s].n_groups;
    float* d = values_.data() + base_[s];
    const float* before = signs_.data() + base_[s];
    for (int64_t k = 0; k < n; ++k) {
      if (before[k] > 0.0f) d[k] = std::max(d[k], kMinScale);
      if (before[k] < 0.0f) d[k] = std::min(d[k], -kMinScale);
    }
    if (!target.format.sym) {
      for (int64_t k = n; k < 2 * n; ++k) d[k] = std::clamp(d[k], 0.0f, zmax);
    }
  }
  std::fill(grad_.begin(), grad_.end(), 0.0f);
}

std::vector<uint8_t> FakeQuantLinear::pack(int slot, const float* master) const {
  QB_ASSERT(quantized(slot));
  const SlotInfo& in = info_[size_t(slot)];
  const QatTarget& t = config_.target;
  const size_t row = row_bytes(type_traits(t.type()), in.cols);
  std::vector<uint8_t> out(row * size_t(in.rows));
  const int64_t per_row = in.cols / in.group;
  for (int64_t r = 0; r < in.rows; ++r) {
    uint8_t* dst = out.data() + size_t(r) * row;
    for (int64_t j = 0; j < per_row; ++j) {
      const int64_t g = r * per_row + j;
      const auto [d, z] = group_params(slot, g);
      const float* w = master + g * in.group;
      if (!t.q4_0) {
        dst += int_pack(t.format, w, in.group, params_of(t.format, d, z), dst);
        continue;
      }
      BlockQ4_0 b;
      b.d = fp32_to_fp16(d);
      const float id = inverse(d);
      for (int k = 0; k < kQK4_0 / 2; ++k) b.qs[k] = uint8_t(q4_0_code(w[k], id) | (q4_0_code(w[k + 16], id) << 4));
      std::memcpy(dst, &b, sizeof b);
      dst += sizeof b;
    }
    QB_ASSERT(dst == out.data() + size_t(r + 1) * row);
  }
  return out;
}

void FakeQuantLinear::set_from_packed(int slot, const uint8_t* packed) {
  QB_ASSERT(quantized(slot));
  const SlotInfo& in = info_[size_t(slot)];
  const IntFormat& f = config_.target.format;
  const size_t row = row_bytes(type_traits(config_.target.type()), in.cols);
  const int64_t per_row = in.cols / in.group;
  const size_t block = row / size_t(per_row);
  float* d = values_.data() + base_[size_t(slot)];
  for (int64_t g = 0; g < in.n_groups; ++g) {
    const uint8_t* src = packed + size_t(g / per_row) * row + size_t(g % per_row) * block;
    uint16_t dh;
    std::memcpy(&dh, src, 2);  // Q4_0 and the integer formats both begin with the fp16 scale
    d[g] = fp16_to_fp32(dh);
    if (!f.sym) d[in.n_groups + g] = float(src[2]);
  }
}

}  // namespace qbench::train
