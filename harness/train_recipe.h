// The recipe of qbench's own default model (models/default.json) and the data pipeline that
// `qbench train` feeds the trainer: a character-level tokenizer, pools of generated items
// (training seed, de-duplicated against the evaluation items of the built-in suites), and
// batches packed from whole items drawn by mixture weights.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

#include "datasets/example.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/train/trainer.h"

namespace qbench {

struct TrainRecipe {
  int version = 1;
  std::string name = "qbench-default";
  train::TrainerConfig trainer;
  // Data: generator name -> mixture weight (share of items drawn), pool size per generator.
  std::map<std::string, double> mix;
  int64_t pool_size = 100000;
  uint64_t data_seed = 2000;     // generators' seed for the training pools
  uint64_t eval_seed = 1000;     // the suites' evaluation seed: these items are excluded
  int64_t eval_exclude = 2000;   // how many evaluation items per generator are excluded
  float context_weight = 0.25f;  // loss weight of context tokens (target tokens weigh 1)
  int64_t eval_items = 60;       // items per task for the periodic accuracy check
  std::string file;

  nlohmann::json to_json() const;
};

// Reads a recipe; throws qbench::Error naming the file and the field.
TrainRecipe load_recipe(const std::string& path);

// The default model's vocabulary: <unk>, <s>, </s>, the 256 byte tokens, "▁" and the 94
// printable ASCII characters other than space, one token each (no merges, so every digit is its
// own token). Anything else falls back to bytes.
Tokenizer char_tokenizer();

// One training item, tokenized: BOS + context + target, with a loss weight per predicted token.
struct TokenizedItem {
  std::vector<int32_t> tokens;
  std::vector<float> weights;  // weights[i] applies to predicting tokens[i + 1]
};

class TrainingData {
 public:
  // Builds the pools (deterministic). Reports the de-duplication counts through `log`.
  TrainingData(const TrainRecipe& r, const Tokenizer& tok, const std::function<void(const std::string&)>& log);
  // Fills `b` with whole items drawn by the mixture weights, packed left to right; the rest of
  // a row is padding with weight 0.
  void fill(train::Rng& rng, train::Batch& b) const;
  // A fixed held-out batch from evaluation-seed items (never trained on).
  train::Batch held_out_batch(int64_t n_seq, int64_t seq_len) const;

 private:
  std::vector<std::string> names_;
  std::vector<double> cumulative_;
  std::vector<std::vector<TokenizedItem>> pools_;
  std::vector<TokenizedItem> held_out_;
};

}  // namespace qbench
