// AdamW (Loshchilov & Hutter: decoupled weight decay), the learning-rate schedule and global
// gradient-norm clipping, over the flat parameter layout of TrainParams.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/train/params.h"

namespace qbench::train {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;      // decoupled: p -= lr * wd * p; never applied to norms
  bool decay_embedding = false;   // whether the token embedding (and a tied output) decays
};

// Linear warm-up from lr/warmup to lr over `warmup` steps, then cosine decay to
// lr * min_lr_ratio at step `total`; constant at the floor afterwards. `step` counts from 0.
struct LrSchedule {
  double lr = 1e-3;
  double min_lr_ratio = 0.1;
  int64_t warmup = 0;
  int64_t total = 1;
  double at(int64_t step) const;
};

// sqrt(sum g^2), accumulated in double over fixed chunks added in order.
double grad_norm(std::span<const float> grad);
// Scales grad by max_norm / norm when norm > max_norm (max_norm <= 0 disables). Returns the
// norm before clipping.
double clip_grad_norm(std::span<float> grad, double max_norm);

// Adam's update of n values at its step t (1-based, bias-corrected) with learning rate lr:
//   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,  p = p decay - lr m_hat / (sqrt(v_hat) + eps).
// Shared by AdamW (weights) and QAT's scales (engine/train/fake_quant.h).
struct AdamUpdate {
  float step_size, inv_sqrt_bc2, eps, b1, b2;
  AdamUpdate(const AdamWConfig& c, int64_t t, double lr);
  void apply(float* p, float* m, float* v, const float* g, int64_t i0, int64_t i1, float decay = 1.0f) const {
    for (int64_t i = i0; i < i1; ++i) {
      m[i] = b1 * m[i] + (1.0f - b1) * g[i];
      v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
      p[i] = p[i] * decay - step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
    }
  }
};

class AdamW {
 public:
  AdamW() = default;
  AdamW(const TrainParams& params, const AdamWConfig& config);

  // One update with learning rate `lr`; increments the step count (bias correction uses it).
  void step(TrainParams& params, std::span<const float> grad, double lr);

  const AdamWConfig& config() const { return config_; }
  int64_t steps_taken() const { return t_; }
  // Moments, for checkpoints: same layout as the parameters.
  std::vector<float>& m() { return m_; }
  std::vector<float>& v() { return v_; }
  const std::vector<float>& m() const { return m_; }
  const std::vector<float>& v() const { return v_; }
  void set_steps_taken(int64_t t) { t_ = t; }

 private:
  AdamWConfig config_;
  std::vector<float> m_, v_;
  std::vector<uint8_t> decay_;  // per parameter tensor: 1 when weight decay applies
  int64_t t_ = 0;
};

}  // namespace qbench::train
