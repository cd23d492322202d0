// Tests of engine/train: gradient checks of every operation (double precision), of a whole tiny
// model (FP32), GGUF export against the inference engine, AdamW convergence, determinism and
// checkpoint resume.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "engine/core/error.h"
#include "engine/model/forward.h"
#include "engine/model/model.h"
#include "engine/train/adamw.h"
#include "engine/train/export.h"
#include "engine/train/ops.h"
#include "engine/train/trainer.h"
#include "tests/engine/train_test_util.h"
#include "tests/test_util.h"

namespace qbench::train {
namespace {

std::vector<double> randn(Rng& rng, size_t n, double scale = 1.0) {
  std::vector<double> v(n);
  for (auto& x : v) x = scale * rng.normal();
  return v;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Central differences of `loss` with respect to every entry of `x`, in double, compared with
// the analytic gradient. Step 1e-5: truncation error ~1e-10 * f''', rounding ~1e-16 / 1e-5.
// Tolerance: |numeric - analytic| <= 1e-7 * (1 + |analytic|).
void expect_gradient(std::vector<double>& x, const std::vector<double>& analytic,
                     const std::function<double()>& loss, const char* what) {
  ASSERT_EQ(x.size(), analytic.size());
  const double h = 1e-5;
  double worst = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double lp = loss();
    x[i] = x0 - h;
    const double lm = loss();
    x[i] = x0;
    const double numeric = (lp - lm) / (2 * h);
    worst = std::max(worst, std::abs(numeric - analytic[i]) / (1.0 + std::abs(analytic[i])));
    EXPECT_NEAR(numeric, analytic[i], 1e-7 * (1.0 + std::abs(analytic[i]))) << what << "[" << i << "]";
  }
  // A gradient that is identically zero would pass trivially; the checks use random inputs.
  double norm = 0.0;
  for (double g : analytic) norm += g * g;
  EXPECT_GT(norm, 1e-6) << what << ": analytic gradient is (nearly) zero, the check is vacuous";
}

// ---- Operation gradient checks (double) ------------------------------------------------------

TEST(TrainOps, GemmMatchesNaive) {
  Rng rng(1);
  const int64_t m = 300, n = 70, k = 33;  // m spans two 256-row and three 128-row chunks
  auto a = randn(rng, size_t(m * k)), b = randn(rng, size_t(n * k)), bt = randn(rng, size_t(k * n));
  auto at = randn(rng, size_t(k * m));
  std::vector<double> c(size_t(m * n), 1.0), c2(size_t(m * n), 1.0), c3(size_t(m * n), 1.0);
  gemm_abt(a.data(), b.data(), c.data(), m, n, k, true);
  gemm_ab(a.data(), bt.data(), c2.data(), m, n, k, false);
  gemm_atb(at.data(), bt.data(), c3.data(), m, n, k, false);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s1 = 1.0, s2 = 0.0, s3 = 0.0;
      for (int64_t p = 0; p < k; ++p) {
        s1 += a[size_t(i * k + p)] * b[size_t(j * k + p)];
        s2 += a[size_t(i * k + p)] * bt[size_t(p * n + j)];
        s3 += at[size_t(p * m + i)] * bt[size_t(p * n + j)];
      }
      ASSERT_NEAR(c[size_t(i * n + j)], s1, 1e-12);
      ASSERT_NEAR(c2[size_t(i * n + j)], s2, 1e-12);
      ASSERT_NEAR(c3[size_t(i * n + j)], s3, 1e-12);
    }
  }
}

TEST(TrainOps, RmsNormGradient) {
  Rng rng(2);
  const int64_t n = 5, d = 8;
  auto x = randn(rng, size_t(n * d)), w = randn(rng, size_t(d)), r = randn(rng, size_t(n * d));
  std::vector<double> y(static_cast<size_t>(n * d)), rstd(static_cast<size_t>(n));
  auto loss = [&] {
    rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), n, d, 1e-5);
    return dot(y, r);
  };
  loss();
  std::vector<double> dx(size_t(n * d), 7.0), dw(size_t(d), 0.0);
  rmsnorm_backward(x.data(), w.data(), rstd.data(), r.data(), dx.data(), dw.data(), n, d, false);
  expect_gradient(x, dx, loss, "rmsnorm dx");
  expect_gradient(w, dw, loss, "rmsnorm dw");
  // accumulate_dx adds to what is there.
  std::vector<double> dx2(size_t(n * d), 1.0), dw2(size_t(d), 0.0);
  rmsnorm_backward(x.data(), w.data(), rstd.data(), r.data(), dx2.data(), dw2.data(), n, d, true);
  for (size_t i = 0; i < dx.size(); ++i) EXPECT_NEAR(dx2[i], dx[i] + 1.0, 1e-12);
}

