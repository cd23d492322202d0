#include "engine/model/forward.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "engine/core/error.h"
#include "engine/formats/iq_quants.h"
#include "engine/kernels/matmul.h"

namespace qbench {
namespace {

// y = x / sqrt(mean(x^2) + eps) * w, the sum of squares accumulated in double as ggml does.
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
  const float scale = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
}

// One head's row of n values into the KV cache in `type`, as llama.cpp's CPU backend writes its
// cache (ggml's from_float): q8_0 by ggml's x86 rule (the activation quantizer), iq4_nl by ggml's
// quantize_row_iq4_nl_ref (no trial scales), the other types by their reference quantizers.
void store_kv_row(TensorType type, const float* src, uint8_t* dst, int64_t n) {
  if (type == TensorType::F32) {
    std::memcpy(dst, src, size_t(n) * sizeof(float));
  } else if (type == TensorType::Q8_0) {
    thread_local std::vector<uint8_t> tmp;
    tmp.resize(activation_row_bytes(TensorType::Q8_0, n));
    quantize_activation_row(TensorType::Q8_0, src, tmp.data(), n);
    std::memcpy(dst, tmp.data(), row_bytes(type_traits(type), n));  // the ggml blocks come first
  } else if (type == TensorType::IQ4_NL) {
    quantize_row_iq4_nl_from_float(src, dst, n);
  } else {
    type_traits(type).quantize_row(src, dst, n);
  }
}

}  // namespace

void hadamard_blocks(float* x, int64_t len, int64_t n) {
  QB_ASSERT(n > 0 && (n & (n - 1)) == 0 && len % n == 0);
  const float scale = 1.0f / std::sqrt(float(n));
  for (int64_t b = 0; b < len; b += n) {
    float* y = x + b;
    for (int64_t j = 0; j < n; ++j) y[j] *= scale;
    for (int64_t span = 1; span < n; span *= 2) {
      for (int64_t i = 0; i < n; i += 2 * span) {
        for (int64_t j = i; j < i + span; ++j) {
          const float u = y[j], v = y[j + span];
          y[j] = u + v;
          y[j + span] = u - v;
        }
      }
    }
  }
}

namespace {

void add_bias(float* y, const std::vector<float>& b, int64_t n_tokens) {
  if (b.empty()) return;
  const int64_t n = int64_t(b.size());
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t i = 0; i < n; ++i) y[t * n + i] += b[size_t(i)];
  }
}

}  // namespace

Forward::Forward(const Model& model, int64_t n_ctx) : model_(model), n_ctx_(n_ctx) {
  const ModelConfig& c = model.config;
  if (n_ctx <= 0) throw Error("context size must be positive, got " + std::to_string(n_ctx));
  const KvCacheTypes& kv = model.kv_cache;
  const int64_t hd = c.head_dim();
  for (const auto& [t, what] : {std::pair{kv.k, "key"}, std::pair{kv.v, "value"}}) {
    if (!kv_cache_type_allowed(t)) {
      throw Error("KV cache " + std::string(what) + " type " + std::string(type_traits(t).name) +
                  " is not one llama.cpp's -ctk / -ctv accept (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl)");
    }
    if (hd % type_traits(t).block_size != 0) {
      throw Error("KV cache " + std::string(what) + " type " + std::string(type_traits(t).name) + ": the head size " +
                  std::to_string(hd) + " is not a multiple of its block size " +
                  std::to_string(type_traits(t).block_size) + " (llama.cpp refuses this model with it too)");
    }
  }
  k_row_ = row_bytes(type_traits(kv.k), hd);
  v_row_ = row_bytes(type_traits(kv.v), hd);
  const size_t rows = size_t(c.n_layer) * size_t(n_ctx) * size_t(c.n_head_kv);
  k_cache_.assign(rows * k_row_, 0);
  v_cache_.assign(rows * v_row_, 0);
  const int64_t half = c.n_rot / 2;
  rope_cos_.resize(size_t(n_ctx * half));
  rope_sin_.resize(size_t(n_ctx * half));
  for (int64_t p = 0; p < n_ctx; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      // As ggml_rope_ext with ext_factor 0: theta = p * freq_scale * base^(-2i/n_rot) / factor_i.
      double theta = double(p) * double(c.rope_freq_scale) *
                     std::pow(double(c.rope_freq_base), -2.0 * double(i) / double(c.n_rot));
      if (!model.rope_freqs.empty()) theta /= double(model.rope_freqs[size_t(i)]);
      rope_cos_[size_t(p * half + i)] = float(std::cos(theta));
      rope_sin_[size_t(p * half + i)] = float(std::sin(theta));
    }
  }
}

