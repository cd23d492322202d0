#include "engine/train/ops.h"

#include <Eigen/Core>
#include <cmath>

#include "engine/core/error.h"

namespace qbench::train {
namespace {

template <class S>
using RowMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class S>
using CMap = Eigen::Map<const RowMat<S>, 0, Eigen::OuterStride<>>;
template <class S>
using MMap = Eigen::Map<RowMat<S>, 0, Eigen::OuterStride<>>;

template <class S>
CMap<S> cmap(const S* p, int64_t rows, int64_t cols, int64_t ld) {
  return CMap<S>(p, rows, cols, Eigen::OuterStride<>(ld));
}
template <class S>
MMap<S> mmap(S* p, int64_t rows, int64_t cols, int64_t ld) {
  return MMap<S>(p, rows, cols, Eigen::OuterStride<>(ld));
}

// Rows of activations per GEMM task (tokens), and output features per weight-gradient task.
// Fixed, so chunk results never depend on the thread count.
constexpr int64_t kTokenChunk = 256;
constexpr int64_t kFeatureChunk = 128;
// Elements per task of element-wise loops.
constexpr int64_t kElemChunk = 1 << 15;

}  // namespace

template <class S>
void gemm_abt(const S* a, const S* b, S* c, int64_t m, int64_t n, int64_t k, bool accumulate) {
  const auto B = cmap(b, n, k, k);
  parallel_chunks(m, kTokenChunk, [&](int64_t r0, int64_t r1) {
    auto C = mmap(c + r0 * n, r1 - r0, n, n);
    const auto A = cmap(a + r0 * k, r1 - r0, k, k);
    if (accumulate) {
      C.noalias() += A * B.transpose();
    } else {
      C.noalias() = A * B.transpose();
    }
  });
}

template <class S>
void gemm_ab(const S* a, const S* b, S* c, int64_t m, int64_t n, int64_t k, bool accumulate) {
  const auto B = cmap(b, k, n, n);
  parallel_chunks(m, kTokenChunk, [&](int64_t r0, int64_t r1) {
    auto C = mmap(c + r0 * n, r1 - r0, n, n);
    const auto A = cmap(a + r0 * k, r1 - r0, k, k);
    if (accumulate) {
      C.noalias() += A * B;
    } else {
      C.noalias() = A * B;
    }
  });
}

template <class S>
void gemm_atb(const S* a, const S* b, S* c, int64_t m, int64_t n, int64_t k, bool accumulate) {
  const auto B = cmap(b, k, n, n);
  parallel_chunks(m, kFeatureChunk, [&](int64_t r0, int64_t r1) {
    auto C = mmap(c + r0 * n, r1 - r0, n, n);
    const auto A = cmap(a + r0, k, r1 - r0, m);  // columns r0..r1 of A [K x M]
    if (accumulate) {
      C.noalias() += A.transpose() * B;
    } else {
      C.noalias() = A.transpose() * B;
    }
  });
}

template <class S>
void embedding_forward(const S* table, const int32_t* ids, int64_t n, int64_t d, S* out) {
  for (int64_t t = 0; t < n; ++t) std::copy(table + ids[t] * d, table + (ids[t] + 1) * d, out + t * d);
}

template <class S>
void embedding_backward(const int32_t* ids, const S* dout, int64_t n, int64_t d, S* dtable) {
  for (int64_t t = 0; t < n; ++t) {
    S* row = dtable + ids[t] * d;
    const S* g = dout + t * d;
    for (int64_t i = 0; i < d; ++i) row[i] += g[i];
  }
}

template <class S>
void rmsnorm_forward(const S* x, const S* w, S* y, S* rstd, int64_t n, int64_t d, double eps) {
  parallel_chunks(n, kTokenChunk, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const S* xr = x + t * d;
      double ss = 0.0;
      for (int64_t i = 0; i < d; ++i) ss += double(xr[i]) * double(xr[i]);
      const S scale = S(1.0 / std::sqrt(ss / double(d) + eps));
      rstd[t] = scale;
      S* yr = y + t * d;
      for (int64_t i = 0; i < d; ++i) yr[i] = xr[i] * scale * w[i];
    }
  });
}

