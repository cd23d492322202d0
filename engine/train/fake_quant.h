// Quantization-aware training: fake quantization of the linear weights into one of qbench's
// integer formats (engine/formats/int_quants.h), with learned scales and zero points (LSQ, Esser
// et al. 2020; the asymmetric form as in LSQ+, Bhalgat et al. 2020).
//
// Per group of G weights w (G = 32, 64, 128, or a whole row) with scale d and zero point z:
//
//   forward   d16 = fp16(d), z8 = clamp(round(z), 0, 2^N - 1)   (what the packed format stores)
//             u   = clamp(round_half_even(w / d16) + off, lo, hi)
//             w^  = d16 * (u - off)
//     sym:  off = 2^(N-1), u in [1, 2^N - 1]  (signed codes -Q..Q, Q = 2^(N-1) - 1)
//     asym: off = z8,      u in [0, 2^N - 1]
//   so w^ is exactly int_fake_quant(format, w, {d16, z8}): the same bits the packed tensor
//   dequantizes to (what is trained is what is served).
//
//   backward  (straight-through estimator; d, z pass through their own rounding)
//     inside  (lo <= w/d16 + off <= hi, unrounded):  dw^/dw = 1,  dw^/dd = (u - off) - w/d16,
//                                                    dw^/dz = 0
//     clipped (otherwise):                           dw^/dw = 0,  dw^/dd = u - off,
//                                                    dw^/dz = -d16 (asym only)
//   These are the exact derivatives of the frozen-code surrogate
//     w~(w, d, z) = d * (u0 + [inside] * ((w/d + z) - (w0/d0 + z0)) - z_off)
//   at (w0, d0, z0), where u0 are the codes there and z_off = z for asym, off for sym;
//   tests/engine/test_fake_quant.cc checks them against its finite differences.
//   The scale and zero-point gradients are then multiplied by LSQ's gradient scale
//   1 / sqrt(G * Qp), Qp = Q (sym) or 2^N - 1 (asym).
//
// ggml's Q4_0 (llama.cpp's 4-bit blocks of 32, engine/formats/legacy_quants.h) is the other
// target, so that a QAT model is served by llama.cpp: per block a signed scale d (the value of
// largest magnitude / -8 at the start, llama.cpp's rule), then
//   forward   q = clamp(floor(w / d + 8.5), 0, 15)  (codes from the float scale, as ggml's
//             w^ = fp16(d) * (q - 8)                 quantize_row_q4_0_ref: at the start these are
//                                                    exactly llama-quantize's bytes)
//   backward  as the symmetric formats with off = 8 and the codes 0..15 "inside"; the learned
//             scale keeps its sign (it never crosses zero); LSQ's Qp = 8.
//
// FakeQuantLinear is the trainer's LinearWeight seam (engine/train/model_step.h): it
// fake-quantizes every ParamKind::Linear tensor (the token embedding, and a tied output, stay
// float, as post-training quantization keeps them) and owns the scales and zero points, which
// it updates with Adam after each optimizer step of the weights.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/formats/int_quants.h"
#include "engine/train/adamw.h"
#include "engine/train/model_step.h"
#include "engine/train/params.h"

namespace qbench::train {

// The packed format QAT trains into: one of qbench's integer formats, or ggml's Q4_0.
struct QatTarget {
  IntFormat format;    // for Q4_0: {4 bits, symmetric, groups of 32}
  bool q4_0 = false;
  QatTarget() = default;
  QatTarget(const IntFormat& f) : format(f) {}  // NOLINT: an integer format is a target
  static QatTarget ggml_q4_0();
  TensorType type() const;
  std::string name() const;  // "int4_sym_g128", "q4_0"
};

// One group: w^ into y[0..n) (y may not alias w).
void fake_quant_group(const QatTarget& t, const float* w, int64_t n, float d, float z, float* y);
// One group's straight-through gradients at (w, d, z): on entry dy = dL/dw^; writes
// dx[i] = dL/dw_i (dx may equal dy) and returns dL/dd and dL/dz (unscaled: without LSQ's
// gradient scale) in *dd and *dz.
void fake_quant_group_backward(const QatTarget& t, const float* w, int64_t n, float d, float z, const float* dy,
                               float* dx, double* dd, double* dz);
// LSQ's gradient scale of target `t` on groups of `n` values.
double lsq_grad_scale(const QatTarget& t, int64_t n);

struct QatConfig {
  QatTarget target;
  double scale_lr_ratio = 1.0;  // the scales' learning rate = ratio * the weights' learning rate
  AdamWConfig adam;             // betas and eps; weight decay is never applied to scales
};

class FakeQuantLinear final : public LinearWeight {
 public:
  // Scales and zero points of every Linear tensor of `params`, from the min/max rule
  // (int_params_minmax; for the q4_0 target ggml's max / -8); a PTQ start replaces them with its
  // own through set_from_packed. Throws qbench::Error when a tensor's row length is not a
  // multiple of the format's group size.
  FakeQuantLinear(const TrainParams& params, const QatConfig& config);

  const float* forward(int slot, const float* master, int64_t rows, int64_t cols) override;
  void backward(int slot, const float* master, int64_t rows, int64_t cols, float* grad) override;

  // One Adam step of the scales and zero points on the gradients of the last backward, with
  // the weights' learning rate `lr` (times scale_lr_ratio); clears the gradients.
  void after_step(double lr) override;

  // Whether `slot` is fake-quantized.
  bool quantized(int slot) const { return base_[size_t(slot)] >= 0; }
  int64_t groups_per_row(int slot) const;
  // Learned parameters: per quantized slot, row after row, groups_per_row(slot) scales (and,
  // asymmetric, as many zero points right after the scales of the slot).
  std::span<float> scales(int slot);
  std::span<float> zeros(int slot);  // empty for symmetric formats
  std::span<const float> scale_grad(int slot) const;
  std::span<const float> zero_grad(int slot) const;
  // The packed tensor of `slot` from `master` (rows x cols) in the target's format (qbench's
  // integer format, or ggml's Q4_0), as a quantizer writes it:
  // dequantizing it gives forward()'s weight bit for bit.
  std::vector<uint8_t> pack(int slot, const float* master) const;
  // Replace the scales and zero points of `slot` with those stored in `packed` (a tensor of
  // this format, e.g. written by GPTQ or AWQ), so training starts from that PTQ result.
  void set_from_packed(int slot, const uint8_t* packed);

  const QatConfig& config() const { return config_; }
  // All learned values (scales and zero points) and their Adam moments, flat, for checkpoints.
  std::vector<float>& values() { return values_; }
  std::vector<float>& adam_m() { return m_; }
  std::vector<float>& adam_v() { return v_; }
  int64_t& adam_steps() { return t_; }

 private:
  struct SlotInfo {
    int64_t rows = 0, cols = 0, group = 0, n_groups = 0;  // n_groups = rows * groups per row
  };
  std::pair<float, float> group_params(int slot, int64_t g) const;  // learned (d, z)

  QatConfig config_;
  std::vector<int64_t> base_;  // per slot: offset of its scales in values_, or -1
  std::vector<SlotInfo> info_;
  std::vector<float> values_, grad_, m_, v_;
  std::vector<float> signs_;  // the scales before a step (their signs are kept)
  int64_t t_ = 0;
  std::vector<std::vector<float>> eff_;  // per slot: the fake-quantized weight of this step
};

}  // namespace qbench::train
