#include "harness/qat.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/train/export.h"
#include "engine/train/fake_quant.h"
#include "engine/train/trainer.h"
#include "harness/sha256.h"
#include "harness/train_recipe.h"

namespace qbench {
namespace {

// The scales' state beside the trainer's checkpoint: "QBQATST1" | i64 step | i64 adam steps |
// u64 n | f32 values[n] | f32 m[n] | f32 v[n]. Written atomically after the trainer's; the step
// must match the trainer checkpoint's on resume.
void save_qat_state(const std::string& path, train::FakeQuantLinear& fq, int64_t step) {
  std::string buf = "QBQATST1";
  auto pod = [&](const auto& v) { buf.append(reinterpret_cast<const char*>(&v), sizeof v); };
  auto floats = [&](const std::vector<float>& v) {
    buf.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  };
  pod(step);
  pod(fq.adam_steps());
  pod(uint64_t(fq.values().size()));
  floats(fq.values());
  floats(fq.adam_m());
  floats(fq.adam_v());
  write_file_atomic(path, buf);
}

void load_qat_state(const std::string& path, train::FakeQuantLinear& fq, int64_t step) {
  const std::string buf = read_file(path);
  const size_t n = fq.values().size();
  const size_t want = 8 + 3 * 8 + 3 * n * sizeof(float);
  if (buf.size() != want || buf.compare(0, 8, "QBQATST1") != 0) {
    throw Error(path + ": not a qat state file for this model and scheme (" + std::to_string(buf.size()) +
                " bytes, expected " + std::to_string(want) + ")");
  }
  int64_t saved_step = 0, adam_steps = 0;
  uint64_t saved_n = 0;
  std::memcpy(&saved_step, buf.data() + 8, 8);
  std::memcpy(&adam_steps, buf.data() + 16, 8);
  std::memcpy(&saved_n, buf.data() + 24, 8);
  if (saved_step != step || saved_n != n) {
    throw Error(path + ": saved at step " + std::to_string(saved_step) + ", but the checkpoint is at step " +
                std::to_string(step) + "; start again without --resume");
  }
  const char* p = buf.data() + 32;
  for (std::vector<float>* v : {&fq.values(), &fq.adam_m(), &fq.adam_v()}) {
    std::memcpy(v->data(), p, n * sizeof(float));
    p += n * sizeof(float);
  }
  fq.adam_steps() = adam_steps;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot read --data");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Windows of a text's tokens at random offsets, every position scored.
class TextWindows {
 public:
  TextWindows(const std::string& text, const Tokenizer& tok) : tokens_(tok.encode(text, true)) {}
  void fill(train::Rng& rng, train::Batch& b) const {
    const int64_t T = b.seq_len;
    if (int64_t(tokens_.size()) < T + 1) {
      throw Error("qat: the training text has " + std::to_string(tokens_.size()) + " tokens, fewer than one window of " +
                  std::to_string(T + 1));
    }
    for (int64_t s = 0; s < b.n_seq; ++s) {
      const size_t o = size_t(rng.below(uint64_t(int64_t(tokens_.size()) - T)));
      std::copy(tokens_.begin() + std::ptrdiff_t(o), tokens_.begin() + std::ptrdiff_t(o + size_t(T) + 1), b.seq_tokens(s));
      std::fill(b.seq_mask(s), b.seq_mask(s) + T, 1.0f);
    }
  }

 private:
  std::vector<int32_t> tokens_;
};

const Matrix* find_matrix(const Model& m, const std::string& name) {
  for (const auto& [n, w] : m.linear_weights()) {
    if (n == name) return w;
  }
  return nullptr;
}

}  // namespace

std::string qat_data_sha256(const QatRunOptions& o) {
  if (!o.data_text.empty()) return sha256_hex(o.data_text);
  return sha256_hex(read_file(o.data_path.empty() ? o.recipe_path : o.data_path));
}

QatOutcome run_qat(const Model& m, const quant::QatSettings& st, const QatRunOptions& o,
                   const quant::Calibration* calib) {
  auto say = [&](const std::string& s) {
    if (o.say) o.say(s);
  };
  const std::string& method = st.ptq.method;
  train::check_train_config(m.config);
  if (st.q4_0 && calib != nullptr) {
    throw Error("qat: the q4_0 target starts from ggml's plain rounding; an importance matrix (--calib, --imatrix) "
                "would give other bytes: leave it out");
  }
  QatOutcome res;
  quant::Recipe recipe = quant::make_recipe(st.ptq.to_string());
  recipe.pure = st.q4_0;  // every tensor in Q4_0, not llama.cpp's Q4_0 mix (q6_K output)
  res.model = quant::quantize_model(m, recipe, &res.ptq, calib, o.stop);
  const Model& ptq = res.model;
  say("quantized with " + st.ptq.to_string() + " in " + std::to_string(res.ptq.seconds) + " s");

  train::TrainerConfig cfg;
  cfg.model = m.config;
  cfg.tied_output = m.tied_output;
  cfg.train_embedding = false;
  cfg.batch_size = st.batch;
  cfg.seq_len = st.seq_len > 0 ? st.seq_len : std::min<int64_t>(m.config.n_ctx_train, 128);
  cfg.lr = st.lr;
  cfg.min_lr_ratio = 0.1;
  cfg.warmup_steps = std::max<int64_t>(1, st.steps / 10);
  cfg.total_steps = st.steps;
  cfg.adamw.weight_decay = 0.0;
  cfg.seed = st.seed;
  train::Trainer tr(cfg);
  // Weights: RTN's (and Q4_0's) forward is the same from the FP weights (kept as masters: they carry what
  // lies between the grid points); GPTQ's and AWQ's codes (and AWQ's folded norms) only from
  // their own dequantized output.
  const bool from_rtn = method == "rtn" || method == "q4_0";
  train::import_params(tr.params(), from_rtn ? m : ptq, m.path);
  if (st.q4_0) {
    // The token embedding is not trained; a pure Q4_0 file stores it in Q4_0 too, so the student
    // reads it (and a tied output) as served.
    train::TrainParams stored(m.config, m.tied_output);
    train::import_params(stored, ptq, m.path);
    const int e = stored.tok_embd();
    std::copy(stored.data(e), stored.data(e) + stored.tensor(e).size(), tr.params().data(e));
  }
  train::TrainParams teacher(m.config, m.tied_output);
  train::import_params(teacher, m, m.path);
  train::QatConfig qc;
  qc.target = st.q4_0 ? train::QatTarget::ggml_q4_0() : train::QatTarget(st.format);
  qc.scale_lr_ratio = st.scale_lr_ratio;
  qc.adam = cfg.adamw;
  train::FakeQuantLinear fq(tr.params(), qc);
  const TensorType type = qc.target.type();
  for (int s = 0; s < int(tr.params().tensors().size()); ++s) {
    if (!fq.quantized(s)) continue;
    const std::string& name = tr.params().tensor(s).name;
    const Matrix* w = find_matrix(ptq, name);
    if (w == nullptr || w->type != type) {
      throw Error("qat: " + name + " was not quantized to " + std::string(type_traits(type).name) +
                  " by " + st.ptq.to_string() + " (a fallback?); QAT needs every linear weight in the one format");
    }
    // The PTQ's scales (and zero points), e.g. GPTQ's or RTN's with clip=mse; not Q4_0's: its
    // start is the fake quantizer's own (ggml's unrounded scale, whose stored fp16 value would
    // not reproduce the codes).
    if (!st.q4_0) fq.set_from_packed(s, w->data);
    // Start where PTQ ends: the fake quantizer packs the same bytes.
    if (fq.pack(s, tr.params().data(s)) != std::vector<uint8_t>(w->data, w->data + w->bytes())) {
      throw Error("qat: internal error: the fake quantizer does not reproduce the PTQ bytes of " + name);
    }
  }
  tr.set_linear(&fq);

  const std::string state_path = o.checkpoint + ".qat", meta_path = o.checkpoint + ".json";
  if (o.resume && !o.checkpoint.empty() && std::filesystem::exists(o.checkpoint)) {
    tr.load_checkpoint(o.checkpoint);
    load_qat_state(state_path, fq, tr.step());
    if (std::filesystem::exists(meta_path)) {
      const nlohmann::json meta = nlohmann::json::parse(read_file(meta_path));
      const std::string want = quant::qat_spec(st).to_string();
      if (meta.value("scheme", "") != want) {
        throw Error(o.checkpoint + ": a checkpoint of " + meta.value("scheme", "?") + ", not of " + want +
                    "; start again without --resume");
      }
      res.train_seconds = meta.value("train_seconds", 0.0);
    }
    say("resumed from " + o.checkpoint + " at step " + std::to_string(tr.step()));
  }

  std::optional<TrainingData> gen;
  std::optional<TextWindows> text;
  if (!o.data_text.empty()) {
    text.emplace(o.data_text, m.require_tokenizer());
  } else if (!o.data_path.empty()) {
    text.emplace(read_text(o.data_path), m.require_tokenizer());
  } else {
    gen.emplace(load_recipe(o.recipe_path), m.require_tokenizer(), say);
  }
  train::TrainModel teacher_model;
  auto source = [&](int64_t, train::Rng& rng, train::Batch& b) {
    if (gen) {
      gen->fill(rng, b);
    } else {
      text->fill(rng, b);
    }
    b.ce_weight = 1.0;
    b.kd_weight = 0.0;
    if (st.kd_weight > 0) teacher_model.forward(teacher, b, &b.teacher_logits);
    b.ce_weight = st.ce_weight;
    b.kd_weight = st.kd_weight;
  };

  std::ofstream logf;
  if (!o.log_path.empty()) {
    const bool new_log = !o.resume || !std::filesystem::exists(o.log_path);
    logf.open(o.log_path, new_log ? std::ios::trunc : std::ios::app);
    if (!logf) throw Error(o.log_path + ": cannot open for writing");
    if (new_log) logf << "step,loss,lr,grad_norm,tokens_per_s,train_seconds\n";
  }

  const auto start = std::chrono::steady_clock::now();
  const double base_seconds = res.train_seconds;
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  auto save = [&] {
    if (o.checkpoint.empty()) return;
    tr.save_checkpoint(o.checkpoint);
    save_qat_state(state_path, fq, tr.step());
    write_file_atomic(meta_path, nlohmann::json{{"step", tr.step()}, {"train_seconds", base_seconds + elapsed()},
                                                {"scheme", quant::qat_spec(st).to_string()}}.dump(2));
  };
  const int64_t start_step = tr.step();
  while (tr.step() < cfg.total_steps && !(o.stop && *o.stop)) {
    if (o.max_steps >= 0 && tr.step() - start_step >= o.max_steps) break;
    if (o.minutes > 0 && elapsed() > o.minutes * 60) break;
    int64_t chunk = std::min<int64_t>(10, cfg.total_steps - tr.step());
    if (o.max_steps >= 0) chunk = std::min(chunk, o.max_steps - (tr.step() - start_step));
    tr.train(source,
             {.on_step = [&](const train::StepStats& s) {
               res.loss = s.loss;
               if (logf.is_open()) {
                 char line[160];
                 std::snprintf(line, sizeof line, "%lld,%.6f,%.6g,%.4f,%.0f,%.1f", (long long)s.step, s.loss, s.lr,
                               s.grad_norm, s.tokens_per_s, base_seconds + elapsed());
                 logf << line << "\n";
               }
               if (s.step % o.checkpoint_every == 0) save();
             }},
             chunk);
    if (logf.is_open()) logf.flush();
    const double done = double(tr.step() - start_step), left = double(cfg.total_steps - tr.step());
    char line[160];
    std::snprintf(line, sizeof line, "qat step %lld/%lld loss %.4f  %.0f s, ETA %.0f s", (long long)tr.step(),
                  (long long)cfg.total_steps, res.loss, elapsed(), done > 0 ? elapsed() / done * left : 0.0);
    say(line);
  }
  save();

  // The PTQ model with the trained packed weights and norms.
  Model& q = res.model;
  const train::TrainParams& P = tr.params();
  for (int s = 0; s < int(P.tensors().size()); ++s) {
    if (!fq.quantized(s)) continue;
    auto bytes = std::make_shared<std::vector<uint8_t>>(fq.pack(s, P.data(s)));
    Matrix* w = const_cast<Matrix*>(find_matrix(q, P.tensor(s).name));
    w->data = bytes->data();
    q.storage.push_back(bytes);
  }
  for (size_t l = 0; l < q.layers.size(); ++l) {
    const train::LayerSlots& S = P.layer(int64_t(l));
    q.layers[l].attn_norm.assign(P.data(S.attn_norm), P.data(S.attn_norm) + P.tensor(S.attn_norm).size());
    q.layers[l].ffn_norm.assign(P.data(S.ffn_norm), P.data(S.ffn_norm) + P.tensor(S.ffn_norm).size());
  }
  q.output_norm.assign(P.data(P.output_norm()), P.data(P.output_norm()) + P.tensor(P.output_norm()).size());
  // What was trained is what is served: every packed tensor dequantizes to the trained forward.
  std::vector<float> row;
  for (int s = 0; s < int(P.tensors().size()); ++s) {
    if (!fq.quantized(s)) continue;
    const train::ParamTensor& t = P.tensor(s);
    const float* y = fq.forward(s, P.data(s), t.rows, t.cols);
    const Matrix* w = find_matrix(q, t.name);
    row.resize(size_t(t.cols));
    for (int64_t r = 0; r < t.rows; ++r) {
      w->traits().dequantize_row(w->row(r), row.data(), t.cols);
      if (std::memcmp(row.data(), y + r * t.cols, row.size() * sizeof(float)) != 0) {
        throw Error("qat: internal error: " + t.name + " does not dequantize to the trained weights");
      }
    }
  }
  res.step = tr.step();
  res.total_steps = cfg.total_steps;
  res.finished = tr.step() >= cfg.total_steps;
  res.train_tokens = tr.step() * cfg.batch_size * cfg.seq_len;
  res.train_seconds = base_seconds + elapsed();
  return res;
}

}  // namespace qbench
