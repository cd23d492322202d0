#include "engine/train/trainer.h"

#include <algorithm>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"

namespace qbench::train {
namespace {

constexpr char kMagic[8] = {'Q', 'B', 'T', 'R', 'C', 'K', 'P', 'T'};
constexpr uint32_t kVersion = 1;

uint64_t fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

class Out {
 public:
  template <class T>
  void pod(const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    buf.insert(buf.end(), p, p + sizeof(T));
  }
  void floats(const std::vector<float>& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(v.data());
    buf.insert(buf.end(), p, p + v.size() * sizeof(float));
  }
  std::vector<uint8_t> buf;
};

class In {
 public:
  In(const std::vector<uint8_t>& b, const std::string& path) : buf(b), path(path) {}
  template <class T>
  T pod() {
    T v;
    need(sizeof(T));
    std::memcpy(&v, buf.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  void floats(std::vector<float>& v) {
    need(v.size() * sizeof(float));
    std::memcpy(v.data(), buf.data() + pos, v.size() * sizeof(float));
    pos += v.size() * sizeof(float);
  }
  void need(size_t n) const {
    if (buf.size() - pos < n) throw Error(path + ": truncated checkpoint (" + std::to_string(buf.size()) + " bytes)");
  }
  const std::vector<uint8_t>& buf;
  const std::string& path;
  size_t pos = 0;
};

std::vector<int64_t> model_dims(const ModelConfig& c) {
  return {c.n_vocab, c.n_embd, c.n_ff, c.n_layer, c.n_head, c.n_head_kv, c.n_ctx_train, c.n_rot};
}

void check_trainer_config(const TrainerConfig& c) {
  check_train_config(c.model);
  if (c.batch_size <= 0 || c.seq_len <= 0 || c.seq_len > c.model.n_ctx_train) {
    throw Error("training config: batch size " + std::to_string(c.batch_size) + " and sequence length " +
                std::to_string(c.seq_len) + " must be positive, the latter at most the context length " +
                std::to_string(c.model.n_ctx_train));
  }
  if (c.total_steps <= 0 || c.warmup_steps < 0 || !(c.lr > 0.0) || c.min_lr_ratio < 0.0 || c.eval_interval < 0 ||
      c.checkpoint_interval < 0) {
    throw Error("training config: total steps, learning rate must be positive and warm-up, floor, "
                "intervals non-negative");
  }
  if (c.checkpoint_interval > 0 && c.checkpoint_path.empty()) {
    throw Error("training config: checkpoint interval given without a checkpoint path");
  }
  if (!c.train_embedding && c.adamw.decay_embedding) {
    throw Error("training config: a frozen embedding cannot also decay (adamw.decay_embedding)");
  }
}

}  // namespace

Trainer::Trainer(const TrainerConfig& config, LinearWeight* linear)
    : config_(config), model_(linear), rng_(Rng::derived(config.seed, 0xDA7A)) {
  check_trainer_config(config_);
  params_ = TrainParams(config_.model, config_.tied_output);
  init_params(params_, config_.seed, config_.init_std);
  adamw_ = AdamW(params_, config_.adamw);
  schedule_ = LrSchedule{config_.lr, config_.min_lr_ratio, config_.warmup_steps, config_.total_steps};
  grad_.assign(params_.size(), 0.0f);
}

StepStats Trainer::train_step(const Batch& batch) {
  const auto t0 = std::chrono::steady_clock::now();
  StepStats s;
  s.loss = model_.forward_backward(params_, batch, grad_);
  if (!config_.train_embedding) {
    // A zero gradient leaves AdamW's moments and the tensor at rest (the embedding never decays
    // unless adamw.decay_embedding, which check_trainer_config refuses with a frozen embedding).
    const ParamTensor& t = params_.tensor(params_.tok_embd());
    std::fill(grad_.begin() + std::ptrdiff_t(t.offset), grad_.begin() + std::ptrdiff_t(t.offset + t.size()), 0.0f);
  }
  s.grad_norm = clip_grad_norm(grad_, config_.clip_grad_norm);
  s.lr = schedule_.at(step_);
  adamw_.step(params_, grad_, s.lr);
  model_.linear()->after_step(s.lr);
  ++step_;
  s.step = step_;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.tokens_per_s = secs > 0.0 ? double(batch.n_tokens()) / secs : 0.0;
  return s;
}

void Trainer::train(const BatchSource& source, const TrainerCallbacks& cb, int64_t max_steps) {
  Batch batch;
  const int64_t end = max_steps < 0 ? config_.total_steps : std::min(config_.total_steps, step_ + max_steps);
  while (step_ < end) {
    batch.resize(config_.batch_size, config_.seq_len);
    source(step_, rng_, batch);
    if (batch.n_seq != config_.batch_size || batch.seq_len != config_.seq_len) {
      throw Error("batch source returned " + std::to_string(batch.n_seq) + " x " + std::to_string(batch.seq_len) +
                  ", expected " + std::to_string(config_.batch_size) + " x " + std::to_string(config_.seq_len));
    }
    const StepStats s = train_step(batch);
    if (cb.on_step) cb.on_step(s);
    const bool last = step_ == config_.total_steps;
    if (cb.eval && ((config_.eval_interval > 0 && step_ % config_.eval_interval == 0) || last)) {
      const double loss = cb.eval(*this);
      if (cb.on_eval) cb.on_eval(step_, loss);
    }
    if (config_.checkpoint_interval > 0 && (step_ % config_.checkpoint_interval == 0 || last)) {
      save_checkpoint(config_.checkpoint_path);
      if (cb.on_checkpoint) cb.on_checkpoint(step_, config_.checkpoint_path);
    }
  }
}

void Trainer::save_checkpoint(const std::string& path) const {
  Out o;
  o.buf.insert(o.buf.end(), kMagic, kMagic + 8);
  o.pod(kVersion);
  for (int64_t v : model_dims(params_.config())) o.pod(v);
  o.pod(params_.config().rope_freq_base);
  o.pod(params_.config().rms_eps);
  o.pod(uint32_t(params_.tied_output() ? 1 : 0));
  o.pod(step_);
  o.pod(adamw_.steps_taken());
  for (uint64_t w : rng_.state()) o.pod(w);
  o.pod(uint64_t(params_.size()));
  o.floats(params_.values);
  o.floats(adamw_.m());
  o.floats(adamw_.v());
  o.pod(fnv1a(o.buf.data(), o.buf.size()));

  OutputFile f(path);  // atomic: a crash leaves the previous checkpoint
  f.write(o.buf.data(), o.buf.size());
  f.commit();
}

void Trainer::load_checkpoint(const std::string& path) {
  const std::string bytes = read_file(path);  // refuses FIFOs and devices
  const std::vector<uint8_t> buf(bytes.begin(), bytes.end());
  if (buf.size() < 8 || std::memcmp(buf.data(), kMagic, 8) != 0) {
    throw Error(path + ": not a qbench training checkpoint (bad magic)");
  }
  In in(buf, path);
  in.pos = 8;
  const uint32_t version = in.pod<uint32_t>();
  if (version != kVersion) {
    throw Error(path + ": checkpoint version " + std::to_string(version) + " is not supported (expected " +
                std::to_string(kVersion) + ")");
  }
  const std::vector<int64_t> want = model_dims(params_.config());
  for (size_t i = 0; i < want.size(); ++i) {
    const int64_t got = in.pod<int64_t>();
    if (got != want[i]) {
      throw Error(path + ": checkpoint model dimension " + std::to_string(i) + " is " + std::to_string(got) +
                  ", this trainer's is " + std::to_string(want[i]));
    }
  }
  const float base = in.pod<float>(), eps = in.pod<float>();
  const uint32_t tied = in.pod<uint32_t>();
  if (base != params_.config().rope_freq_base || eps != params_.config().rms_eps ||
      (tied != 0) != params_.tied_output()) {
    throw Error(path + ": checkpoint rope base, RMS epsilon or tied output differ from this trainer's");
  }
  const int64_t step = in.pod<int64_t>();
  const int64_t adam_t = in.pod<int64_t>();
  Rng::State rs;
  for (auto& w : rs) w = in.pod<uint64_t>();
  const uint64_t n = in.pod<uint64_t>();
  if (n != params_.size()) {
    throw Error(path + ": checkpoint holds " + std::to_string(n) + " parameters, the model has " +
                std::to_string(params_.size()));
  }
  const size_t expected = in.pos + 3 * n * sizeof(float) + sizeof(uint64_t);
  if (buf.size() != expected) {
    throw Error(path + ": checkpoint is " + std::to_string(buf.size()) + " bytes, expected " +
                std::to_string(expected) + (buf.size() < expected ? " (truncated)" : ""));
  }
  uint64_t stored_sum;
  std::memcpy(&stored_sum, buf.data() + buf.size() - sizeof(uint64_t), sizeof(uint64_t));
  if (stored_sum != fnv1a(buf.data(), buf.size() - sizeof(uint64_t))) {
    throw Error(path + ": checkpoint checksum mismatch (corrupt file)");
  }
  if (step < 0 || adam_t < 0) throw Error(path + ": checkpoint step count is negative");
  in.floats(params_.values);
  in.floats(adamw_.m());
  in.floats(adamw_.v());
  adamw_.set_steps_taken(adam_t);
  rng_.set_state(rs);
  step_ = step;
}

}  // namespace qbench::train
