// Quantization-aware training's fake quantizer (engine/train/fake_quant.h): its straight-through
// / LSQ gradients against finite differences of the frozen-code surrogate written out here, its
// forward against the packed format's own dequantization, and its place in the trainer.
#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/half.h"
#include "engine/formats/int_quants.h"
#include "engine/formats/types.h"
#include "engine/train/fake_quant.h"
#include "engine/train/rng.h"
#include "engine/train/trainer.h"
#include "tests/engine/train_test_util.h"

namespace qbench::train {
namespace {

// Formats covering 2, 3, 4 and 8 bits, symmetric and asymmetric, groups and whole rows.
std::vector<IntFormat> formats() {
  return {{2, true, 32}, {2, false, 32}, {3, true, 32}, {3, false, 128}, {4, true, 128}, {4, false, 0},
          {8, true, 0},  {8, false, 32}};
}
QatConfig qat(const QatTarget& t) {
  QatConfig c;
  c.target = t;
  return c;
}
// The integer formats and ggml's Q4_0.
std::vector<QatTarget> targets() {
  const std::vector<IntFormat> f = formats();
  std::vector<QatTarget> t(f.begin(), f.end());
  t.push_back(QatTarget::ggml_q4_0());
  return t;
}
std::string name(const QatTarget& t) { return t.name(); }

// ---- One group against the surrogate ------------------------------------------------------------

// The frozen-code surrogate of fake_quant.h, written from its formula: codes u0 and the inside
// mask are those of (w0, d0, z0) (round half to even of w0/d0, clamped; Q4_0: ggml's
// floor(w0/d0 + 8.5) in [0, 15]), then
//   w~_i(w, d, z) = d * (u0_i + in_i * ((w_i/d + z) - (w0_i/d0 + z0)) - z_off),
// z_off = z (asymmetric), 2^(N-1) (symmetric) or 8 (Q4_0). Returns sum_i dy_i * w~_i, in double.
struct Surrogate {
  QatTarget t;
  std::vector<double> w0, dy;
  double d0, z0;
  std::vector<int> u0;
  std::vector<bool> in;

