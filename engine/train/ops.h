// Forward and backward kernels of the Llama training step, templated on the scalar type: the
// model computes in float, the gradient-check tests run the same code in double.
//
// Layout: activations are row-major [n_tokens x width], tokens of a batch ordered sequence by
// sequence (token t of sequence b is row b * T + t). Weights are row-major [out x in] like the
// inference engine's, so a linear layer is Y = X W^T.
//
// Determinism: every parallel loop runs over fixed chunks whose size does not depend on the
// thread count, each output element is written by exactly one chunk, and reductions across
// chunks (norm-weight gradients, losses) add the per-chunk partials in chunk order. Results are
// therefore identical bit for bit for any number of threads.
//
// Backward functions take the upstream gradient `d<output>` and write (or, where stated,
// add to) the gradients of their inputs.
#pragma once

#include <cstdint>
#include <vector>

namespace qbench::train {

// ---- Matrix products (Eigen, row-major, contiguous) -----------------------------------------
// C[M x N] (+)= A[M x K] * B[N x K]^T      (linear forward, B = W [out x in])
template <class S>
void gemm_abt(const S* a, const S* b, S* c, int64_t m, int64_t n, int64_t k, bool accumulate);
// C[M x N] (+)= A[M x K] * B[K x N]        (input gradient dX = dY W)
template <class S>
void gemm_ab(const S* a, const S* b, S* c, int64_t m, int64_t n, int64_t k, bool accumulate);
// C[M x N] (+)= A[K x M]^T * B[K x N]      (weight gradient dW = dY^T X, K = tokens)
template <class S>
void gemm_atb(const S* a, const S* b, S* c, int64_t m, int64_t n, int64_t k, bool accumulate);

// ---- Embedding --------------------------------------------------------------------------------
// out[t] = table[ids[t]]; table [V x d]. ids must already be validated.
template <class S>
void embedding_forward(const S* table, const int32_t* ids, int64_t n, int64_t d, S* out);
// dtable[ids[t]] += dout[t], in token order.
template <class S>
void embedding_backward(const int32_t* ids, const S* dout, int64_t n, int64_t d, S* dtable);

// ---- RMSNorm ----------------------------------------------------------------------------------
// y[t] = x[t] * rstd[t] * w, rstd[t] = 1 / sqrt(mean(x[t]^2) + eps), the sum of squares in
// double (as the inference engine and ggml do). rstd [n] is saved for the backward.
template <class S>
void rmsnorm_forward(const S* x, const S* w, S* y, S* rstd, int64_t n, int64_t d, double eps);
// dx[t] = rstd * (dy*w) - x * rstd^3 / d * sum(dy*w*x)   (added to dx when accumulate_dx)
// dw   += sum_t dy[t] * x[t] * rstd[t]
template <class S>
void rmsnorm_backward(const S* x, const S* w, const S* rstd, const S* dy, S* dx, S* dw, int64_t n,
                      int64_t d, bool accumulate_dx);

// ---- RoPE (normal pairing: dims (2i, 2i+1) of each head, i < n_rot/2) ------------------------
// cos/sin tables [T x n_rot/2]: theta = pos * base^(-2i / n_rot), computed in double and rounded
// to S, as the inference engine's table.
template <class S>
void rope_table(int64_t T, int64_t n_rot, double freq_base, std::vector<S>& cos, std::vector<S>& sin);
// In place on x [n x n_heads*head_dim]; row r has position r % T.
template <class S>
void rope_forward(S* x, int64_t n, int64_t T, int64_t n_heads, int64_t head_dim, int64_t n_rot,
                  const S* cos, const S* sin);
// The transposed rotation, in place on the gradient.
template <class S>
void rope_backward(S* dx, int64_t n, int64_t T, int64_t n_heads, int64_t head_dim, int64_t n_rot,
                   const S* cos, const S* sin);

// ---- Causal self-attention with grouped-query heads ------------------------------------------
// q, out [B*T x H*hd]; k, v [B*T x Hkv*hd]; query head h reads KV head h / (H / Hkv).
// probs [B x H x T x T] receives the softmax weights (zero above the diagonal) for the backward.
struct AttentionShape {
  int64_t n_seq, T, n_head, n_head_kv, head_dim;
};
template <class S>
void attention_forward(const S* q, const S* k, const S* v, S* out, S* probs, const AttentionShape& s);
// dq [B*T x H*hd], dk, dv [B*T x Hkv*hd] are overwritten. One task per (sequence, KV head)
// sums its query heads' contributions in head order.
template <class S>
void attention_backward(const S* q, const S* k, const S* v, const S* probs, const S* dout, S* dq,
                        S* dk, S* dv, const AttentionShape& s);

// ---- SwiGLU -----------------------------------------------------------------------------------
// h = silu(g) * u, silu(g) = g / (1 + exp(-g)).
template <class S>
void swiglu_forward(const S* g, const S* u, S* h, int64_t n);
template <class S>
void swiglu_backward(const S* g, const S* u, const S* dh, S* dg, S* du, int64_t n);

// ---- Softmax cross-entropy --------------------------------------------------------------------
// logits [n x V]. Returns sum_t weight[t] * -log softmax(logits[t])[target[t]] (double; rows
// with weight 0 are skipped and their targets not read). When dlogits is not null it receives
// grad_scale * weight[t] * (softmax(logits[t]) - onehot(target[t])).
template <class S>
double cross_entropy(const S* logits, const int32_t* targets, const S* weights, int64_t n, int64_t V,
                     S* dlogits, double grad_scale);

// ---- Distillation: KL(teacher || student) -----------------------------------------------------
// student, teacher [n x V] logits. Returns sum_t weight[t] * KL(softmax(teacher[t]) ||
// softmax(student[t])) (double; rows with weight 0 skipped). When dlogits is not null it
// receives, added to what it holds, grad_scale * weight[t] * (softmax(student[t]) -
// softmax(teacher[t])).
template <class S>
double kl_distill(const S* student, const S* teacher, const S* weights, int64_t n, int64_t V, S* dlogits,
                  double grad_scale);

// ---- Helpers ----------------------------------------------------------------------------------
// Runs f(begin, end) over [0, n) in chunks of `chunk` in parallel (fixed chunking).
template <class F>
void parallel_chunks(int64_t n, int64_t chunk, const F& f);

}  // namespace qbench::train

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <algorithm>

namespace qbench::train {

template <class F>
void parallel_chunks(int64_t n, int64_t chunk, const F& f) {
  if (n <= 0) return;
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  if (n_chunks == 1) {
    f(int64_t(0), n);
    return;
  }
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, n_chunks, 1),
      [&](const tbb::blocked_range<int64_t>& r) {
        for (int64_t c = r.begin(); c < r.end(); ++c) f(c * chunk, std::min(n, (c + 1) * chunk));
      },
      tbb::simple_partitioner());
}

}  // namespace qbench::train