template <class S>
void rmsnorm_backward(const S* x, const S* w, const S* rstd, const S* dy, S* dx, S* dw, int64_t n,
                      int64_t d, bool accumulate_dx) {
  const int64_t n_chunks = (n + kTokenChunk - 1) / kTokenChunk;
  std::vector<S> dw_part(size_t(n_chunks * d), S(0));  // per-chunk partials, summed in order
  parallel_chunks(n, kTokenChunk, [&](int64_t t0, int64_t t1) {
    S* dwp = dw_part.data() + (t0 / kTokenChunk) * d;
    for (int64_t t = t0; t < t1; ++t) {
      const S* xr = x + t * d;
      const S* g = dy + t * d;
      const S r = rstd[t];
      double dot = 0.0;  // sum_i dy_i w_i x_i
      for (int64_t i = 0; i < d; ++i) {
        dot += double(g[i]) * double(w[i]) * double(xr[i]);
        dwp[i] += g[i] * xr[i] * r;
      }
      const S coef = S(dot * double(r) * double(r) * double(r) / double(d));
      S* dxr = dx + t * d;
      for (int64_t i = 0; i < d; ++i) {
        const S v = r * g[i] * w[i] - xr[i] * coef;
        dxr[i] = accumulate_dx ? dxr[i] + v : v;
      }
    }
  });
  for (int64_t c = 0; c < n_chunks; ++c) {
    for (int64_t i = 0; i < d; ++i) dw[i] += dw_part[size_t(c * d + i)];
  }
}

template <class S>
void rope_table(int64_t T, int64_t n_rot, double freq_base, std::vector<S>& cos, std::vector<S>& sin) {
  const int64_t half = n_rot / 2;
  cos.resize(size_t(T * half));
  sin.resize(size_t(T * half));
  for (int64_t p = 0; p < T; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double theta = double(p) * std::pow(freq_base, -2.0 * double(i) / double(n_rot));
      cos[size_t(p * half + i)] = S(std::cos(theta));
      sin[size_t(p * half + i)] = S(std::sin(theta));
    }
  }
}

namespace {
template <class S, bool kInverse>
void rope_apply(S* x, int64_t n, int64_t T, int64_t n_heads, int64_t head_dim, int64_t n_rot,
                const S* cos, const S* sin) {
  const int64_t half = n_rot / 2, width = n_heads * head_dim;
  parallel_chunks(n, kTokenChunk, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const S* cs = cos + (t % T) * half;
      const S* sn = sin + (t % T) * half;
      for (int64_t h = 0; h < n_heads; ++h) {
        S* v = x + t * width + h * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const S x0 = v[2 * i], x1 = v[2 * i + 1];
          if constexpr (kInverse) {  // R(theta)^T = R(-theta)
            v[2 * i] = x0 * cs[i] + x1 * sn[i];
            v[2 * i + 1] = -x0 * sn[i] + x1 * cs[i];
          } else {
            v[2 * i] = x0 * cs[i] - x1 * sn[i];
            v[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
          }
        }
      }
    }
  });
}
}  // namespace

template <class S>
void rope_forward(S* x, int64_t n, int64_t T, int64_t n_heads, int64_t head_dim, int64_t n_rot,
                  const S* cos, const S* sin) {
  rope_apply<S, false>(x, n, T, n_heads, head_dim, n_rot, cos, sin);
}
template <class S>
void rope_backward(S* dx, int64_t n, int64_t T, int64_t n_heads, int64_t head_dim, int64_t n_rot,
                   const S* cos, const S* sin) {
  rope_apply<S, true>(dx, n, T, n_heads, head_dim, n_rot, cos, sin);
}

template <class S>
void attention_forward(const S* q, const S* k, const S* v, S* out, S* probs, const AttentionShape& s) {
  const int64_t T = s.T, hd = s.head_dim, H = s.n_head, group = s.n_head / s.n_head_kv;
  const int64_t ldq = H * hd, ldk = s.n_head_kv * hd;
  const S scale = S(1.0 / std::sqrt(double(hd)));
  parallel_chunks(s.n_seq * H, 1, [&](int64_t job, int64_t) {
    const int64_t b = job / H, h = job % H, kvh = h / group;
    const auto Q = cmap(q + b * T * ldq + h * hd, T, hd, ldq);
    const auto K = cmap(k + b * T * ldk + kvh * hd, T, hd, ldk);
    const auto V = cmap(v + b * T * ldk + kvh * hd, T, hd, ldk);
    auto P = mmap(probs + job * T * T, T, T, T);
    P.noalias() = Q * K.transpose();
    for (int64_t i = 0; i < T; ++i) {
      S* row = P.data() + i * T;
      S mx = row[0] * scale;
      for (int64_t j = 0; j <= i; ++j) {
        row[j] *= scale;
        mx = std::max(mx, row[j]);
      }
      double sum = 0.0;
      for (int64_t j = 0; j <= i; ++j) {
        row[j] = std::exp(row[j] - mx);
        sum += double(row[j]);
      }
      const S inv = S(1.0 / sum);
      for (int64_t j = 0; j <= i; ++j) row[j] *= inv;
      for (int64_t j = i + 1; j < T; ++j) row[j] = S(0);
    }
    auto O = mmap(out + b * T * ldq + h * hd, T, hd, ldq);
    O.noalias() = P * V;
  });
}