TEST(TrainOps, RopeGradient) {
  Rng rng(3);
  const int64_t T = 6, n = 12, heads = 2, hd = 6;
  for (int64_t n_rot : {6, 4}) {  // full and partial rotary dimensions
    std::vector<double> cs, sn;
    rope_table<double>(T, n_rot, 10000.0, cs, sn);
    auto x = randn(rng, size_t(n * heads * hd)), r = randn(rng, x.size());
    auto loss = [&] {
      std::vector<double> y = x;
      rope_forward(y.data(), n, T, heads, hd, n_rot, cs.data(), sn.data());
      return dot(y, r);
    };
    std::vector<double> dx = r;
    rope_backward(dx.data(), n, T, heads, hd, n_rot, cs.data(), sn.data());
    expect_gradient(x, dx, loss, "rope dx");
  }
}

TEST(TrainOps, AttentionGradient) {
  Rng rng(4);
  const AttentionShape s{2, 5, 4, 2, 3};  // 2 sequences, T 5, 4 heads sharing 2 KV heads, head 3
  const size_t nq = size_t(s.n_seq * s.T * s.n_head * s.head_dim);
  const size_t nk = size_t(s.n_seq * s.T * s.n_head_kv * s.head_dim);
  auto q = randn(rng, nq), k = randn(rng, nk), v = randn(rng, nk), r = randn(rng, nq);
  std::vector<double> out(nq), probs(size_t(s.n_seq * s.n_head * s.T * s.T));
  auto loss = [&] {
    attention_forward(q.data(), k.data(), v.data(), out.data(), probs.data(), s);
    return dot(out, r);
  };
  loss();
  // Causality: weights above the diagonal are zero, rows sum to one.
  for (int64_t bh = 0; bh < s.n_seq * s.n_head; ++bh) {
    for (int64_t i = 0; i < s.T; ++i) {
      double sum = 0.0;
      for (int64_t j = 0; j < s.T; ++j) {
        const double p = probs[size_t((bh * s.T + i) * s.T + j)];
        if (j > i) {
          EXPECT_EQ(p, 0.0);
        }
        sum += p;
      }
      EXPECT_NEAR(sum, 1.0, 1e-12);
    }
  }
  std::vector<double> dq(nq), dk(nk), dv(nk);
  attention_backward(q.data(), k.data(), v.data(), probs.data(), r.data(), dq.data(), dk.data(), dv.data(), s);
  expect_gradient(q, dq, loss, "attention dq");
  expect_gradient(k, dk, loss, "attention dk");
  expect_gradient(v, dv, loss, "attention dv");
}

TEST(TrainOps, SwigluGradient) {
  Rng rng(5);
  const int64_t n = 40;
  auto g = randn(rng, size_t(n), 2.0), u = randn(rng, size_t(n)), r = randn(rng, size_t(n));
  std::vector<double> h(static_cast<size_t>(n));
  auto loss = [&] {
    swiglu_forward(g.data(), u.data(), h.data(), n);
    return dot(h, r);
  };
  std::vector<double> dg(static_cast<size_t>(n)), du(static_cast<size_t>(n));
  swiglu_backward(g.data(), u.data(), r.data(), dg.data(), du.data(), n);
  expect_gradient(g, dg, loss, "swiglu dg");
  expect_gradient(u, du, loss, "swiglu du");
}

