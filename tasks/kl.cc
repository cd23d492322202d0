#include "tasks/kl.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/core/error.h"

namespace qbench {
namespace {

// log-sum-exp of a row and its argmax (lowest id on ties).
struct RowSummary {
  float max;
  int32_t argmax;
  double log_sum;  // log sum exp(l - max)
};

RowSummary summarize(const float* l, int64_t V) {
  RowSummary s{l[0], 0, 0.0};
  for (int64_t i = 1; i < V; ++i) {
    if (l[i] > s.max) {
      s.max = l[i];
      s.argmax = int32_t(i);
    }
  }
  double sum = 0.0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(double(l[i] - s.max));
  s.log_sum = std::log(sum);
  return s;
}

double logp(const float* l, const RowSummary& s, int32_t id) { return double(l[id] - s.max) - s.log_sum; }

// Percentile by nearest rank on sorted values (p in [0, 1]).
double percentile(const std::vector<float>& sorted, double p) {
  if (sorted.empty()) return 0.0;
  const size_t i = size_t(std::lround(p * double(sorted.size() - 1)));
  return sorted[i];
}

}  // namespace

size_t ReferenceLogits::bytes() const {
  return top_ids.size() * sizeof(int32_t) + (top_logp.size() + tail_logp.size() + target_logp.size()) * sizeof(float);
}

ReferenceLogits compute_reference_logits(const Model& reference, const std::vector<int32_t>& tokens,
                                         const PerplexityOptions& opt, int64_t top_k) {
  const int64_t V = reference.config.n_vocab;
  if (top_k < 1 || top_k > V) throw Error("top-K for reference logits must be in [1, " + std::to_string(V) + "]");
  const int64_t per_chunk = scored_per_chunk(opt.n_ctx), first = opt.n_ctx / 2;
  const int64_t max_chunks = int64_t(tokens.size()) / std::max<int64_t>(opt.n_ctx, 1);
  ReferenceLogits r;
  r.n_ctx = opt.n_ctx;
  r.top_k = top_k;
  const size_t cap = size_t(max_chunks * per_chunk);
  r.top_ids.resize(cap * size_t(top_k));
  r.top_logp.resize(cap * size_t(top_k));
  r.tail_logp.resize(cap);
  r.target_logp.resize(cap);
  r.n_chunks = for_each_scored_chunk(reference, tokens, opt, [&](int64_t c, const float* logits,
                                                                  const std::vector<int32_t>& chunk) {
    std::vector<int32_t> idx(static_cast<size_t>(V));
    for (int64_t i = 0; i < per_chunk; ++i) {
      const float* l = logits + (first - first_logit_position(opt) + i) * V;
      const RowSummary s = summarize(l, V);
      std::iota(idx.begin(), idx.end(), 0);
      std::partial_sort(idx.begin(), idx.begin() + top_k, idx.end(),
                        [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
      const size_t pos = size_t(c * per_chunk + i);
      double top_mass = 0.0;
      for (int64_t k = 0; k < top_k; ++k) {
        const double lp = logp(l, s, idx[size_t(k)]);
        r.top_ids[pos * size_t(top_k) + size_t(k)] = idx[size_t(k)];
        r.top_logp[pos * size_t(top_k) + size_t(k)] = float(lp);
        top_mass += std::exp(lp);
      }
      r.tail_logp[pos] = float(std::log(std::max(1.0 - top_mass, 1e-30)));
      r.target_logp[pos] = float(logp(l, s, chunk[size_t(first + i + 1)]));
    }
  });
  r.n_positions = r.n_chunks * per_chunk;
  r.top_ids.resize(size_t(r.n_positions * top_k));
  r.top_logp.resize(size_t(r.n_positions * top_k));
  r.tail_logp.resize(size_t(r.n_positions));
  r.target_logp.resize(size_t(r.n_positions));
  return r;
}

KlResult kl_divergence(const Model& q, const ReferenceLogits& ref, const std::vector<int32_t>& tokens,
                       const PerplexityOptions& opt) {
  const int64_t V = q.config.n_vocab, K = ref.top_k;
  if (opt.n_ctx != ref.n_ctx) {
    throw Error("KL divergence: context " + std::to_string(opt.n_ctx) + " differs from the reference's " +
                std::to_string(ref.n_ctx));
  }
  for (int32_t id : ref.top_ids) {
    if (id >= V) throw Error("KL divergence: the model's vocabulary (" + std::to_string(V) + ") differs from the reference's");
  }
  const int64_t per_chunk = scored_per_chunk(opt.n_ctx), first = opt.n_ctx / 2;
  const int64_t n = ref.n_positions;
  std::vector<float> kld(static_cast<size_t>(n)), q_target(static_cast<size_t>(n));
  std::vector<uint8_t> same(static_cast<size_t>(n));
  PerplexityOptions o = opt;
  o.max_chunks = ref.n_chunks;
  const int64_t n_chunks = for_each_scored_chunk(q, tokens, o, [&](int64_t c, const float* logits,
                                                                    const std::vector<int32_t>& chunk) {
    for (int64_t i = 0; i < per_chunk; ++i) {
      const float* l = logits + (first - first_logit_position(o) + i) * V;
      const RowSummary s = summarize(l, V);
      const size_t pos = size_t(c * per_chunk + i);
      const int32_t* ids = ref.top_ids.data() + pos * size_t(K);
      const float* lp_ref = ref.top_logp.data() + pos * size_t(K);
      double kl = 0.0, q_top_mass = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const double lq = logp(l, s, ids[k]);
        kl += std::exp(double(lp_ref[k])) * (double(lp_ref[k]) - lq);
        q_top_mass += std::exp(lq);
      }
      const double p_tail = std::exp(double(ref.tail_logp[pos]));
      const double q_tail = std::max(1.0 - q_top_mass, 1e-30);
      if (p_tail > 1e-12) kl += p_tail * (double(ref.tail_logp[pos]) - std::log(q_tail));
      kld[pos] = float(std::max(kl, 0.0));
      same[pos] = s.argmax == ids[0];
      q_target[pos] = float(logp(l, s, chunk[size_t(first + i + 1)]));
    }
  });
  if (n_chunks != ref.n_chunks) throw Error("KL divergence: the text differs from the reference's");

  KlResult r;
  r.n_positions = n;
  double sum = 0, sum2 = 0, same_n = 0;
  double nq = 0, nq2 = 0, np = 0, np2 = 0, npq = 0;
  double dp = 0, dp2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double k = kld[size_t(i)];
    sum += k;
    sum2 += k * k;
    same_n += same[size_t(i)];
    const double a = -double(q_target[size_t(i)]), b = -double(ref.target_logp[size_t(i)]);
    nq += a;
    nq2 += a * a;
    np += b;
    np2 += b * b;
    npq += a * b;
    const double d = std::exp(-a) - std::exp(-b);
    dp += d;
    dp2 += d * d;
  }
  const double N = double(n);
  auto stderr_of = [&](double s1, double s2) {
    const double m = s1 / N, var = s2 / N - m * m;
    return n > 1 && var > 0 ? std::sqrt(var / (N - 1)) : 0.0;
  };
  r.kld_mean = sum / N;
  r.kld_stderr = stderr_of(sum, sum2);
  r.same_top = same_n / N;
  r.same_top_stderr = std::sqrt(r.same_top * (1 - r.same_top) / std::max(N - 1, 1.0));
  r.ppl_q = std::exp(nq / N);
  r.ppl_q_stderr = r.ppl_q * stderr_of(nq, nq2);
  r.ppl_ref = std::exp(np / N);
  r.ln_ppl_ratio = (nq - np) / N;
  // Var(a - b) = Var(a) + Var(b) - 2 Cov(a, b), per position.
  const double va = nq2 / N - (nq / N) * (nq / N), vb = np2 / N - (np / N) * (np / N);
  const double cov = npq / N - (nq / N) * (np / N);
  const double vd = va + vb - 2 * cov;
  r.ln_ppl_ratio_stderr = n > 1 && vd > 0 ? std::sqrt(vd / (N - 1)) : 0.0;
  r.delta_p_mean = dp / N;
  r.delta_p_stderr = stderr_of(dp, dp2);
  r.delta_p_rms = std::sqrt(dp2 / N);
  std::vector<float> sorted = kld;
  std::sort(sorted.begin(), sorted.end());
  r.kld_max = sorted.empty() ? 0.0 : sorted.back();
  r.kld_p99_9 = percentile(sorted, 0.999);
  r.kld_p99 = percentile(sorted, 0.99);
  r.kld_p95 = percentile(sorted, 0.95);
  r.kld_p90 = percentile(sorted, 0.90);
  r.kld_median = percentile(sorted, 0.5);
  r.kld_p10 = percentile(sorted, 0.10);
  r.kld_p5 = percentile(sorted, 0.05);
  r.kld_p1 = percentile(sorted, 0.01);
  r.kld_p0_1 = percentile(sorted, 0.001);
  r.kld = std::move(kld);
  return r;
}

}  // namespace qbench