template <class S>
void attention_backward(const S* q, const S* k, const S* v, const S* probs, const S* dout, S* dq,
                        S* dk, S* dv, const AttentionShape& s) {
  const int64_t T = s.T, hd = s.head_dim, H = s.n_head, Hkv = s.n_head_kv, group = H / Hkv;
  const int64_t ldq = H * hd, ldk = Hkv * hd;
  const S scale = S(1.0 / std::sqrt(double(hd)));
  parallel_chunks(s.n_seq * Hkv, 1, [&](int64_t job, int64_t) {
    const int64_t b = job / Hkv, kvh = job % Hkv;
    const auto K = cmap(k + b * T * ldk + kvh * hd, T, hd, ldk);
    const auto V = cmap(v + b * T * ldk + kvh * hd, T, hd, ldk);
    auto dK = mmap(dk + b * T * ldk + kvh * hd, T, hd, ldk);
    auto dV = mmap(dv + b * T * ldk + kvh * hd, T, hd, ldk);
    dK.setZero();
    dV.setZero();
    // Small per-task scratch (T x T); allocation is negligible next to the products.
    RowMat<S> dS(T, T);
    for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
      const auto Q = cmap(q + b * T * ldq + h * hd, T, hd, ldq);
      const auto dO = cmap(dout + b * T * ldq + h * hd, T, hd, ldq);
      const auto P = cmap(probs + (b * H + h) * T * T, T, T, T);
      dS.noalias() = dO * V.transpose();  // dP
      for (int64_t i = 0; i < T; ++i) {
        const S* p = P.data() + i * T;
        S* row = dS.data() + i * T;
        double dot = 0.0;
        for (int64_t j = 0; j <= i; ++j) dot += double(p[j]) * double(row[j]);
        for (int64_t j = 0; j <= i; ++j) row[j] = p[j] * (row[j] - S(dot)) * scale;
        for (int64_t j = i + 1; j < T; ++j) row[j] = S(0);
      }
      auto dQ = mmap(dq + b * T * ldq + h * hd, T, hd, ldq);
      dQ.noalias() = dS * K;
      dK.noalias() += dS.transpose() * Q;
      dV.noalias() += P.transpose() * dO;
    }
  });
}

// Element-wise on fixed blocks of 16 held in aligned local Eigen arrays, so exp is vectorised
// and every element goes through the same packet code whatever the buffers' addresses (a Map
// over the raw buffer would peel a misaligned head into scalar code, whose exp rounds
// differently, and break run-to-run determinism). The tail block is zero-padded.
namespace {
template <class S>
using Block16 = Eigen::Array<S, 16, 1>;

template <class S>
Block16<S> load16(const S* p, int64_t m) {
  Block16<S> b;
  if (m == 16) {
    b = Eigen::Map<const Block16<S>>(p);
  } else {
    b.setZero();
    for (int64_t i = 0; i < m; ++i) b[i] = p[i];
  }
  return b;
}
template <class S>
void store16(const Block16<S>& b, S* p, int64_t m) {
  for (int64_t i = 0; i < m; ++i) p[i] = b[i];
}
}  // namespace

template <class S>
void swiglu_forward(const S* g, const S* u, S* h, int64_t n) {
  parallel_chunks(n, kElemChunk, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i += 16) {
      const int64_t m = std::min<int64_t>(16, i1 - i);
      const Block16<S> G = load16(g + i, m), U = load16(u + i, m);
      const Block16<S> Hb = G / (S(1) + (-G).exp()) * U;
      store16(Hb, h + i, m);
    }
  });
}

template <class S>
void swiglu_backward(const S* g, const S* u, const S* dh, S* dg, S* du, int64_t n) {
  parallel_chunks(n, kElemChunk, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i += 16) {
      const int64_t m = std::min<int64_t>(16, i1 - i);
      const Block16<S> G = load16(g + i, m), U = load16(u + i, m), DH = load16(dh + i, m);
      const Block16<S> sig = S(1) / (S(1) + (-G).exp());
      const Block16<S> DU = DH * G * sig;
      const Block16<S> DG = DH * U * sig * (S(1) + G * (S(1) - sig));
      store16(DU, du + i, m);
      store16(DG, dg + i, m);
    }
  });
}

