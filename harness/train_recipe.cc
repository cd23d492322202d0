#include "harness/train_recipe.h"

#include <algorithm>

#include "datasets/corpus.h"
#include "datasets/generators/generators.h"
#include "engine/core/error.h"
#include "engine/core/mapped_file.h"

namespace qbench {
namespace {

template <typename T>
void get(const nlohmann::json& j, const char* key, T& out, const std::string& where) {
  if (!j.contains(key)) return;
  try {
    out = j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error(where + ": field '" + key + "' has the wrong type (" + j.at(key).dump() + ")");
  }
}

void only(const nlohmann::json& j, std::initializer_list<const char*> keys, const std::string& where) {
  if (!j.is_object()) throw Error(where + ": expected an object");
  for (const auto& [k, v] : j.items()) {
    if (std::find_if(keys.begin(), keys.end(), [&](const char* x) { return k == x; }) == keys.end()) {
      throw Error(where + ": unknown field '" + k + "'");
    }
  }
}

TokenizedItem tokenize_item(const Tokenizer& tok, const Example& e, float context_weight) {
  TokenizedItem t;
  std::string context = e.context, target = e.target;
  if (e.is_multiple_choice() && e.gold >= 0) target = e.choices[size_t(e.gold)] + "\n";
  if (target.empty() || target.back() != '\n') target += "\n";
  const auto ctx = tok.encode(context, true);
  t.tokens = tok.encode(context + target, true);
  const size_t n_ctx = std::min(ctx.size(), t.tokens.size());
  t.weights.assign(t.tokens.size() - 1, 1.0f);
  // weights[i] is for predicting tokens[i + 1]: context tokens (positions < n_ctx) weigh less.
  for (size_t i = 0; i + 1 < n_ctx && i < t.weights.size(); ++i) t.weights[i] = context_weight;
  return t;
}

}  // namespace

nlohmann::json TrainRecipe::to_json() const {
  const auto& m = trainer.model;
  return {
      {"version", version},
      {"name", name},
      {"model", {{"n_embd", m.n_embd}, {"n_ff", m.n_ff}, {"n_layer", m.n_layer}, {"n_head", m.n_head},
                 {"n_head_kv", m.n_head_kv}, {"n_ctx", m.n_ctx_train}, {"rope_freq_base", m.rope_freq_base},
                 {"rms_eps", m.rms_eps}, {"tied_output", trainer.tied_output}}},
      {"train", {{"batch_size", trainer.batch_size}, {"seq_len", trainer.seq_len}, {"lr", trainer.lr},
                 {"min_lr_ratio", trainer.min_lr_ratio}, {"warmup_steps", trainer.warmup_steps},
                 {"total_steps", trainer.total_steps}, {"weight_decay", trainer.adamw.weight_decay},
                 {"beta2", trainer.adamw.beta2}, {"clip_grad_norm", trainer.clip_grad_norm},
                 {"init_std", trainer.init_std}, {"seed", trainer.seed}, {"eval_interval", trainer.eval_interval},
                 {"checkpoint_interval", trainer.checkpoint_interval}}},
      {"data", {{"mix", mix}, {"pool_size", pool_size}, {"seed", data_seed}, {"eval_seed", eval_seed},
                {"eval_exclude", eval_exclude}, {"context_weight", context_weight}, {"eval_items", eval_items}}},
  };
}

TrainRecipe load_recipe(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {  // also numbers out of range (1e400)
    throw Error(path + ": not valid JSON: " + e.what());
  }
  TrainRecipe r;
  r.file = path;
  only(j, {"version", "name", "description", "model", "train", "data"}, path);
  get(j, "version", r.version, path);
  get(j, "name", r.name, path);
  auto& t = r.trainer;
  auto& m = t.model;
  m.arch = "llama";
  m.n_vocab = char_tokenizer().n_tokens();
  m.n_embd = 256;
  m.n_ff = 768;
  m.n_layer = 4;
  m.n_head = 8;
  m.n_head_kv = 4;
  m.n_ctx_train = 128;
  if (j.contains("model")) {
    const auto& mj = j.at("model");
    const std::string w = path + " (model)";
    only(mj, {"n_embd", "n_ff", "n_layer", "n_head", "n_head_kv", "n_ctx", "rope_freq_base", "rms_eps", "tied_output"}, w);
    get(mj, "n_embd", m.n_embd, w);
    get(mj, "n_ff", m.n_ff, w);
    get(mj, "n_layer", m.n_layer, w);
    get(mj, "n_head", m.n_head, w);
    get(mj, "n_head_kv", m.n_head_kv, w);
    get(mj, "n_ctx", m.n_ctx_train, w);
    get(mj, "rope_freq_base", m.rope_freq_base, w);
    get(mj, "rms_eps", m.rms_eps, w);
    get(mj, "tied_output", t.tied_output, w);
  }
  if (m.n_head <= 0 || m.n_embd % m.n_head != 0) throw Error(path + ": n_embd must be a multiple of n_head");
  m.n_rot = m.n_embd / m.n_head;
  t.seq_len = m.n_ctx_train;
  if (j.contains("train")) {
    const auto& tj = j.at("train");
    const std::string w = path + " (train)";
    only(tj, {"batch_size", "seq_len", "lr", "min_lr_ratio", "warmup_steps", "total_steps", "weight_decay", "beta2",
              "clip_grad_norm", "init_std", "seed", "eval_interval", "checkpoint_interval"}, w);
    get(tj, "batch_size", t.batch_size, w);
    get(tj, "seq_len", t.seq_len, w);
    get(tj, "lr", t.lr, w);
    get(tj, "min_lr_ratio", t.min_lr_ratio, w);
    get(tj, "warmup_steps", t.warmup_steps, w);
    get(tj, "total_steps", t.total_steps, w);
    get(tj, "weight_decay", t.adamw.weight_decay, w);
    get(tj, "beta2", t.adamw.beta2, w);
    get(tj, "clip_grad_norm", t.clip_grad_norm, w);
    get(tj, "init_std", t.init_std, w);
    get(tj, "seed", t.seed, w);
    get(tj, "eval_interval", t.eval_interval, w);
    get(tj, "checkpoint_interval", t.checkpoint_interval, w);
  }
  if (t.seq_len > m.n_ctx_train) throw Error(path + ": seq_len exceeds the model context n_ctx");
  if (j.contains("data")) {
    const auto& dj = j.at("data");
    const std::string w = path + " (data)";
    only(dj, {"mix", "pool_size", "seed", "eval_seed", "eval_exclude", "context_weight", "eval_items"}, w);
    get(dj, "mix", r.mix, w);
    get(dj, "pool_size", r.pool_size, w);
    get(dj, "seed", r.data_seed, w);
    get(dj, "eval_seed", r.eval_seed, w);
    get(dj, "eval_exclude", r.eval_exclude, w);
    get(dj, "context_weight", r.context_weight, w);
    get(dj, "eval_items", r.eval_items, w);
  }
  if (r.mix.empty()) throw Error(path + ": data.mix is empty");
  for (const auto& [name, weight] : r.mix) {
    if (!builtin_generators().contains(name)) throw Error(path + ": data.mix names unknown generator '" + name + "'");
    if (!(weight > 0)) throw Error(path + ": data.mix weight of '" + name + "' must be positive");
  }
  if (r.pool_size <= 0) throw Error(path + ": data.pool_size must be positive");
  return r;
}

Tokenizer char_tokenizer() {
  std::vector<std::string> pieces = {"\xE2\x96\x81"};  // the SentencePiece space
  for (int c = 33; c < 127; ++c) pieces.push_back(std::string(1, char(c)));
  return Tokenizer::byte_fallback(pieces);
}

TrainingData::TrainingData(const TrainRecipe& r, const Tokenizer& tok,
                           const std::function<void(const std::string&)>& log) {
  double total = 0.0;
  for (const auto& [name, weight] : r.mix) {
    const Generator& g = builtin_generators().get(name);
    std::vector<Example> train = g.generate(r.pool_size, r.data_seed);
    const std::vector<Example> eval = g.generate(r.eval_exclude, r.eval_seed);
    const size_t removed = dedup_against(train, eval);
    // Distinct training items (generators with small item spaces repeat themselves).
    std::vector<std::string> texts;
    for (const auto& e : train) texts.push_back(training_text(e));
    std::sort(texts.begin(), texts.end());
    const size_t distinct = size_t(std::unique(texts.begin(), texts.end()) - texts.begin());
    if (train.empty()) throw Error("generator '" + name + "' has no training items left after de-duplication");
    std::vector<TokenizedItem> pool;
    pool.reserve(train.size());
    for (const auto& e : train) {
      TokenizedItem t = tokenize_item(tok, e, r.context_weight);
      if (int64_t(t.tokens.size()) > r.trainer.seq_len + 1) continue;  // longer than a row
      pool.push_back(std::move(t));
    }
    if (pool.empty()) {
      throw Error("generator '" + name + "' has no item that fits a row of " + std::to_string(r.trainer.seq_len + 1) +
                  " tokens; raise train.seq_len");
    }
    if (log) {
      log("data: " + name + ": " + std::to_string(pool.size()) + " items (" + std::to_string(distinct) +
          " distinct), " + std::to_string(removed) + " removed as evaluation items, weight " + std::to_string(weight));
    }
    // Held out: the first evaluation items, which de-duplication kept out of the pool.
    for (const auto& e : g.generate(8, r.eval_seed)) held_out_.push_back(tokenize_item(tok, e, r.context_weight));
    names_.push_back(name);
    total += weight;
    cumulative_.push_back(total);
    pools_.push_back(std::move(pool));
  }
  for (double& c : cumulative_) c /= total;
}

void TrainingData::fill(train::Rng& rng, train::Batch& b) const {
  const int64_t T = b.seq_len;
  for (int64_t s = 0; s < b.n_seq; ++s) {
    int32_t* toks = b.seq_tokens(s);
    float* mask = b.seq_mask(s);
    std::fill(toks, toks + T + 1, 2);  // EOS padding
    std::fill(mask, mask + T, 0.0f);
    int64_t pos = 0;
    for (int guard = 0; guard < 64; ++guard) {
      const double u = rng.uniform();
      const size_t g = size_t(std::lower_bound(cumulative_.begin(), cumulative_.end(), u) - cumulative_.begin());
      const auto& pool = pools_[std::min(g, pools_.size() - 1)];
      const TokenizedItem& it = pool[size_t(rng.next() % pool.size())];
      const int64_t n = int64_t(it.tokens.size());
      if (pos + n > T + 1) break;  // the row is full: the rest stays padding
      std::copy(it.tokens.begin(), it.tokens.end(), toks + pos);
      for (int64_t i = 0; i + 1 < n; ++i) mask[pos + i] = it.weights[size_t(i)];
      pos += n;
    }
  }
}

train::Batch TrainingData::held_out_batch(int64_t n_seq, int64_t seq_len) const {
  train::Batch b;
  b.resize(n_seq, seq_len);
  size_t next = 0;
  for (int64_t s = 0; s < n_seq; ++s) {
    int32_t* toks = b.seq_tokens(s);
    float* mask = b.seq_mask(s);
    std::fill(toks, toks + seq_len + 1, 2);
    std::fill(mask, mask + seq_len, 0.0f);
    int64_t pos = 0;
    while (next < held_out_.size()) {
      const TokenizedItem& it = held_out_[next];
      const int64_t n = int64_t(it.tokens.size());
      if (pos + n > seq_len + 1) break;
      std::copy(it.tokens.begin(), it.tokens.end(), toks + pos);
      for (int64_t i = 0; i + 1 < n; ++i) mask[pos + i] = it.weights[size_t(i)];
      pos += n;
      ++next;
    }
  }
  return b;
}

}  // namespace qbench
