// The training forward and backward of a Llama model over a batch of sequences.
//
// A batch holds n_seq sequences of seq_len + 1 tokens: positions 0 .. seq_len-1 are the input,
// and position t predicts token t+1 (next-token cross-entropy). loss_mask[s][t] weights the
// prediction of token t+1 (1 to train on it, 0 to ignore it, e.g. on prompt tokens), and the
// loss is the weighted mean  sum(mask * CE) / sum(mask)  (0 when the mask is all zero), or with
// distillation (quantization-aware training) the same mean of a teacher's KL divergence, added.
// Every sequence is one causal attention window starting at position 0 (no KV cache).
//
// All linear layers run as one GEMM over the whole batch (n_seq * seq_len rows); attention runs
// one task per (sequence, head). Parallel work uses fixed chunks (see ops.h), so results are
// identical for any thread count.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/train/params.h"

namespace qbench::train {

struct Batch {
  int64_t n_seq = 0;
  int64_t seq_len = 0;             // T, the number of predicted positions per sequence
  std::vector<int32_t> tokens;     // [n_seq][seq_len + 1]
  std::vector<float> loss_mask;    // [n_seq][seq_len], weights >= 0 (normally 0 or 1)
  // The loss is  ce_weight * CE + kd_weight * KL(softmax(teacher) || softmax(student)), each a
  // mask-weighted mean over the predicted positions. Distillation (kd_weight > 0) needs the
  // teacher's logits at every position: [n_seq * seq_len][n_vocab].
  double ce_weight = 1.0;
  double kd_weight = 0.0;
  std::vector<float> teacher_logits;

  void resize(int64_t n, int64_t T) {
    n_seq = n;
    seq_len = T;
    tokens.assign(size_t(n * (T + 1)), 0);
    loss_mask.assign(size_t(n * T), 1.0f);
  }
  int32_t* seq_tokens(int64_t s) { return tokens.data() + s * (seq_len + 1); }
  float* seq_mask(int64_t s) { return loss_mask.data() + s * seq_len; }
  int64_t n_tokens() const { return n_seq * seq_len; }
};

// The seam between the master FP32 parameters and the weight a linear layer multiplies with.
// The plain implementation uses the master weight itself; quantization-aware training can plug
// a fake-quantizer here (forward: quantize-dequantize into its own buffer; backward: a
// straight-through estimator, optionally zeroing the gradient of clipped weights).
class LinearWeight {
 public:
  virtual ~LinearWeight() = default;
  // The effective [rows x cols] row-major weight of tensor `slot` for this step. The pointer
  // must stay valid until the next forward() call for the same slot (the backward uses it).
  virtual const float* forward(int slot, const float* master, int64_t rows, int64_t cols) = 0;
  // `grad` [rows x cols] holds dLoss/d(effective weight) on entry and must hold
  // dLoss/d(master weight) on return (in place).
  virtual void backward(int slot, const float* master, int64_t rows, int64_t cols, float* grad) = 0;
  // Called by the Trainer after each optimizer step of the weights, with that step's learning
  // rate: a seam with parameters of its own (QAT's scales) updates them here.
  virtual void after_step(double /*lr*/) {}
};

class Fp32LinearWeight final : public LinearWeight {
 public:
  const float* forward(int, const float* master, int64_t, int64_t) override { return master; }
  void backward(int, const float*, int64_t, int64_t, float*) override {}
};

class TrainModel {
 public:
  // `linear` (not owned; nullptr = plain FP32) is consulted for every linear weight.
  explicit TrainModel(LinearWeight* linear = nullptr);
  void set_linear(LinearWeight* linear);
  LinearWeight* linear() const { return linear_; }

  // Loss of `batch`; also writes dLoss/dparams into `grad` (params.size() floats, overwritten).
  // Throws qbench::Error for token ids outside the vocabulary, sequences longer than the
  // model's context length, or malformed batch sizes.
  double forward_backward(const TrainParams& params, const Batch& batch, std::span<float> grad);
  // Loss only. When `logits` is given it receives [n_seq * seq_len x n_vocab] row-major.
  double forward(const TrainParams& params, const Batch& batch, std::vector<float>* logits = nullptr);

 private:
  double run(const TrainParams& params, const Batch& batch, bool backward, std::span<float> grad,
             std::vector<float>* logits);

  LinearWeight* linear_;
  Fp32LinearWeight fp32_;
  // Saved activations, sized for the last batch shape. Per layer l (all [N x width], N = tokens):
  // residual input x[l] (plus x[n_layer], the final residual), mid-layer residual x_mid[l],
  // normalised inputs xn_att / xn_ffn, post-RoPE q, k, v, attention output att, softmax
  // weights probs [n_seq x n_head x T x T], gate, up, h = silu(gate) * up, and the RMS scales.
  struct LayerActs {
    std::vector<float> x, x_mid, xn_att, xn_ffn, q, k, v, att, probs, gate, up, h, rstd_att, rstd_ffn;
  };
  std::vector<LayerActs> acts_;
  std::vector<float> x_final_, xn_out_, rstd_out_, logits_, dlogits_;
  std::vector<int32_t> inputs_, targets_;
  std::vector<float> weights_;
  // Backward scratch.
  std::vector<float> dx_, dxn_, dq_, dk_, dv_, datt_, dh_, dg_, du_, dout_w_;
  std::vector<float> rope_cos_, rope_sin_;
  int64_t rope_T_ = -1;
};

}  // namespace qbench::train