  Surrogate(const QatTarget& target, std::vector<double> w, std::vector<double> g, double d, double z)
      : t(target), w0(std::move(w)), dy(std::move(g)), d0(d), z0(z) {
    const IntFormat& f = t.format;
    const int off = f.sym ? 1 << (f.bits - 1) : int(z0);
    const int lo = f.sym && !t.q4_0 ? 1 : 0, hi = (1 << f.bits) - 1;
    for (double x : w0) {
      const float q = float(x) * (1.0f / float(d0));
      const double v = double(q) + off;
      u0.push_back(t.q4_0 ? std::clamp(int(std::floor(q + 8.5f)), 0, 15)
                          : std::clamp(int(std::nearbyint(v - off)) + off, lo, hi));
      in.push_back(v >= lo && v <= hi);
    }
  }
  double operator()(const std::vector<double>& w, double d, double z) const {
    const IntFormat& f = t.format;
    const double z_off = f.sym ? double(1 << (f.bits - 1)) : z;
    const double zz = f.sym ? 0.0 : z, zz0 = f.sym ? 0.0 : z0;
    double s = 0.0;
    for (size_t i = 0; i < w.size(); ++i) {
      const double ste = in[i] ? (w[i] / d + zz) - (w0[i] / d0 + zz0) : 0.0;
      s += dy[i] * d * (u0[i] + ste - z_off);
    }
    return s;
  }
};

TEST(FakeQuant, GroupGradientsAreTheSurrogateDerivatives) {
  Rng rng(3);
  for (const QatTarget& t : targets()) {
    const IntFormat& f = t.format;
    const int n = 32;
    std::vector<float> w(n), dy(n);
    for (int i = 0; i < n; ++i) {
      w[size_t(i)] = float(rng.normal()) * 0.1f + (f.sym ? 0.0f : 0.03f);
      dy[size_t(i)] = float(rng.normal());
    }
    // A scale 30% under the min/max rule's, so the extremes clip; fp16-exact, as the forward
    // rounds it to fp16. The zero point an integer code. Q4_0's scale negative, as ggml's often is.
    const IntParams p = int_params_minmax(f, w.data(), n);
    const float d = fp16_to_fp32(fp32_to_fp16(fp16_to_fp32(p.d) * (t.q4_0 ? -0.7f : 0.7f)));
    const float z = float(p.zero);
    std::vector<float> dx(n);
    double dd = 0.0, dz = 0.0;
    fake_quant_group_backward(t, w.data(), n, d, z, dy.data(), dx.data(), &dd, &dz);

    const std::vector<double> w0(w.begin(), w.end()), g(dy.begin(), dy.end());
    const Surrogate S(t, w0, g, d, z);
    int clipped = 0;
    for (bool b : S.in) clipped += b ? 0 : 1;
    EXPECT_GT(clipped, 0) << name(t) << ": the case must clip some values";
    EXPECT_LT(clipped, n) << name(t);
    // The surrogate at the base point is the fake-quantized forward itself.
    std::vector<float> y(n);
    fake_quant_group(t, w.data(), n, d, z, y.data());
    double dot = 0.0;
    for (int i = 0; i < n; ++i) dot += double(dy[size_t(i)]) * double(y[size_t(i)]);
    EXPECT_NEAR(S(w0, d, z), dot, 1e-9) << name(t);

    const double hd = 1e-4 * d;
    const double num_d = (S(w0, d + hd, z) - S(w0, d - hd, z)) / (2 * hd);
    EXPECT_NEAR(dd, num_d, 1e-6 * (1.0 + std::abs(num_d))) << name(t);
    if (!f.sym) {
      const double num_z = (S(w0, d, z + 1e-3) - S(w0, d, z - 1e-3)) / 2e-3;
      EXPECT_NEAR(dz, num_z, 1e-6 * (1.0 + std::abs(num_z))) << name(t);
      EXPECT_NE(dz, 0.0) << name(t);
    } else {
      EXPECT_EQ(dz, 0.0);
    }
    for (int i = 0; i < n; ++i) {
      std::vector<double> a = w0, b = w0;
      a[size_t(i)] += 1e-5;
      b[size_t(i)] -= 1e-5;
      const double num = (S(a, d, z) - S(b, d, z)) / 2e-5;
      EXPECT_NEAR(dx[size_t(i)], num, 1e-6 * (1.0 + std::abs(num))) << name(t) << " w[" << i << "]";
    }
  }
}

TEST(FakeQuant, LsqGradientScale) {
  EXPECT_DOUBLE_EQ(lsq_grad_scale(IntFormat{4, true, 128}, 128), 1.0 / std::sqrt(128.0 * 7));
  EXPECT_DOUBLE_EQ(lsq_grad_scale(IntFormat{2, false, 32}, 32), 1.0 / std::sqrt(32.0 * 3));
  EXPECT_DOUBLE_EQ(lsq_grad_scale(QatTarget::ggml_q4_0(), 32), 1.0 / std::sqrt(32.0 * 8));
}

// ---- The seam on a model --------------------------------------------------------------------------

// Rows of 128 and 256 values: every group size fits.
ModelConfig qat_config() { return train_test::small_llama(128, 256, 8); }
using train_test::random_batch;

TEST(FakeQuant, StartsAtRtnAndServesWhatItTrains) {
  for (bool tied : {true, false}) {
    TrainParams params(qat_config(), tied);
    init_params(params, 5, 0.1);
    // A block of zeros (in the middle of a row): RTN and ggml store a zero scale, and so must the
    // start; training must keep it zero.
    for (int s = 0; s < int(params.tensors().size()); ++s) {
      if (params.tensor(s).kind == ParamKind::Linear) std::fill(params.data(s) + 64, params.data(s) + 96, 0.0f);
    }
    for (const QatTarget& f : targets()) {
      FakeQuantLinear fq(params, qat(f));
      const TypeTraits& tr = type_traits(f.type());
      int n_quantized = 0;
      for (int s = 0; s < int(params.tensors().size()); ++s) {
        const ParamTensor& t = params.tensor(s);
        const float* w = params.data(s);
        const float* y = fq.forward(s, w, t.rows, t.cols);
        if (t.kind != ParamKind::Linear) {
          EXPECT_FALSE(fq.quantized(s));
          EXPECT_EQ(y, w) << t.name << " must stay float";
          continue;
        }
        ++n_quantized;
        // Initialised from the min/max rule: the bytes RTN's reference quantizer writes (Q4_0:
        // ggml's quantize_row_q4_0_ref).
        std::vector<uint8_t> rtn(row_bytes(tr, t.cols) * size_t(t.rows));
        for (int64_t r = 0; r < t.rows; ++r) tr.quantize_row(w + r * t.cols, rtn.data() + size_t(r) * row_bytes(tr, t.cols), t.cols);
        ASSERT_EQ(fq.pack(s, w), rtn) << name(f) << " " << t.name;
        // Move the scales and zero points as training would; the forward must still be the
        // packed tensor's dequantization, bit for bit.
        Rng rng(uint64_t(s) + 11);
        for (float& d : fq.scales(s)) d *= float(0.8 + 0.4 * rng.uniform());
        for (float& z : fq.zeros(s)) z = std::clamp(z + float(rng.normal()), 0.0f, float(f.format.levels() - 1));
        y = fq.forward(s, w, t.rows, t.cols);
        const std::vector<uint8_t> packed = fq.pack(s, w);
        std::vector<float> deq(size_t(t.cols));
        for (int64_t r = 0; r < t.rows; ++r) {
          tr.dequantize_row(packed.data() + size_t(r) * row_bytes(tr, t.cols), deq.data(), t.cols);
          ASSERT_EQ(0, std::memcmp(deq.data(), y + r * t.cols, deq.size() * sizeof(float)))
              << name(f) << " " << t.name << " row " << r;
        }
        // And a tensor written by another quantizer hands its scales over. (Not Q4_0's: its codes
        // come from the float scale, which the stored fp16 one does not always reproduce.)
        if (f.q4_0) continue;
        FakeQuantLinear other(params, qat(f));
        other.set_from_packed(s, packed.data());
        EXPECT_EQ(other.pack(s, w), packed) << name(f) << " " << t.name;
      }
      EXPECT_EQ(n_quantized, 7 * 2 + (tied ? 0 : 1));
    }
  }
}

TEST(FakeQuant, GroupSizeMustDivideTheRows) {
  ModelConfig c = qat_config();
  c.n_ff = 96;  // w_down rows of 96 values
  TrainParams params(c, true);
  init_params(params, 5, 0.1);
  EXPECT_NO_THROW(FakeQuantLinear(params, qat(IntFormat{4, true, 32})));
  try {
    FakeQuantLinear fq(params, qat(IntFormat{4, true, 64}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.ffn_down.weight has rows of 96 values"), std::string::npos) << e.what();
  }
}

// The frozen-code surrogate as a seam: forward() is w~ at the current scales and zero points
// with codes frozen at construction; backward() is the fake quantizer's. Central differences of
// the model's loss through it then check the whole chain: the trainer's dL/dw^, the seam's
// per-group sums, the LSQ gradient scale and the master weights' straight-through gradient.
class SurrogateSeam final : public LinearWeight {
 public:
  SurrogateSeam(FakeQuantLinear& fq, const TrainParams& params) : fq_(fq), eff_(params.tensors().size()) {
    const IntFormat& f = fq.config().target.format;
    for (int s = 0; s < int(params.tensors().size()); ++s) {
      if (!fq.quantized(s)) continue;
      const ParamTensor& t = params.tensor(s);
      const int64_t n = t.rows * t.cols, group = n / int64_t(fq.scales(s).size());
      Frozen fr;
      fr.w0.assign(params.data(s), params.data(s) + n);
      fr.d0.assign(fq.scales(s).begin(), fq.scales(s).end());
      fr.z0.assign(fq.zeros(s).begin(), fq.zeros(s).end());
      for (int64_t i = 0; i < n; ++i) {
        const float d = fp16_to_fp32(fp32_to_fp16(fr.d0[size_t(i / group)]));
        const int off = f.sym ? 1 << (f.bits - 1) : int(std::nearbyint(fr.z0[size_t(i / group)]));
        const double v = double(fr.w0[size_t(i)] * (1.0f / d)) + off;
        const int lo = f.sym ? 1 : 0, hi = f.levels() - 1;
        fr.u0.push_back(std::clamp(int(std::nearbyint(v - off)) + off, lo, hi));
        fr.in.push_back(v >= lo && v <= hi);
      }
      frozen_.emplace(s, std::move(fr));
    }
  }
  const float* forward(int slot, const float* master, int64_t rows, int64_t cols) override {
    if (!fq_.quantized(slot)) return master;
    const Frozen& fr = frozen_.at(slot);
    const IntFormat& f = fq_.config().target.format;
    const auto d = fq_.scales(slot);
    const auto z = fq_.zeros(slot);
    const int64_t n = rows * cols, group = n / int64_t(d.size());
    auto& y = eff_[size_t(slot)];
    y.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) {
      const size_t g = size_t(i / group);
      const double dd = d[g], zz = f.sym ? 0.0 : z[g], zz0 = f.sym ? 0.0 : fr.z0[g];
      const double z_off = f.sym ? double(1 << (f.bits - 1)) : zz;
      const double ste = fr.in[size_t(i)] ? (master[i] / dd + zz) - (fr.w0[size_t(i)] / fr.d0[g] + zz0) : 0.0;
      y[size_t(i)] = float(dd * (fr.u0[size_t(i)] + ste - z_off));
    }
    return y.data();
  }
  void backward(int slot, const float* master, int64_t rows, int64_t cols, float* grad) override {
    fq_.backward(slot, master, rows, cols, grad);
  }

 private:
  struct Frozen {
    std::vector<float> w0, d0, z0;
    std::vector<int> u0;
    std::vector<bool> in;
  };
  FakeQuantLinear& fq_;
  std::map<int, Frozen> frozen_;
  std::vector<std::vector<float>> eff_;
};

TEST(FakeQuant, ModelGradientsOfScalesZerosAndWeights) {
  for (const IntFormat& f : {IntFormat{2, false, 32}, IntFormat{4, true, 128}}) {
    TrainParams params(qat_config(), false);
    init_params(params, 7, 0.1);
    FakeQuantLinear fq(params, qat(f));
    // Scales 20% under min/max, so that the clipped branch is taken too; fp16-exact.
    for (int s = 0; s < int(params.tensors().size()); ++s) {
      for (float& d : fq.scales(s)) d = fp16_to_fp32(fp32_to_fp16(d * 0.8f));
    }
    SurrogateSeam seam(fq, params);
    TrainModel model(&seam);
    Rng rng(4);
    const Batch batch = random_batch(rng, 2, 9, 11);
    std::vector<float> grad(params.size());
    // Analytic gradients at the base point (the seam's forward there is the fake quantizer's).
    model.forward_backward(params, batch, grad);
    const TrainParams base = params;
    for (int s : {params.layer(0).wq, params.layer(1).w_down, params.output()}) {
      const auto d = fq.scales(s);
      const double gscale = lsq_grad_scale(f, int64_t(params.tensor(s).cols * params.tensor(s).rows / int64_t(d.size())));
      // The three groups with the largest scale gradients.
      std::vector<size_t> idx(d.size());
      for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
      std::partial_sort(idx.begin(), idx.begin() + 3, idx.end(), [&](size_t a, size_t b) {
        return std::abs(fq.scale_grad(s)[a]) > std::abs(fq.scale_grad(s)[b]);
      });
      for (int k = 0; k < 3; ++k) {
        const size_t g = idx[size_t(k)];
        const float d0 = d[g], h = d0 * 1e-2f;
        d[g] = d0 + h;
        const double lp = model.forward(params, batch);
        d[g] = d0 - h;
        const double lm = model.forward(params, batch);
        d[g] = d0;
        const double num = (lp - lm) / (2.0 * double(h)), ana = fq.scale_grad(s)[g] / gscale;
        EXPECT_NEAR(ana, num, 3e-4 + 3e-2 * std::abs(ana)) << name(f) << " " << params.tensor(s).name << " scale " << g;
      }
      if (!f.sym) {
        const auto z = fq.zeros(s);
        for (int k = 0; k < 3; ++k) {
          const size_t g = idx[size_t(k)];
          const float z0 = z[g];
          z[g] = z0 + 0.01f;
          const double lp = model.forward(params, batch);
          z[g] = z0 - 0.01f;
          const double lm = model.forward(params, batch);
          z[g] = z0;
          const double num = (lp - lm) / 0.02, ana = fq.zero_grad(s)[g] / gscale;
          EXPECT_NEAR(ana, num, 3e-4 + 3e-2 * std::abs(ana)) << name(f) << " " << params.tensor(s).name << " zero " << g;
        }
      }
      // Master weights: the largest gradient entries (some of them clipped: gradient 0).
      float* w = params.data(s);
      const size_t n = params.tensor(s).size(), off = params.tensor(s).offset;
      std::vector<size_t> wi(n);
      for (size_t i = 0; i < n; ++i) wi[i] = i;
      std::partial_sort(wi.begin(), wi.begin() + 3, wi.end(),
                        [&](size_t a, size_t b) { return std::abs(grad[off + a]) > std::abs(grad[off + b]); });
      for (int k = 0; k < 3; ++k) {
        const size_t i = wi[size_t(k)];
        const float w0 = w[i], h = 1e-2f * std::max(std::abs(w0), 0.01f);
        w[i] = w0 + h;
        const double lp = model.forward(params, batch);
        w[i] = w0 - h;
        const double lm = model.forward(params, batch);
        w[i] = w0;
        const double num = (lp - lm) / (2.0 * double(h));
        EXPECT_NEAR(grad[off + i], num, 3e-4 + 3e-2 * std::abs(num)) << name(f) << " " << params.tensor(s).name << " w " << i;
      }
    }
    EXPECT_EQ(params.values, base.values);
  }
}

// Training through the seam: the scales move (after_step), the fake-quantized loss falls, and
// the result is the same bits for one and two threads.
TEST(FakeQuant, TrainerStepsAreDeterministicAndLearn) {
  auto run = [](int threads, std::vector<float>* values, std::vector<float>* scales) {
    tbb::global_control c(tbb::global_control::max_allowed_parallelism, size_t(threads));
    TrainerConfig cfg;
    cfg.model = qat_config();
    cfg.batch_size = 4;
    cfg.seq_len = 12;
    cfg.lr = 3e-3;
    cfg.warmup_steps = 0;
    cfg.total_steps = 30;
    cfg.init_std = 0.1;
    Trainer trainer(cfg);
    FakeQuantLinear fq(trainer.params(), qat(IntFormat{2, true, 32}));
    const std::vector<float> start = fq.values();
    trainer.set_linear(&fq);
    Rng rng(6);
    const Batch batch = random_batch(rng, 4, 12, 11);
    const double before = trainer.eval_loss(batch);
    trainer.train([&](int64_t, Rng&, Batch& b) { b = batch; });
    const double after = trainer.eval_loss(batch);
    EXPECT_LT(after, before - 0.1);
    EXPECT_NE(fq.values(), start);
    EXPECT_EQ(fq.adam_steps(), 30);
    *values = trainer.params().values;
    *scales = fq.values();
  };
  std::vector<float> v1, s1, v2, s2;
  run(1, &v1, &s1);
  run(2, &v2, &s2);
  EXPECT_EQ(v1, v2);
  EXPECT_EQ(s1, s2);
}

// A frozen embedding (QAT keeps it as PTQ does) does not move; the rest does.
TEST(FakeQuant, FrozenEmbeddingStaysAsItIs) {
  TrainerConfig cfg;
  cfg.model = qat_config();
  cfg.batch_size = 2;
  cfg.seq_len = 8;
  cfg.warmup_steps = 0;
  cfg.total_steps = 3;
  cfg.train_embedding = false;
  Trainer trainer(cfg);
  const TrainParams before = trainer.params();
  Rng rng(2);
  const Batch batch = random_batch(rng, 2, 8, 11);
  trainer.train([&](int64_t, Rng&, Batch& b) { b = batch; });
  const ParamTensor& e = before.tensor(before.tok_embd());
  const auto slice = [&](const TrainParams& p) {
    return std::vector<float>(p.values.begin() + std::ptrdiff_t(e.offset), p.values.begin() + std::ptrdiff_t(e.offset + e.size()));
  };
  EXPECT_EQ(slice(trainer.params()), slice(before));
  EXPECT_NE(trainer.params().values, before.values);
  cfg.adamw.decay_embedding = true;
  EXPECT_THROW(Trainer{cfg}, Error);
}

// ---- Distillation -------------------------------------------------------------------------------

// The distillation loss is ce_weight * CE + kd_weight * KL(teacher || student), written out here
// in double from the student's logits, and its gradient matches central differences.
TEST(Distillation, LossIsTheWeightedSumAndGradientsMatch) {
  TrainParams params(qat_config(), false);
  init_params(params, 9, 0.1);
  Rng rng(10);
  Batch batch = random_batch(rng, 2, 9, 11);
  for (size_t i = 0; i < batch.loss_mask.size(); i += 4) batch.loss_mask[i] = 0.0f;
  TrainModel model;
  std::vector<float> logits;
  const double ce = model.forward(params, batch, &logits);
  const int64_t V = qat_config().n_vocab, N = batch.n_tokens();
  batch.teacher_logits.resize(size_t(N * V));
  for (float& t : batch.teacher_logits) t = float(rng.normal() * 2.0);
  double kl = 0.0, wsum = 0.0;
  for (int64_t t = 0; t < N; ++t) {
    const double w = batch.loss_mask[size_t(t)];
    wsum += w;
    auto logsoftmax = [&](const float* l, int64_t j) {
      double z = 0.0;
      for (int64_t k = 0; k < V; ++k) z += std::exp(double(l[k]));
      return double(l[j]) - std::log(z);
    };
    for (int64_t j = 0; j < V; ++j) {
      const double lt = logsoftmax(batch.teacher_logits.data() + t * V, j);
      kl += w * std::exp(lt) * (lt - logsoftmax(logits.data() + t * V, j));
    }
  }
  kl /= wsum;
  batch.ce_weight = 0.5;
  batch.kd_weight = 1.5;
  EXPECT_NEAR(model.forward(params, batch), 0.5 * ce + 1.5 * kl, 1e-5 * (ce + kl));

  std::vector<float> grad(params.size());
  model.forward_backward(params, batch, grad);
  for (int s : {params.layer(0).wv, params.layer(1).ffn_norm, params.output(), params.tok_embd()}) {
    const ParamTensor& t = params.tensor(s);
    std::vector<size_t> idx(t.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    std::partial_sort(idx.begin(), idx.begin() + 3, idx.end(),
                      [&](size_t a, size_t b) { return std::abs(grad[t.offset + a]) > std::abs(grad[t.offset + b]); });
    for (int k = 0; k < 3; ++k) {
      float& p = params.values[t.offset + idx[size_t(k)]];
      const float p0 = p, h = 1e-2f * std::max(std::abs(p0), 0.05f);
      p = p0 + h;
      const double lp = model.forward(params, batch);
      p = p0 - h;
      const double lm = model.forward(params, batch);
      p = p0;
      const double num = (lp - lm) / (2.0 * double(h)), ana = grad[t.offset + idx[size_t(k)]];
      EXPECT_NEAR(ana, num, 3e-4 + 3e-2 * std::abs(num)) << t.name;
    }
  }

  // The student's own logits as the teacher: no distillation loss, no gradient.
  batch.teacher_logits = logits;
  batch.ce_weight = 0.0;
  batch.kd_weight = 1.0;
  EXPECT_NEAR(model.forward_backward(params, batch, grad), 0.0, 1e-6);
  for (float g : grad) ASSERT_NEAR(g, 0.0f, 1e-6f);

  batch.teacher_logits.pop_back();
  EXPECT_THROW(model.forward(params, batch), Error);
}

}  // namespace
}  // namespace qbench::train