TEST(TrainOps, CrossEntropyGradient) {
  Rng rng(6);
  const int64_t n = 6, V = 7;
  auto logits = randn(rng, size_t(n * V), 2.0);
  const std::vector<int32_t> targets = {3, 0, 6, 6, 1, 2};
  const std::vector<double> weights = {1.0, 0.0, 1.0, 0.5, 1.0, 0.0};
  auto loss = [&] { return cross_entropy<double>(logits.data(), targets.data(), weights.data(), n, V, nullptr, 0.0); };
  // Against a direct evaluation of sum_t w_t * -log softmax.
  double direct = 0.0;
  for (int64_t t = 0; t < n; ++t) {
    double z = 0.0;
    for (int64_t j = 0; j < V; ++j) z += std::exp(logits[size_t(t * V + j)]);
    direct += weights[size_t(t)] * (std::log(z) - logits[size_t(t * V + targets[size_t(t)])]);
  }
  EXPECT_NEAR(loss(), direct, 1e-12);
  std::vector<double> dl(size_t(n * V));
  const double l2 = cross_entropy<double>(logits.data(), targets.data(), weights.data(), n, V, dl.data(), 1.0);
  EXPECT_NEAR(l2, direct, 1e-12);
  expect_gradient(logits, dl, loss, "cross-entropy dlogits");
}

TEST(TrainOps, EmbeddingGradient) {
  Rng rng(7);
  const int64_t V = 5, d = 3;
  const std::vector<int32_t> ids = {4, 1, 4, 0, 4};  // repeats accumulate
  auto table = randn(rng, size_t(V * d)), r = randn(rng, ids.size() * size_t(d));
  std::vector<double> out(r.size());
  auto loss = [&] {
    embedding_forward(table.data(), ids.data(), int64_t(ids.size()), d, out.data());
    return dot(out, r);
  };
  std::vector<double> dtable(table.size(), 0.0);
  embedding_backward(ids.data(), r.data(), int64_t(ids.size()), d, dtable.data());
  expect_gradient(table, dtable, loss, "embedding dtable");
}

// ---- Whole model ------------------------------------------------------------------------------

using train_test::random_batch;
ModelConfig tiny_config() { return train_test::small_llama(16, 24, 4); }