template <class S>
double cross_entropy(const S* logits, const int32_t* targets, const S* weights, int64_t n, int64_t V,
                     S* dlogits, double grad_scale) {
  const int64_t n_chunks = (n + kTokenChunk - 1) / kTokenChunk;
  std::vector<double> part(size_t(n_chunks), 0.0);
  parallel_chunks(n, kTokenChunk, [&](int64_t t0, int64_t t1) {
    double acc = 0.0;
    for (int64_t t = t0; t < t1; ++t) {
      const S* l = logits + t * V;
      S* dl = dlogits ? dlogits + t * V : nullptr;
      const S w = weights[t];
      if (w == S(0)) {
        if (dl) std::fill(dl, dl + V, S(0));
        continue;
      }
      S mx = l[0];
      for (int64_t j = 1; j < V; ++j) mx = std::max(mx, l[j]);
      double sum = 0.0;
      for (int64_t j = 0; j < V; ++j) sum += std::exp(double(l[j] - mx));
      const double lse = double(mx) + std::log(sum);
      const int32_t y = targets[t];
      acc += double(w) * (lse - double(l[y]));
      if (dl) {
        const double c = grad_scale * double(w);
        for (int64_t j = 0; j < V; ++j) dl[j] = S(c * std::exp(double(l[j]) - lse));
        dl[y] -= S(c);
      }
    }
    part[size_t(t0 / kTokenChunk)] = acc;
  });
  double total = 0.0;
  for (double p : part) total += p;
  return total;
}

template <class S>
double kl_distill(const S* student, const S* teacher, const S* weights, int64_t n, int64_t V, S* dlogits,
                  double grad_scale) {
  const int64_t n_chunks = (n + kTokenChunk - 1) / kTokenChunk;
  std::vector<double> part(size_t(n_chunks), 0.0);
  parallel_chunks(n, kTokenChunk, [&](int64_t t0, int64_t t1) {
    double acc = 0.0;
    for (int64_t t = t0; t < t1; ++t) {
      const S w = weights[t];
      if (w == S(0)) continue;
      const S* ls = student + t * V;
      const S* lt = teacher + t * V;
      auto lse = [V](const S* l) {
        S mx = l[0];
        for (int64_t j = 1; j < V; ++j) mx = std::max(mx, l[j]);
        double sum = 0.0;
        for (int64_t j = 0; j < V; ++j) sum += std::exp(double(l[j] - mx));
        return double(mx) + std::log(sum);
      };
      const double zs = lse(ls), zt = lse(lt);
      // KL = sum_j p_t (log p_t - log p_s)
      double kl = 0.0;
      for (int64_t j = 0; j < V; ++j) {
        const double log_pt = double(lt[j]) - zt;
        kl += std::exp(log_pt) * (log_pt - (double(ls[j]) - zs));
      }
      acc += double(w) * kl;
      if (dlogits) {
        const double c = grad_scale * double(w);
        S* dl = dlogits + t * V;
        for (int64_t j = 0; j < V; ++j) {
          dl[j] += S(c * (std::exp(double(ls[j]) - zs) - std::exp(double(lt[j]) - zt)));
        }
      }
    }
    part[size_t(t0 / kTokenChunk)] = acc;
  });
  double total = 0.0;
  for (double p : part) total += p;
  return total;
}

#define QB_TRAIN_INSTANTIATE(S)                                                                     \
  template void gemm_abt<S>(const S*, const S*, S*, int64_t, int64_t, int64_t, bool);                 \
  template void gemm_ab<S>(const S*, const S*, S*, int64_t, int64_t, int64_t, bool);                  \
  template void gemm_atb<S>(const S*, const S*, S*, int64_t, int64_t, int64_t, bool);                 \
  template void embedding_forward<S>(const S*, const int32_t*, int64_t, int64_t, S*);                 \
  template void embedding_backward<S>(const int32_t*, const S*, int64_t, int64_t, S*);                \
  template void rmsnorm_forward<S>(const S*, const S*, S*, S*, int64_t, int64_t, double);             \
  template void rmsnorm_backward<S>(const S*, const S*, const S*, const S*, S*, S*, int64_t, int64_t, \
                                    bool);                                                          \
  template void rope_table<S>(int64_t, int64_t, double, std::vector<S>&, std::vector<S>&);            \
  template void rope_forward<S>(S*, int64_t, int64_t, int64_t, int64_t, int64_t, const S*, const S*); \
  template void rope_backward<S>(S*, int64_t, int64_t, int64_t, int64_t, int64_t, const S*, const S*); \
  template void attention_forward<S>(const S*, const S*, const S*, S*, S*, const AttentionShape&);   \
  template void attention_backward<S>(const S*, const S*, const S*, const S*, const S*, S*, S*, S*,  \
                                      const AttentionShape&);                                       \
  template void swiglu_forward<S>(const S*, const S*, S*, int64_t);                                   \
  template void swiglu_backward<S>(const S*, const S*, const S*, S*, S*, int64_t);                    \
  template double cross_entropy<S>(const S*, const int32_t*, const S*, int64_t, int64_t, S*, double); \
  template double kl_distill<S>(const S*, const S*, const S*, int64_t, int64_t, S*, double);

QB_TRAIN_INSTANTIATE(float)
QB_TRAIN_INSTANTIATE(double)

}  // namespace qbench::train