void Forward::eval(std::span<const int32_t> tokens, std::vector<float>& logits, int64_t logits_from) {
  const int64_t n = int64_t(tokens.size());
  const int64_t V = model_.config.n_vocab;
  QB_ASSERT(n > 0 && logits_from >= 0 && logits_from < n);
  if (n_past_ + n > n_ctx_) {
    throw Error("sequence of " + std::to_string(n_past_ + n) + " tokens exceeds the context size " +
                std::to_string(n_ctx_));
  }
  for (int32_t t : tokens) {
    if (t < 0 || t >= V) throw Error("token id " + std::to_string(t) + " is outside the vocabulary of " + std::to_string(V));
  }
  logits.resize(size_t((n - logits_from) * V));
  const int64_t pos0 = n_past_;
  for (int64_t b0 = 0; b0 < n; b0 += kMaxBatch) {
    const int64_t nb = std::min(kMaxBatch, n - b0);
    const int64_t from = std::max<int64_t>(logits_from - b0, 0);
    float* out = from < nb ? logits.data() + (b0 + from - logits_from) * V : nullptr;
    eval_batch(tokens.subspan(size_t(b0), size_t(nb)), out, from);
  }
  // A NaN or infinity would turn into "PPL = nan" or an arbitrary argmax downstream: refuse it
  // here, naming the position and, when there is one, the weight that caused it.
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isfinite(logits[i])) continue;
    const int64_t row = logits_from + int64_t(i) / V;
    const std::string weight = find_nonfinite_weight(model_);
    throw Error("non-finite logit (" + std::string(std::isnan(logits[i]) ? "nan" : "inf") + ") at position " +
                std::to_string(pos0 + row) + " (token id " + std::to_string(tokens[size_t(row)]) + ", vocabulary entry " +
                std::to_string(int64_t(i) % V) + "): " +
                (weight.empty() ? std::string("every weight is finite (overflow in the forward pass)")
                                : "the model " + model_.path + " has a non-finite weight: " + weight));
  }
}

