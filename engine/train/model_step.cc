#include "engine/train/model_step.h"

#include <algorithm>
#include <cmath>

#include "engine/core/error.h"
#include "engine/train/ops.h"

namespace qbench::train {
namespace {

void check_batch(const ModelConfig& c, const Batch& b) {
  if (b.n_seq <= 0 || b.seq_len <= 0) {
    throw Error("training batch: " + std::to_string(b.n_seq) + " sequences of " + std::to_string(b.seq_len) +
                " positions, expected positive sizes");
  }
  if (b.seq_len > c.n_ctx_train) {
    throw Error("training batch: sequence length " + std::to_string(b.seq_len) +
                " exceeds the model's context length " + std::to_string(c.n_ctx_train));
  }
  if (b.tokens.size() != size_t(b.n_seq * (b.seq_len + 1)) || b.loss_mask.size() != size_t(b.n_seq * b.seq_len)) {
    throw Error("training batch: " + std::to_string(b.tokens.size()) + " tokens and " +
                std::to_string(b.loss_mask.size()) + " mask entries do not match " + std::to_string(b.n_seq) +
                " sequences of " + std::to_string(b.seq_len) + " (+1) positions");
  }
  for (size_t i = 0; i < b.tokens.size(); ++i) {
    if (b.tokens[i] < 0 || b.tokens[i] >= c.n_vocab) {
      throw Error("training batch: token id " + std::to_string(b.tokens[i]) + " at index " + std::to_string(i) +
                  " is outside the vocabulary of " + std::to_string(c.n_vocab));
    }
  }
  const size_t n_logits = size_t(b.n_seq * b.seq_len * c.n_vocab);
  if (b.kd_weight > 0.0 && b.teacher_logits.size() != n_logits) {
    throw Error("training batch: distillation needs the teacher's " + std::to_string(n_logits) + " logits, got " +
                std::to_string(b.teacher_logits.size()));
  }
  if (!(b.ce_weight >= 0.0) || !(b.kd_weight >= 0.0) || !std::isfinite(b.ce_weight + b.kd_weight)) {
    throw Error("training batch: loss weights must be finite and >= 0");
  }
  for (float m : b.loss_mask) {
    if (!(m >= 0.0f) || !std::isfinite(m)) {
      throw Error("training batch: loss mask entry " + std::to_string(m) + " is not a finite weight >= 0");
    }
  }
}

template <class V>
void ensure(V& v, size_t n) {
  if (v.size() != n) v.resize(n);
}

}  // namespace

TrainModel::TrainModel(LinearWeight* linear) : linear_(linear ? linear : &fp32_) {}

void TrainModel::set_linear(LinearWeight* linear) { linear_ = linear ? linear : &fp32_; }

double TrainModel::forward_backward(const TrainParams& params, const Batch& batch, std::span<float> grad) {
  QB_ASSERT(grad.size() == params.size());
  return run(params, batch, true, grad, nullptr);
}

double TrainModel::forward(const TrainParams& params, const Batch& batch, std::vector<float>* logits) {
  return run(params, batch, false, {}, logits);
}

double TrainModel::run(const TrainParams& P, const Batch& batch, bool backward, std::span<float> grad,
                       std::vector<float>* logits_out) {
  const ModelConfig& c = P.config();
  check_batch(c, batch);
  const int64_t B = batch.n_seq, T = batch.seq_len, N = B * T;
  const int64_t d = c.n_embd, dkv = c.n_embd_kv(), ff = c.n_ff, V = c.n_vocab, L = c.n_layer;
  const int64_t H = c.n_head, Hkv = c.n_head_kv, hd = c.head_dim();
  const double eps = c.rms_eps;
  const AttentionShape shape{B, T, H, Hkv, hd};

  if (rope_T_ != T) {
    rope_table<float>(T, c.n_rot, c.rope_freq_base, rope_cos_, rope_sin_);
    rope_T_ = T;
  }
  // Inputs, targets and per-token loss weights, flattened to N rows.
  ensure(inputs_, size_t(N));
  ensure(targets_, size_t(N));
  ensure(weights_, size_t(N));
  double weight_sum = 0.0;
  for (int64_t s = 0; s < B; ++s) {
    const int32_t* tok = batch.tokens.data() + s * (T + 1);
    for (int64_t t = 0; t < T; ++t) {
      inputs_[size_t(s * T + t)] = tok[t];
      targets_[size_t(s * T + t)] = tok[t + 1];
      weights_[size_t(s * T + t)] = batch.loss_mask[size_t(s * T + t)];
      weight_sum += double(batch.loss_mask[size_t(s * T + t)]);
    }
  }

  acts_.resize(size_t(L));
  for (auto& a : acts_) {
    for (auto* v : {&a.x, &a.x_mid, &a.xn_att, &a.xn_ffn, &a.att}) ensure(*v, size_t(N * d));
    ensure(a.q, size_t(N * d));
    ensure(a.k, size_t(N * dkv));
    ensure(a.v, size_t(N * dkv));
    ensure(a.probs, size_t(B * H * T * T));
    for (auto* v : {&a.gate, &a.up, &a.h}) ensure(*v, size_t(N * ff));
    ensure(a.rstd_att, size_t(N));
    ensure(a.rstd_ffn, size_t(N));
  }
  ensure(x_final_, size_t(N * d));
  ensure(xn_out_, size_t(N * d));
  ensure(rstd_out_, size_t(N));
  ensure(logits_, size_t(N * V));

  // Effective linear weights for this step (the seam; plain FP32 returns the master).
  auto eff = [&](int slot) {
    const ParamTensor& t = P.tensor(slot);
    return linear_->forward(slot, P.data(slot), t.rows, t.cols);
  };

  // ---- forward ----
  embedding_forward(P.data(P.tok_embd()), inputs_.data(), N, d, acts_[0].x.data());
  std::vector<const float*> w_eff(P.tensors().size(), nullptr);
  for (int64_t l = 0; l < L; ++l) {
    const LayerSlots& S = P.layer(l);
    LayerActs& a = acts_[size_t(l)];
    for (int slot : {S.wq, S.wk, S.wv, S.wo, S.w_gate, S.w_up, S.w_down}) w_eff[size_t(slot)] = eff(slot);
    rmsnorm_forward(a.x.data(), P.data(S.attn_norm), a.xn_att.data(), a.rstd_att.data(), N, d, eps);
    gemm_abt(a.xn_att.data(), w_eff[size_t(S.wq)], a.q.data(), N, d, d, false);
    gemm_abt(a.xn_att.data(), w_eff[size_t(S.wk)], a.k.data(), N, dkv, d, false);
    gemm_abt(a.xn_att.data(), w_eff[size_t(S.wv)], a.v.data(), N, dkv, d, false);
    rope_forward(a.q.data(), N, T, H, hd, c.n_rot, rope_cos_.data(), rope_sin_.data());
    rope_forward(a.k.data(), N, T, Hkv, hd, c.n_rot, rope_cos_.data(), rope_sin_.data());
    attention_forward(a.q.data(), a.k.data(), a.v.data(), a.att.data(), a.probs.data(), shape);
    a.x_mid = a.x;
    gemm_abt(a.att.data(), w_eff[size_t(S.wo)], a.x_mid.data(), N, d, d, true);
    rmsnorm_forward(a.x_mid.data(), P.data(S.ffn_norm), a.xn_ffn.data(), a.rstd_ffn.data(), N, d, eps);
    gemm_abt(a.xn_ffn.data(), w_eff[size_t(S.w_gate)], a.gate.data(), N, ff, d, false);
    gemm_abt(a.xn_ffn.data(), w_eff[size_t(S.w_up)], a.up.data(), N, ff, d, false);
    swiglu_forward(a.gate.data(), a.up.data(), a.h.data(), N * ff);
    std::vector<float>& x_next = l + 1 < L ? acts_[size_t(l + 1)].x : x_final_;
    x_next = a.x_mid;
    gemm_abt(a.h.data(), w_eff[size_t(S.w_down)], x_next.data(), N, d, ff, true);
  }
  const int out_slot = P.output();
  w_eff[size_t(out_slot)] = eff(out_slot);
  rmsnorm_forward(x_final_.data(), P.data(P.output_norm()), xn_out_.data(), rstd_out_.data(), N, d, eps);
  gemm_abt(xn_out_.data(), w_eff[size_t(out_slot)], logits_.data(), N, V, d, false);
  if (logits_out) *logits_out = logits_;

  const double inv_weight = weight_sum > 0.0 ? 1.0 / weight_sum : 0.0;
  const double ce_w = batch.ce_weight, kd_w = batch.kd_weight;
  float* dl = nullptr;
  if (backward) {
    ensure(dlogits_, size_t(N * V));
    dl = dlogits_.data();
  }
  // cross_entropy writes dlogits (zero where the mask is); the distillation term adds to them.
  double loss = 0.0;
  if (ce_w != 0.0 || kd_w == 0.0) {
    loss = ce_w * cross_entropy<float>(logits_.data(), targets_.data(), weights_.data(), N, V, dl, ce_w * inv_weight) *
           inv_weight;
  } else if (dl) {
    std::fill(dlogits_.begin(), dlogits_.end(), 0.0f);
  }
  if (kd_w != 0.0) {
    loss += kd_w * kl_distill<float>(logits_.data(), batch.teacher_logits.data(), weights_.data(), N, V, dl,
                                     kd_w * inv_weight) *
            inv_weight;
  }
  if (!backward) return loss;

  // ---- backward ----
  std::fill(grad.begin(), grad.end(), 0.0f);
  auto g = [&](int slot) { return grad.data() + P.tensor(slot).offset; };
  // dW = dY^T X for a linear weight used once, then passed back through the seam.
  auto weight_grad = [&](int slot, const float* dy, const float* x, int64_t k_tokens) {
    const ParamTensor& t = P.tensor(slot);
    gemm_atb(dy, x, g(slot), t.rows, t.cols, k_tokens, false);
    linear_->backward(slot, P.data(slot), t.rows, t.cols, g(slot));
  };
  ensure(dx_, size_t(N * d));
  ensure(dxn_, size_t(N * d));
  ensure(dq_, size_t(N * d));
  ensure(dk_, size_t(N * dkv));
  ensure(dv_, size_t(N * dkv));
  ensure(datt_, size_t(N * d));
  ensure(dh_, size_t(N * ff));
  ensure(dg_, size_t(N * ff));
  ensure(du_, size_t(N * ff));

  // Output head. When tied, its gradient goes through the seam on its own before joining the
  // embedding's lookup gradient.
  gemm_ab(dlogits_.data(), w_eff[size_t(out_slot)], dxn_.data(), N, d, V, false);
  if (P.tied_output()) {
    ensure(dout_w_, size_t(V * d));
    gemm_atb(dlogits_.data(), xn_out_.data(), dout_w_.data(), V, d, N, false);
    linear_->backward(out_slot, P.data(out_slot), V, d, dout_w_.data());
    std::copy(dout_w_.begin(), dout_w_.end(), g(P.tok_embd()));
  } else {
    weight_grad(out_slot, dlogits_.data(), xn_out_.data(), N);
  }
  rmsnorm_backward(x_final_.data(), P.data(P.output_norm()), rstd_out_.data(), dxn_.data(), dx_.data(),
                   g(P.output_norm()), N, d, false);

  for (int64_t l = L - 1; l >= 0; --l) {
    const LayerSlots& S = P.layer(l);
    LayerActs& a = acts_[size_t(l)];
    // x_next = x_mid + h W_down^T;  dx_ holds dLoss/dx_next.
    gemm_ab(dx_.data(), w_eff[size_t(S.w_down)], dh_.data(), N, ff, d, false);
    weight_grad(S.w_down, dx_.data(), a.h.data(), N);
    swiglu_backward(a.gate.data(), a.up.data(), dh_.data(), dg_.data(), du_.data(), N * ff);
    gemm_ab(dg_.data(), w_eff[size_t(S.w_gate)], dxn_.data(), N, d, ff, false);
    gemm_ab(du_.data(), w_eff[size_t(S.w_up)], dxn_.data(), N, d, ff, true);
    weight_grad(S.w_gate, dg_.data(), a.xn_ffn.data(), N);
    weight_grad(S.w_up, du_.data(), a.xn_ffn.data(), N);
    rmsnorm_backward(a.x_mid.data(), P.data(S.ffn_norm), a.rstd_ffn.data(), dxn_.data(), dx_.data(),
                     g(S.ffn_norm), N, d, true);
    // x_mid = x + att W_o^T;  dx_ now holds dLoss/dx_mid.
    gemm_ab(dx_.data(), w_eff[size_t(S.wo)], datt_.data(), N, d, d, false);
    weight_grad(S.wo, dx_.data(), a.att.data(), N);
    attention_backward(a.q.data(), a.k.data(), a.v.data(), a.probs.data(), datt_.data(), dq_.data(), dk_.data(),
                       dv_.data(), shape);
    rope_backward(dq_.data(), N, T, H, hd, c.n_rot, rope_cos_.data(), rope_sin_.data());
    rope_backward(dk_.data(), N, T, Hkv, hd, c.n_rot, rope_cos_.data(), rope_sin_.data());
    gemm_ab(dq_.data(), w_eff[size_t(S.wq)], dxn_.data(), N, d, d, false);
    gemm_ab(dk_.data(), w_eff[size_t(S.wk)], dxn_.data(), N, d, dkv, true);
    gemm_ab(dv_.data(), w_eff[size_t(S.wv)], dxn_.data(), N, d, dkv, true);
    weight_grad(S.wq, dq_.data(), a.xn_att.data(), N);
    weight_grad(S.wk, dk_.data(), a.xn_att.data(), N);
    weight_grad(S.wv, dv_.data(), a.xn_att.data(), N);
    rmsnorm_backward(a.x.data(), P.data(S.attn_norm), a.rstd_att.data(), dxn_.data(), dx_.data(),
                     g(S.attn_norm), N, d, true);
  }
  embedding_backward(inputs_.data(), dx_.data(), N, d, g(P.tok_embd()));
  return loss;
}

}  // namespace qbench::train