// FP32 central differences through the whole model. The loss is computed in float (relative
// noise ~1e-6), so the step is large (h = 1e-2 on weights of std 0.3) and the tolerance is
// relative: per coordinate |numeric - analytic| <= 3e-4 + 3e-2 * |analytic| on the 3 largest
// gradient entries of every tensor, and for a random +-1 direction over each whole tensor
// (h = 1e-3 per entry) |numeric - g.v| <= 1e-4 + 1e-2 * |g.v|. A wiring error (a missing
// residual or normalisation term, a wrong weight) is off by far more than that.
void check_model_gradient(bool tied) {
  TrainParams params(tiny_config(), tied);
  init_params(params, 11, 0.3);
  Rng rng(12);
  // Norm weights away from 1 so their gradients are exercised too.
  for (const ParamTensor& t : params.tensors()) {
    if (t.kind == ParamKind::Norm) {
      for (size_t i = 0; i < t.size(); ++i) params.values[t.offset + i] = float(1.0 + 0.3 * rng.normal());
    }
  }
  const Batch batch = random_batch(rng, 3, 7, 11, true);
  TrainModel model;
  std::vector<float> grad(params.size());
  const double loss0 = model.forward_backward(params, batch, grad);
  EXPECT_GT(loss0, 0.5);
  auto loss_at = [&] { return model.forward(params, batch); };

  for (const ParamTensor& t : params.tensors()) {
    // Largest gradient entries.
    std::vector<size_t> idx(t.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = t.offset + i;
    std::partial_sort(idx.begin(), idx.begin() + 3, idx.end(),
                      [&](size_t a, size_t b) { return std::abs(grad[a]) > std::abs(grad[b]); });
    for (int j = 0; j < 3; ++j) {
      const size_t i = idx[size_t(j)];
      const float p0 = params.values[i];
      const float h = 1e-2f;
      params.values[i] = p0 + h;
      const double lp = loss_at();
      params.values[i] = p0 - h;
      const double lm = loss_at();
      params.values[i] = p0;
      const double numeric = (lp - lm) / (2.0 * double(h));
      EXPECT_NEAR(numeric, grad[i], 3e-4 + 3e-2 * std::abs(grad[i])) << t.name << " entry " << i - t.offset;
    }
    // Directional derivative along a random sign pattern.
    std::vector<float> dir(t.size());
    double gv = 0.0;
    for (size_t i = 0; i < t.size(); ++i) {
      dir[i] = rng.below(2) ? 1.0f : -1.0f;
      gv += double(dir[i]) * double(grad[t.offset + i]);
    }
    const std::vector<float> saved(params.values.begin() + long(t.offset),
                                   params.values.begin() + long(t.offset + t.size()));
    const float h = 1e-3f;
    for (size_t i = 0; i < t.size(); ++i) params.values[t.offset + i] = saved[i] + h * dir[i];
    const double lp = loss_at();
    for (size_t i = 0; i < t.size(); ++i) params.values[t.offset + i] = saved[i] - h * dir[i];
    const double lm = loss_at();
    std::copy(saved.begin(), saved.end(), params.values.begin() + long(t.offset));
    const double numeric = (lp - lm) / (2.0 * double(h));
    EXPECT_NEAR(numeric, gv, 1e-4 + 1e-2 * std::abs(gv)) << t.name << " directional";
  }
}

TEST(TrainModelTest, GradientTiedOutput) { check_model_gradient(true); }
TEST(TrainModelTest, GradientSeparateOutput) { check_model_gradient(false); }

TEST(TrainModelTest, LossMaskSelectsPositions) {
  TrainParams params(tiny_config(), false);
  init_params(params, 3, 0.3);
  Rng rng(4);
  Batch batch = random_batch(rng, 2, 7, 11, true);
  TrainModel model;
  std::vector<float> logits;
  const double loss = model.forward(params, batch, &logits);
  // Weighted mean over masked positions of -log softmax, from the returned logits.
  double sum = 0.0, count = 0.0;
  for (int64_t s = 0; s < 2; ++s) {
    for (int64_t t = 0; t < 7; ++t) {
      const float m = batch.loss_mask[size_t(s * 7 + t)];
      if (m == 0.0f) continue;
      const float* l = logits.data() + (s * 7 + t) * 11;
      double z = 0.0;
      for (int j = 0; j < 11; ++j) z += std::exp(double(l[j]));
      sum += std::log(z) - l[batch.tokens[size_t(s * 8 + t + 1)]];
      count += 1.0;
    }
  }
  ASSERT_GT(count, 0.0);
  EXPECT_NEAR(loss, sum / count, 1e-5);
  // An all-zero mask gives zero loss and zero gradient.
  std::fill(batch.loss_mask.begin(), batch.loss_mask.end(), 0.0f);
  std::vector<float> grad(params.size(), 1.0f);
  EXPECT_EQ(model.forward_backward(params, batch, grad), 0.0);
  for (float g : grad) ASSERT_EQ(g, 0.0f);
}

TEST(TrainModelTest, RejectsBadBatches) {
  TrainParams params(tiny_config(), true);
  init_params(params, 3);
  TrainModel model;
  Rng rng(5);
  Batch batch = random_batch(rng, 2, 7, 11, false);
  batch.tokens[3] = 11;
  EXPECT_THROW(model.forward(params, batch), Error);
  batch = random_batch(rng, 1, 17, 11, false);  // longer than n_ctx_train 16
  EXPECT_THROW(model.forward(params, batch), Error);
  batch = random_batch(rng, 2, 7, 11, false);
  batch.loss_mask.pop_back();
  EXPECT_THROW(model.forward(params, batch), Error);
}

// A seam that multiplies every linear weight by `scale` (forward) and the gradient by `scale`
// (backward, the chain rule) must equal plain training of the pre-scaled weights.
class ScaleSeam final : public LinearWeight {
 public:
  explicit ScaleSeam(float s) : scale_(s) {}
  const float* forward(int slot, const float* master, int64_t rows, int64_t cols) override {
    auto& buf = eff_[slot];
    buf.assign(master, master + rows * cols);
    for (float& x : buf) x *= scale_;
    ++calls;
    return buf.data();
  }
  void backward(int, const float*, int64_t rows, int64_t cols, float* grad) override {
    for (int64_t i = 0; i < rows * cols; ++i) grad[i] *= scale_;
  }
  int calls = 0;

 private:
  float scale_;
  std::map<int, std::vector<float>> eff_;
};

TEST(TrainModelTest, LinearWeightSeam) {
  for (bool tied : {false, true}) {
    TrainParams params(tiny_config(), tied);
    init_params(params, 8, 0.3);
    Rng rng(9);
    const Batch batch = random_batch(rng, 2, 7, 11, false);
    ScaleSeam seam(0.5f);
    TrainModel with_seam(&seam);
    std::vector<float> g_seam(params.size());
    const double l_seam = with_seam.forward_backward(params, batch, g_seam);
    EXPECT_EQ(seam.calls, int(7 * tiny_config().n_layer + 1));

    // Plain model with the linear weights (and the tied output = embedding, when tied) halved.
    // When tied, the embedding lookup still uses the master table, so only untied is exact.
    if (tied) {
      EXPECT_NE(l_seam, TrainModel().forward(params, batch));
      continue;
    }
    TrainParams scaled = params;
    for (const ParamTensor& t : scaled.tensors()) {
      if (t.kind != ParamKind::Linear) continue;
      for (size_t i = 0; i < t.size(); ++i) scaled.values[t.offset + i] *= 0.5f;
    }
    TrainModel plain;
    std::vector<float> g_plain(params.size());
    const double l_plain = plain.forward_backward(scaled, batch, g_plain);
    EXPECT_NEAR(l_seam, l_plain, 1e-6);
    for (const ParamTensor& t : params.tensors()) {
      const float s = t.kind == ParamKind::Linear ? 0.5f : 1.0f;
      for (size_t i = 0; i < t.size(); ++i) {
        ASSERT_NEAR(g_seam[t.offset + i], s * g_plain[t.offset + i], 1e-6) << t.name;
      }
    }
  }
}

// ---- Export to GGUF and the inference engine ------------------------------------------------

Tokenizer tiny_tokenizer(int32_t n) {
  std::vector<std::string> pieces = {"<unk>", "<s>", "</s>"};
  std::vector<TokenType> types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
  for (int32_t i = 3; i < n; ++i) {
    pieces.push_back(std::string(1, char('a' + i - 3)));
    types.push_back(TokenType::Normal);
  }
  return Tokenizer::from_pieces(pieces, std::vector<float>(size_t(n), 0.0f), types, 1, 2, 0);
}

// The exported model's inference logits equal the training forward's: both compute in float
// with different summation orders (and vectorised vs libm exp in SwiGLU), so |difference| <=
// 2e-5 on logits of magnitude ~1-5 (observed: <= 1.7e-6).
TEST(TrainExport, InferenceMatchesTrainingForward) {
  const std::string dir = test::temp_dir("train-export");
  for (bool tied : {true, false}) {
    ModelConfig c = tiny_config();
    c.n_rot = tied ? 4 : 2;  // full and partial rotary dimensions
    TrainParams params(c, tied);
    init_params(params, 21, 0.3);
    Rng rng(22);
    for (const ParamTensor& t : params.tensors()) {
      if (t.kind == ParamKind::Norm) {
        for (size_t i = 0; i < t.size(); ++i) params.values[t.offset + i] = float(1.0 + 0.3 * rng.normal());
      }
    }
    const std::string path = dir + (tied ? "/tied.gguf" : "/untied.gguf");
    export_gguf(params, tiny_tokenizer(11), "tiny-train", path);
    const Model model = load_model(path);
    EXPECT_EQ(model.tied_output, tied);
    EXPECT_EQ(model.config.n_rot, c.n_rot);
    EXPECT_EQ(model.config.n_head_kv, 2);
    EXPECT_EQ(model.config.name, "tiny-train");
    EXPECT_EQ(model.tokenizer.n_tokens(), 11);

    const Batch batch = random_batch(rng, 2, 9, 11, false);
    std::vector<float> train_logits;
    TrainModel tm;
    tm.forward(params, batch, &train_logits);
    for (int64_t s = 0; s < 2; ++s) {
      Forward fwd(model, 16);
      std::vector<float> logits;
      std::vector<int32_t> input(batch.tokens.begin() + s * 10, batch.tokens.begin() + s * 10 + 9);
      fwd.eval(input, logits, 0);
      ASSERT_EQ(logits.size(), size_t(9 * 11));
      double max_abs = 0.0;
      for (size_t i = 0; i < logits.size(); ++i) {
        const float ref = train_logits[size_t(s * 9 * 11) + i];
        EXPECT_NEAR(logits[i], ref, 2e-5) << "tied " << tied << " seq " << s << " index " << i;
        max_abs = std::max(max_abs, double(std::abs(ref)));
      }
      EXPECT_GT(max_abs, 0.5);  // non-trivial logits
    }
  }
  EXPECT_THROW(export_gguf(TrainParams(tiny_config(), true), tiny_tokenizer(10), "x", dir + "/bad.gguf"), Error);
}

// ---- Optimizer and trainer --------------------------------------------------------------------

TEST(TrainAdamW, ScheduleWarmupCosineFloor) {
  const LrSchedule s{1e-3, 0.1, 10, 110};
  EXPECT_DOUBLE_EQ(s.at(0), 1e-4);
  EXPECT_DOUBLE_EQ(s.at(9), 1e-3);
  EXPECT_NEAR(s.at(10), 1e-3, 1e-15);
  EXPECT_NEAR(s.at(60), 0.5 * (1e-3 + 1e-4), 1e-12);
  EXPECT_NEAR(s.at(110), 1e-4, 1e-15);
  EXPECT_NEAR(s.at(500), 1e-4, 1e-15);
  for (int64_t i = 10; i < 110; ++i) EXPECT_LE(s.at(i + 1), s.at(i));
}

TEST(TrainAdamW, ClippingAndDecay) {
  std::vector<float> g = {3.0f, 4.0f};
  EXPECT_DOUBLE_EQ(clip_grad_norm(g, 1.0), 5.0);
  EXPECT_NEAR(g[0], 0.6f, 1e-7);
  EXPECT_NEAR(g[1], 0.8f, 1e-7);
  EXPECT_NEAR(grad_norm(g), 1.0, 1e-6);

  // With a zero gradient only decoupled weight decay moves the parameters: linear weights
  // shrink by (1 - lr * wd), norms and the embedding (decay_embedding = false) stay.
  TrainParams params(tiny_config(), false);
  init_params(params, 1);
  const std::vector<float> before = params.values;
  AdamW opt(params, AdamWConfig{.weight_decay = 0.5});
  std::vector<float> zero(params.size(), 0.0f);
  opt.step(params, zero, 0.1);
  for (const ParamTensor& t : params.tensors()) {
    const float f = t.kind == ParamKind::Linear ? 0.95f : 1.0f;
    for (size_t i = 0; i < t.size(); ++i) ASSERT_FLOAT_EQ(params.values[t.offset + i], before[t.offset + i] * f) << t.name;
  }

  // Bias correction: the first step moves every parameter by lr * g / (|g| + eps') = lr * sign(g)
  // (no decay here), and the second with the same gradient again by lr.
  TrainParams q(tiny_config(), true);
  init_params(q, 2);
  const std::vector<float> q0 = q.values;
  AdamW opt2(q, AdamWConfig{.weight_decay = 0.0});
  std::vector<float> grad(q.size());
  for (size_t i = 0; i < grad.size(); ++i) grad[i] = (i % 3 == 0 ? -0.25f : 0.5f) * float(1 + i % 7);
  opt2.step(q, grad, 0.01);
  opt2.step(q, grad, 0.01);
  EXPECT_EQ(opt2.steps_taken(), 2);
  for (size_t i = 0; i < q.size(); ++i) {
    ASSERT_NEAR(q.values[i], q0[i] - 0.02f * (grad[i] > 0 ? 1.0f : -1.0f), 1e-6) << i;
  }
}

TrainerConfig tiny_trainer_config() {
  TrainerConfig cfg;
  cfg.model = tiny_config();
  cfg.batch_size = 8;
  cfg.seq_len = 16;
  cfg.lr = 1e-2;
  cfg.warmup_steps = 20;
  cfg.total_steps = 300;
  cfg.adamw.weight_decay = 0.01;
  cfg.seed = 42;
  return cfg;
}

// A repetitive corpus: the 11 tokens in a fixed cycle, each sequence starting at a random
// offset drawn from the trainer's RNG.
void cyclic_batch(int64_t, Rng& rng, Batch& b) {
  for (int64_t s = 0; s < b.n_seq; ++s) {
    const uint64_t start = rng.below(11);
    for (int64_t t = 0; t <= b.seq_len; ++t) b.seq_tokens(s)[t] = int32_t((start + uint64_t(t) * 3) % 11);
  }
}

TEST(TrainerTest, LossFallsOnRepetitiveCorpus) {
  TrainerConfig cfg = tiny_trainer_config();
  Trainer trainer(cfg);
  std::vector<StepStats> log;
  int evals = 0;
  Batch held_out;
  held_out.resize(4, 16);
  Rng eval_rng(7);
  cyclic_batch(0, eval_rng, held_out);
  cfg.eval_interval = 100;
  double last_eval = -1.0;
  Trainer t2(cfg);
  t2.train(cyclic_batch, {.on_step = [&](const StepStats& s) { log.push_back(s); },
                          .eval = [&](Trainer& t) { return t.eval_loss(held_out); },
                          .on_eval = [&](int64_t, double l) {
                            ++evals;
                            last_eval = l;
                          }});
  ASSERT_EQ(log.size(), 300u);
  EXPECT_EQ(evals, 3);
  const double first = log.front().loss, last = log.back().loss;
  EXPECT_NEAR(first, std::log(11.0), 0.1);  // small init: nearly uniform predictions
  EXPECT_LT(last, 0.1 * first) << "loss " << first << " -> " << last;
  EXPECT_LT(last_eval, 0.1 * first);
  for (const StepStats& s : log) {
    EXPECT_TRUE(std::isfinite(s.loss) && std::isfinite(s.grad_norm) && s.tokens_per_s > 0.0);
  }
  EXPECT_DOUBLE_EQ(log[0].lr, cfg.lr / 20);
  // Deterministic: the same run (here without eval) gives the same parameters bit for bit.
  trainer.train(cyclic_batch);
  EXPECT_EQ(trainer.params().values, t2.params().values);
}

TEST(TrainerTest, ThreadCountDoesNotChangeResults) {
  TrainerConfig cfg = tiny_trainer_config();
  cfg.total_steps = 5;
  cfg.batch_size = 40;  // 640 tokens: three 256-row chunks, so work really is split
  std::vector<float> one, two;
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 1);
    Trainer t(cfg);
    t.train(cyclic_batch);
    one = t.params().values;
  }
  {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 2);
    Trainer t(cfg);
    t.train(cyclic_batch);
    two = t.params().values;
  }
  EXPECT_EQ(one, two);
}

