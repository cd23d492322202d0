#include "engine/train/adamw.h"

#include <cmath>

#include "engine/core/error.h"
#include "engine/train/ops.h"

namespace qbench::train {
namespace {
constexpr int64_t kChunk = 1 << 16;
}  // namespace

double LrSchedule::at(int64_t step) const {
  if (warmup > 0 && step < warmup) return lr * double(step + 1) / double(warmup);
  const double floor = lr * min_lr_ratio;
  if (step >= total) return floor;
  const double span = double(std::max<int64_t>(total - warmup, 1));
  const double progress = double(step - warmup) / span;  // in [0, 1)
  return floor + 0.5 * (lr - floor) * (1.0 + std::cos(3.14159265358979323846 * progress));
}

double grad_norm(std::span<const float> grad) {
  const int64_t n = int64_t(grad.size());
  std::vector<double> part(size_t((n + kChunk - 1) / kChunk), 0.0);
  parallel_chunks(n, kChunk, [&](int64_t i0, int64_t i1) {
    double s = 0.0;
    for (int64_t i = i0; i < i1; ++i) s += double(grad[size_t(i)]) * double(grad[size_t(i)]);
    part[size_t(i0 / kChunk)] = s;
  });
  double total = 0.0;
  for (double p : part) total += p;
  return std::sqrt(total);
}

double clip_grad_norm(std::span<float> grad, double max_norm) {
  const double norm = grad_norm(grad);
  if (max_norm > 0.0 && norm > max_norm) {
    const float scale = float(max_norm / norm);
    parallel_chunks(int64_t(grad.size()), kChunk, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) grad[size_t(i)] *= scale;
    });
  }
  return norm;
}

AdamW::AdamW(const TrainParams& params, const AdamWConfig& config) : config_(config) {
  m_.assign(params.size(), 0.0f);
  v_.assign(params.size(), 0.0f);
  for (const ParamTensor& t : params.tensors()) {
    const bool decay = t.kind == ParamKind::Linear || (t.kind == ParamKind::Embedding && config.decay_embedding);
    decay_.push_back(decay ? 1 : 0);
  }
}

AdamUpdate::AdamUpdate(const AdamWConfig& c, int64_t t, double lr) {
  // The bias corrections folded into the step size and the denominator.
  step_size = float(lr / (1.0 - std::pow(c.beta1, double(t))));
  inv_sqrt_bc2 = float(1.0 / std::sqrt(1.0 - std::pow(c.beta2, double(t))));
  eps = float(c.eps);
  b1 = float(c.beta1);
  b2 = float(c.beta2);
}

void AdamW::step(TrainParams& params, std::span<const float> grad, double lr) {
  QB_ASSERT(grad.size() == params.size() && m_.size() == params.size());
  ++t_;
  // p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)
  const AdamUpdate update(config_, t_, lr);
  const auto& tensors = params.tensors();
  for (size_t ti = 0; ti < tensors.size(); ++ti) {
    const ParamTensor& t = tensors[ti];
    const float decay = decay_[ti] ? float(1.0 - lr * config_.weight_decay) : 1.0f;
    float* p = params.values.data() + t.offset;
    float* m = m_.data() + t.offset;
    float* v = v_.data() + t.offset;
    const float* g = grad.data() + t.offset;
    parallel_chunks(int64_t(t.size()), kChunk, [&](int64_t i0, int64_t i1) { update.apply(p, m, v, g, i0, i1, decay); });
  }
}

}  // namespace qbench::train
