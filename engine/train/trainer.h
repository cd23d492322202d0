// A data-agnostic training loop: the caller supplies batches (token ids + loss masks) and,
// optionally, a held-out evaluation; the trainer owns parameters, AdamW state, the schedule,
// logging and checkpoints.
//
//   TrainerConfig cfg;                     // model dims, batch, lr schedule, seed, ...
//   Trainer trainer(cfg);                  // seeded initialisation
//   if (exists(ckpt)) trainer.load_checkpoint(ckpt);
//   trainer.train(
//       [&](int64_t step, Rng& rng, Batch& b) { /* fill cfg.batch_size x cfg.seq_len */ },
//       {.on_step = log, .eval = [&](Trainer& t) { return t.eval_loss(held_out); }});
//   export_gguf(trainer.params(), tokenizer, "name", "model.gguf");
//
// Determinism: for a fixed config, seed and batch source the parameters after N steps are the
// same bit for bit, for any thread count, and whether or not the run was stopped and resumed
// from a checkpoint (the checkpoint holds parameters, AdamW moments, the step and the RNG
// state handed to the batch source).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "engine/model/config.h"
#include "engine/train/adamw.h"
#include "engine/train/model_step.h"
#include "engine/train/params.h"
#include "engine/train/rng.h"

namespace qbench::train {

struct TrainerConfig {
  ModelConfig model;            // arch "llama"; model.n_ctx_train >= seq_len
  bool tied_output = true;      // output projection shares the token embedding
  bool train_embedding = true;  // false: the token embedding (and a tied output) stays as it is
  int64_t batch_size = 32;      // sequences per step
  int64_t seq_len = 64;         // predicted positions per sequence (sequences hold seq_len + 1 tokens)
  double lr = 1e-3;             // peak learning rate
  double min_lr_ratio = 0.1;    // cosine floor, as a fraction of lr
  int64_t warmup_steps = 100;
  int64_t total_steps = 1000;
  AdamWConfig adamw;
  double clip_grad_norm = 1.0;  // global L2 norm; <= 0 disables clipping
  double init_std = 0.02;
  uint64_t seed = 1;
  int64_t eval_interval = 0;        // steps between evaluations (0: never; also at the end)
  int64_t checkpoint_interval = 0;  // steps between checkpoints (0: never)
  std::string checkpoint_path;      // where train() writes checkpoints
};

struct StepStats {
  int64_t step = 0;         // 1-based index of the step just taken
  double loss = 0.0;        // training loss of the batch before the update
  double lr = 0.0;          // learning rate used
  double grad_norm = 0.0;   // global gradient norm before clipping
  double tokens_per_s = 0.0;  // predicted positions of the batch / wall time of the step
};

// Fills `batch` for step `step` (0-based): batch_size sequences of seq_len + 1 tokens. The RNG
// is the trainer's (its state is checkpointed), for sampling that resumes exactly.
using BatchSource = std::function<void(int64_t step, Rng& rng, Batch& batch)>;

class Trainer;
struct TrainerCallbacks {
  std::function<void(const StepStats&)> on_step = {};
  std::function<double(Trainer&)> eval = {};  // held-out loss, called every eval_interval steps
  std::function<void(int64_t step, double loss)> on_eval = {};
  std::function<void(int64_t step, const std::string& path)> on_checkpoint = {};
};

class Trainer {
 public:
  // Throws qbench::Error for an invalid config. `linear` (not owned) is the linear-weight seam
  // (nullptr: plain FP32).
  explicit Trainer(const TrainerConfig& config, LinearWeight* linear = nullptr);

  // Replaces the linear-weight seam (nullptr: plain FP32), e.g. with a fake-quantizer built
  // from parameters loaded after construction.
  void set_linear(LinearWeight* linear) { model_.set_linear(linear); }

  // One optimizer step on `batch` at the current step (then the seam's after_step).
  StepStats train_step(const Batch& batch);
  // Steps until config.total_steps, or at most `max_steps` more (< 0: no limit).
  void train(const BatchSource& source, const TrainerCallbacks& callbacks = {}, int64_t max_steps = -1);
  // Loss of `batch` without gradients.
  double eval_loss(const Batch& batch) { return model_.forward(params_, batch); }

  // Checkpoint file (little-endian, written atomically via temporary file + rename):
  //   "QBTRCKPT" | u32 version | i64 x 8 model dims (vocab, embd, ff, layers, heads, kv heads,
  //   ctx, rot) | f32 rope base | f32 rms eps | u32 tied | i64 step | i64 adam steps |
  //   u64 rng[4] | u64 n_params | f32 params[n] | f32 m[n] | f32 v[n] | u64 FNV-1a of all before.
  void save_checkpoint(const std::string& path) const;
  // Throws qbench::Error naming the file for a bad magic, version, size, checksum, or model
  // dimensions different from this trainer's.
  void load_checkpoint(const std::string& path);

  const TrainerConfig& config() const { return config_; }
  const TrainParams& params() const { return params_; }
  TrainParams& params() { return params_; }
  const AdamW& optimizer() const { return adamw_; }
  int64_t step() const { return step_; }  // optimizer steps taken
  Rng& rng() { return rng_; }
  const LrSchedule& schedule() const { return schedule_; }

 private:
  TrainerConfig config_;
  TrainParams params_;
  AdamW adamw_;
  LrSchedule schedule_;
  TrainModel model_;
  Rng rng_;
  std::vector<float> grad_;
  int64_t step_ = 0;
};

}  // namespace qbench::train