TEST(TrainerTest, CheckpointResumeIsBitExact) {
  const std::string dir = test::temp_dir("train-ckpt");
  TrainerConfig cfg = tiny_trainer_config();
  cfg.total_steps = 40;
  cfg.tied_output = false;
  Trainer straight(cfg);
  straight.train(cyclic_batch);

  TrainerConfig half_cfg = cfg;
  half_cfg.checkpoint_interval = 10;
  half_cfg.checkpoint_path = dir + "/ckpt.bin";
  Trainer first(half_cfg);
  int saved = 0;
  first.train(cyclic_batch, {.on_checkpoint = [&](int64_t, const std::string&) { ++saved; }}, 20);
  EXPECT_EQ(first.step(), 20);
  EXPECT_EQ(saved, 2);
  EXPECT_FALSE(std::filesystem::exists(half_cfg.checkpoint_path + ".tmp"));

  Trainer resumed(half_cfg);  // fresh initialisation, then overwritten by the checkpoint
  resumed.load_checkpoint(half_cfg.checkpoint_path);
  EXPECT_EQ(resumed.step(), 20);
  resumed.train(cyclic_batch);
  EXPECT_EQ(resumed.step(), 40);
  EXPECT_EQ(resumed.params().values, straight.params().values);
  EXPECT_EQ(resumed.optimizer().m(), straight.optimizer().m());
  EXPECT_EQ(resumed.optimizer().v(), straight.optimizer().v());
  EXPECT_EQ(resumed.rng().state(), straight.rng().state());
}