void Forward::eval_batch(std::span<const int32_t> tokens, float* logits, int64_t logits_from) {
  const ModelConfig& c = model_.config;
  const int64_t n = int64_t(tokens.size());
  const int64_t d = c.n_embd, dkv = c.n_embd_kv(), hd = c.head_dim(), ff = c.n_ff;
  const int64_t n_head = c.n_head, group = c.n_head / c.n_head_kv, half = c.n_rot / 2;
  const int64_t p0 = n_past_;
  x_.resize(size_t(n * d));
  xn_.resize(size_t(n * d));
  q_.resize(size_t(n * d));
  k_.resize(size_t(n * dkv));
  v_.resize(size_t(n * dkv));
  attn_.resize(size_t(n * d));
  gate_.resize(size_t(n * ff));
  up_.resize(size_t(n * ff));
  ffn_.resize(size_t(n * d));

  // Every matmul of this batch quantizes its activation rows into the same scratch.
  auto linear = [&](const Matrix& w, const float* in, int64_t n_rows, float* out) {
    const size_t need = matmul_scratch_bytes(w, n_rows, model_.matmul);
    if (matmul_scratch_.size() < need) matmul_scratch_.resize(need);
    matmul(w, in, n_rows, out, matmul_scratch_, model_.matmul);
  };

  for (int64_t t = 0; t < n; ++t) matrix_row(model_.tok_embd, tokens[size_t(t)], x_.data() + t * d);

  auto rope = [&](float* vecs, int64_t n_heads_here, int64_t width) {
    for (int64_t t = 0; t < n; ++t) {
      const float* cs = rope_cos_.data() + (p0 + t) * half;
      const float* sn = rope_sin_.data() + (p0 + t) * half;
      for (int64_t h = 0; h < n_heads_here; ++h) {
        float* v = vecs + t * width + h * hd;
        for (int64_t i = 0; i < half; ++i) {
          const int64_t a = c.rope_type == RopeType::Normal ? 2 * i : i;
          const int64_t b = c.rope_type == RopeType::Normal ? 2 * i + 1 : i + half;
          const float x0 = v[a], x1 = v[b];
          v[a] = x0 * cs[i] - x1 * sn[i];
          v[b] = x0 * sn[i] + x1 * cs[i];
        }
      }
    }
  };

  auto observe = [&](int64_t layer, LinearInput input, const float* x, int64_t rows, int64_t cols) {
    if (observer_) observer_(layer, input, x, rows, cols);
  };
  const float kq_scale = 1.0f / std::sqrt(float(hd));
  const QuantDotKernel* qk_kernel =
      find_quant_dot(TensorType::F32, model_.matmul.isa ? *model_.matmul.isa : default_isa());
  QB_ASSERT(qk_kernel != nullptr);
  const QuantDotKernel& qk = *qk_kernel;
  const KvCacheTypes& kv = model_.kv_cache;
  const int64_t rot_k = kv_key_rotation(kv, hd), rot_v = kv_value_rotation(kv, hd);
  // Scores of a query against n_keys stored keys of a low-precision cache (rows `stride` bytes
  // apart from `k0`), as llama.cpp's CPU flash attention computes them: the query in the key
  // type's dot-product partner format, then that format's kernel per key.
  const QuantDotKernel* k_kernel =
      kv.k == TensorType::F32 ? nullptr : find_quant_dot(kv.k, model_.matmul.isa ? *model_.matmul.isa : default_isa());
  auto key_scores = [&](const float* q, const uint8_t* k0, size_t stride, int64_t n_keys, float* out) {
    const TensorType act = k_kernel != nullptr ? k_kernel->activation_type : TensorType::Q8_0;
    std::vector<uint8_t> qa(activation_row_bytes(act, hd));
    std::vector<float> qf(static_cast<size_t>(hd));
    if (act == TensorType::F32) {
      // f16 / bf16 keys: llama.cpp converts the query to the key type first.
      std::vector<uint8_t> qh(row_bytes(type_traits(kv.k), hd));
      type_traits(kv.k).quantize_row(q, qh.data(), hd);
      type_traits(kv.k).dequantize_row(qh.data(), qf.data(), hd);
      std::memcpy(qa.data(), qf.data(), qa.size());
    } else {
      quantize_activation_row(act, q, qa.data(), hd);
    }
    if (k_kernel != nullptr) {
      for (int64_t j = 0; j < n_keys; ++j) k_kernel->dot(hd, k0 + size_t(j) * stride, qa.data(), 0, 1, out + j, 1);
      return;
    }
    // No kernel for the key type (iq4_nl): its dequantized keys against the query's Q8_0 values.
    dequantize_activation_row(act, qa.data(), qf.data(), hd);
    std::vector<float> krow(static_cast<size_t>(hd));
    for (int64_t j = 0; j < n_keys; ++j) {
      type_traits(kv.k).dequantize_row(k0 + size_t(j) * stride, krow.data(), hd);
      float s = 0;
      for (int64_t i = 0; i < hd; ++i) s += qf[size_t(i)] * krow[size_t(i)];
      out[j] = s;
    }
  };
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerWeights& L = model_.layers[size_t(l)];
    for (int64_t t = 0; t < n; ++t) rms_norm(x_.data() + t * d, L.attn_norm.data(), xn_.data() + t * d, d, c.rms_eps);
    observe(l, LinearInput::AttnIn, xn_.data(), n, d);
    linear(L.wq, xn_.data(), n, q_.data());
    linear(L.wk, xn_.data(), n, k_.data());
    linear(L.wv, xn_.data(), n, v_.data());
    add_bias(q_.data(), L.bq, n);
    add_bias(k_.data(), L.bk, n);
    add_bias(v_.data(), L.bv, n);
    rope(q_.data(), n_head, d);
    rope(k_.data(), c.n_head_kv, dkv);
    if (rot_k > 0) {
      hadamard_blocks(q_.data(), n * d, rot_k);
      hadamard_blocks(k_.data(), n * dkv, rot_k);
    }
    if (rot_v > 0) hadamard_blocks(v_.data(), n * dkv, rot_v);
    const int64_t n_kv = c.n_head_kv;
    uint8_t* kc = k_cache_.data() + size_t(l) * size_t(n_ctx_ * n_kv) * k_row_;
    uint8_t* vc = v_cache_.data() + size_t(l) * size_t(n_ctx_ * n_kv) * v_row_;
    tbb::parallel_for(int64_t(0), n * n_kv, [&](int64_t job) {
      const int64_t t = job / n_kv, h = job % n_kv;
      const size_t row = size_t((p0 + t) * n_kv + h);
      store_kv_row(kv.k, k_.data() + t * dkv + h * hd, kc + row * k_row_, hd);
      store_kv_row(kv.v, v_.data() + t * dkv + h * hd, vc + row * v_row_, hd);
    });
    const float* kcf = reinterpret_cast<const float*>(kc);  // F32 caches: [pos][n_embd_kv]
    const float* vcf = reinterpret_cast<const float*>(vc);

    // Causal attention, one (token, head) pair per task; each output is computed by one task
    // in a fixed order, so the result does not depend on the thread count.
    tbb::parallel_for(int64_t(0), n * n_head, [&](int64_t job) {
      const int64_t t = job / n_head, h = job % n_head, kvh = h / group;
      const int64_t n_keys = p0 + t + 1;
      const float* q = q_.data() + t * d + h * hd;
      std::vector<float> scores(static_cast<size_t>(n_keys));
      float mx = -INFINITY;
      if (kv.k == TensorType::F32) {
        // q . k for up to kMaxTokenTile keys per call of the f32 dot kernel of the model's ISA
        // (the scalar one sums in order; a key's value does not depend on the tile).
        for (int64_t j0 = 0; j0 < n_keys; j0 += kMaxTokenTile) {
          const int nk = int(std::min<int64_t>(kMaxTokenTile, n_keys - j0));
          const float* k = kcf + j0 * dkv + kvh * hd;
          qk.dot(hd, reinterpret_cast<const uint8_t*>(q), reinterpret_cast<const uint8_t*>(k),
                 size_t(dkv) * sizeof(float), nk, scores.data() + j0, 1);
        }
      } else {
        key_scores(q, kc + size_t(kvh) * k_row_, size_t(n_kv) * k_row_, n_keys, scores.data());
      }
      for (auto& s : scores) {
        s *= kq_scale;
        mx = std::max(mx, s);
      }
      double sum = 0.0;
      for (auto& s : scores) {
        s = std::exp(s - mx);
        sum += s;
      }
      const float inv = float(1.0 / sum);
      float* out = attn_.data() + t * d + h * hd;
      std::fill(out, out + hd, 0.0f);
      std::vector<float> vrow(kv.v == TensorType::F32 ? 0 : size_t(hd));
      for (int64_t j = 0; j < n_keys; ++j) {
        const float* v = vrow.data();
        if (kv.v == TensorType::F32) {
          v = vcf + j * dkv + kvh * hd;
        } else {
          type_traits(kv.v).dequantize_row(vc + size_t(j * n_kv + kvh) * v_row_, vrow.data(), hd);
        }
        const float p = scores[size_t(j)] * inv;
        for (int64_t i = 0; i < hd; ++i) out[i] += p * v[i];
      }
    });
    if (rot_v > 0) hadamard_blocks(attn_.data(), n * d, rot_v);  // the values' rotation undone
    observe(l, LinearInput::AttnOut, attn_.data(), n, d);
    linear(L.wo, attn_.data(), n, ffn_.data());
    for (int64_t i = 0; i < n * d; ++i) x_[size_t(i)] += ffn_[size_t(i)];

    for (int64_t t = 0; t < n; ++t) rms_norm(x_.data() + t * d, L.ffn_norm.data(), xn_.data() + t * d, d, c.rms_eps);
    observe(l, LinearInput::FfnIn, xn_.data(), n, d);
    linear(L.w_gate, xn_.data(), n, gate_.data());
    linear(L.w_up, xn_.data(), n, up_.data());
    for (int64_t i = 0; i < n * ff; ++i) {
      const float g = gate_[size_t(i)];
      gate_[size_t(i)] = g / (1.0f + std::exp(-g)) * up_[size_t(i)];
    }
    observe(l, LinearInput::FfnDown, gate_.data(), n, ff);
    linear(L.w_down, gate_.data(), n, ffn_.data());
    for (int64_t i = 0; i < n * d; ++i) x_[size_t(i)] += ffn_[size_t(i)];
  }
  n_past_ += n;
  if (logits == nullptr) return;
  const int64_t m = n - logits_from;
  for (int64_t t = 0; t < m; ++t) {
    rms_norm(x_.data() + (logits_from + t) * d, model_.output_norm.data(), xn_.data() + t * d, d, c.rms_eps);
  }
  observe(c.n_layer, LinearInput::Output, xn_.data(), m, d);
  linear(model_.output, xn_.data(), m, logits);
}

}  // namespace qbench