TEST(TrainerTest, BadCheckpointsThrow) {
  const std::string dir = test::temp_dir("train-badckpt");
  TrainerConfig cfg = tiny_trainer_config();
  Trainer t(cfg);
  const std::string path = dir + "/ckpt.bin";
  t.save_checkpoint(path);
  std::vector<char> bytes;
  {
    std::ifstream f(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  auto write = [&](const std::string& p, const std::vector<char>& b) {
    std::ofstream f(p, std::ios::binary);
    f.write(b.data(), std::streamsize(b.size()));
    return p;
  };
  auto expect_error = [&](const std::string& p, const std::string& needle) {
    Trainer u(cfg);
    try {
      u.load_checkpoint(p);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  };
  auto b = bytes;
  b[0] = 'X';
  expect_error(write(dir + "/magic.bin", b), "bad magic");
  b = bytes;
  b[8] = 9;
  expect_error(write(dir + "/version.bin", b), "version 9");
  b = bytes;
  b.resize(b.size() - 100);
  expect_error(write(dir + "/short.bin", b), "truncated");
  b = bytes;
  b[b.size() / 2] ^= 0x10;
  expect_error(write(dir + "/flip.bin", b), "checksum");
  expect_error(dir + "/missing.bin", "cannot open");
  TrainerConfig other = cfg;
  other.model.n_ff = 32;
  Trainer o(other);
  o.save_checkpoint(dir + "/other.bin");
  expect_error(dir + "/other.bin", "dimension");
  // A good one loads.
  Trainer u(cfg);
  EXPECT_NO_THROW(u.load_checkpoint(path));
}

TEST(TrainerTest, InitStatistics) {
  TrainerConfig cfg = tiny_trainer_config();
  cfg.model.n_embd = 64;
  cfg.model.n_ff = 128;
  cfg.model.n_layer = 8;
  TrainParams p(cfg.model, true);
  init_params(p, 5);
  for (const ParamTensor& t : p.tensors()) {
    double s = 0.0, s2 = 0.0;
    for (size_t i = 0; i < t.size(); ++i) {
      s += p.values[t.offset + i];
      s2 += double(p.values[t.offset + i]) * p.values[t.offset + i];
    }
    const double n = double(t.size()), mean = s / n, sd = std::sqrt(s2 / n - mean * mean);
    if (t.kind == ParamKind::Norm) {
      EXPECT_EQ(mean, 1.0) << t.name;
      continue;
    }
    const bool residual = t.name.find("attn_output") != std::string::npos || t.name.find("ffn_down") != std::string::npos;
    const double want = residual ? 0.02 / 4.0 : 0.02;  // 1/sqrt(2 * 8 layers) = 1/4
    EXPECT_NEAR(sd, want, 0.1 * want) << t.name;
    EXPECT_NEAR(mean, 0.0, 5.0 * want / std::sqrt(n)) << t.name;
  }
  // Seeded: the same seed gives the same values, another seed different ones.
  TrainParams q(cfg.model, true), r(cfg.model, true);
  init_params(q, 5);
  init_params(r, 6);
  EXPECT_EQ(p.values, q.values);
  EXPECT_NE(p.values, r.values);
}

TEST(TrainRng, KnownSequenceAndNormalMoments) {
  // splitmix64 reference values for seed 0 (Vigna's splitmix64.c).
  uint64_t s = 0;
  EXPECT_EQ(splitmix64(s), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(splitmix64(s), 0x6E789E6AA1B965F4ull);
  Rng a(3), b(3);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.next(), b.next());
  double m = 0.0, m2 = 0.0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double x = a.normal();
    m += x;
    m2 += x * x;
  }
  EXPECT_NEAR(m / n, 0.0, 0.01);
  EXPECT_NEAR(m2 / n, 1.0, 0.01);
}

}  // namespace
}  // namespace qbench::train
