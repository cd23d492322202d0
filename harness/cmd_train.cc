// qbench train: trains qbench's own default model from a recipe, resumably.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "datasets/generators/generators.h"
#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/kernels/matmul.h"
#include "engine/train/export.h"
#include "harness/cli.h"
#include "harness/commands.h"
#include "harness/train_recipe.h"
#include "tasks/evaluate.h"

namespace qbench::cli {
namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) { g_stop = true; }

std::string strip_ext(const std::string& p, const std::string& ext) {
  return p.size() > ext.size() && p.compare(p.size() - ext.size(), ext.size(), ext) == 0 ? p.substr(0, p.size() - ext.size()) : p;
}

// Quick held-out accuracy of the current parameters: exported, loaded, scored like the suites.
nlohmann::json quick_eval(const train::Trainer& tr, const Tokenizer& tok, const TrainRecipe& r, const std::string& tmp) {
  train::export_gguf(tr.params(), tok, r.name, tmp);
  const Model m = load_model(tmp);
  const LanguageModel lm(m);
  nlohmann::json out;
  struct Q {
    const char* gen;
    TaskKind kind;
    const char* extract;
  };
  for (const Q& q : {Q{"add2", TaskKind::ExactMatch, "reversed_digits"}, Q{"add3", TaskKind::ExactMatch, "reversed_digits"},
                     Q{"sub3", TaskKind::ExactMatch, "reversed_digits"}, Q{"reply_select", TaskKind::MultipleChoice, "exact"}}) {
    TaskDef t;
    t.name = q.gen;
    t.kind = q.kind;
    t.extract = q.extract;
    t.max_tokens = 8;
    const auto items = builtin_generators().get(q.gen).generate(r.eval_items, r.eval_seed);
    const TaskResult res = evaluate_task(lm, t, items);
    out[q.gen] = res.metrics[0].value;
  }
  std::filesystem::remove(tmp);
  return out;
}

// Copies the weights of a loaded model (any storage format, dequantized) into the trainer's
// parameters, tensor by tensor by GGUF name.
void init_from_model(train::TrainParams& params, const Model& m, const std::string& path) {
  std::vector<std::pair<std::string, const Matrix*>> matrices = m.linear_weights();
  matrices.emplace_back("token_embd.weight", &m.tok_embd);
  std::vector<std::pair<std::string, const std::vector<float>*>> vectors = {{"output_norm.weight", &m.output_norm}};
  for (size_t l = 0; l < m.layers.size(); ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    vectors.emplace_back(p + "attn_norm.weight", &m.layers[l].attn_norm);
    vectors.emplace_back(p + "ffn_norm.weight", &m.layers[l].ffn_norm);
  }
  for (size_t s = 0; s < params.tensors().size(); ++s) {
    const train::ParamTensor& pt = params.tensor(int(s));
    float* dst = params.data(int(s));
    bool found = false;
    for (const auto& [name, w] : matrices) {
      if (name != pt.name) continue;
      if (w->rows != pt.rows || w->cols != pt.cols) throw Error(path + ": tensor '" + name + "' has another shape than the recipe's");
      for (int64_t r = 0; r < pt.rows; ++r) matrix_row(*w, r, dst + r * pt.cols);
      found = true;
    }
    for (const auto& [name, v] : vectors) {
      if (name != pt.name) continue;
      if (int64_t(v->size()) != pt.rows * pt.cols) throw Error(path + ": tensor '" + name + "' has another shape than the recipe's");
      std::copy(v->begin(), v->end(), dst);
      found = true;
    }
    if (!found) throw Error(path + ": no tensor '" + pt.name + "'");
  }
}

}  // namespace

int cmd_train(const std::vector<std::string>& args) {
  std::string recipe_path = QBENCH_SOURCE_DIR "/models/default.json", out, ckpt, log_path, init_from;
  int64_t max_steps = -1;
  double minutes = 0;
  bool resume = false, quiet = false;
  int threads = 0;
  bool json = false;
  po::options_description desc("qbench train options");
  desc.add_options()
      ("recipe", po::value(&recipe_path)->value_name("FILE"), "training recipe (default: models/default.json)")
      ("out,o", po::value(&out)->value_name("F.gguf"), "where the trained model goes (default: models/default.gguf)")
      ("checkpoint", po::value(&ckpt)->value_name("FILE"), "checkpoint file (default: <out>.ckpt)")
      ("log", po::value(&log_path)->value_name("FILE"), "loss log, CSV (default: <out>-train.csv); appended on --resume")
      ("resume", po::bool_switch(&resume), "continue from the checkpoint if it exists")
      ("init-from", po::value(&init_from)->value_name("F.gguf"),
       "start from these weights (fresh optimizer state), e.g. when a checkpoint was lost")
      ("max-steps", po::value(&max_steps)->value_name("N"), "stop after N more steps (checkpoint and export)")
      ("minutes", po::value(&minutes)->value_name("M"), "stop after M minutes (checkpoint and export)")
      ("quiet", po::bool_switch(&quiet), "no progress lines");
  add_output_options(desc, json, threads);
  po::variables_map vm;
  if (!parse(args, desc,
             "usage: qbench train [--recipe FILE] [--out F.gguf] [--resume] [--minutes M | --max-steps N]\n\n"
             "Trains a Llama model from a recipe on data generated by qbench's own generators. Writes\n"
             "checkpoints (parameters + AdamW state + data RNG) so a long run can stop (Ctrl-C, --minutes)\n"
             "and continue with --resume bit-exactly; exports the GGUF whenever it stops.",
             vm)) {
    return 0;
  }
  set_threads(threads);
  if (out.empty()) out = QBENCH_SOURCE_DIR "/models/default.gguf";
  if (ckpt.empty()) ckpt = strip_ext(out, ".gguf") + ".ckpt";
  if (log_path.empty()) log_path = strip_ext(out, ".gguf") + "-train.csv";
  const TrainRecipe recipe = load_recipe(recipe_path);
  const Tokenizer tok = char_tokenizer();
  auto say = [&](const std::string& s) {
    if (!quiet) std::fprintf(stderr, "%s\n", s.c_str());
  };

  train::TrainerConfig cfg = recipe.trainer;
  cfg.checkpoint_interval = 0;  // this command saves checkpoints itself
  const int64_t ckpt_every = recipe.trainer.checkpoint_interval > 0 ? recipe.trainer.checkpoint_interval : 200;
  const int64_t eval_every = recipe.trainer.eval_interval;
  cfg.eval_interval = 0;
  train::Trainer tr(cfg);
  // Cumulative wall time and tokens across resumed runs live beside the checkpoint.
  const std::string meta_path = ckpt + ".json";
  double train_seconds = 0.0;
  if (resume && std::filesystem::exists(ckpt)) {
    tr.load_checkpoint(ckpt);
    if (std::filesystem::exists(meta_path)) {
      train_seconds = nlohmann::json::parse(read_file(meta_path)).value("train_seconds", 0.0);
    }
    say("resumed from " + ckpt + " at step " + std::to_string(tr.step()));
  } else if (!init_from.empty()) {
    init_from_model(tr.params(), load_model(init_from), init_from);
    say("initialised from " + init_from);
  }

  say("recipe " + recipe_path + ": " + std::to_string(recipe.trainer.total_steps) + " steps of " +
      std::to_string(cfg.batch_size) + " x " + std::to_string(cfg.seq_len) + " tokens");
  const TrainingData data(recipe, tok, say);
  const train::Batch held_out = data.held_out_batch(16, cfg.seq_len);

  const bool new_log = !resume || !std::filesystem::exists(log_path);
  std::ofstream logf(log_path, new_log ? std::ios::trunc : std::ios::app);
  if (!logf) throw Error(log_path + ": cannot open for writing");
  if (new_log) logf << "step,loss,lr,grad_norm,tokens_per_s,train_seconds,heldout_loss,add2_em,add3_em,sub3_em,reply_select_acc\n";

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const auto start = std::chrono::steady_clock::now();
  const double base_seconds = train_seconds;
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  auto save = [&] {
    tr.save_checkpoint(ckpt);
    write_file_atomic(meta_path, nlohmann::json{{"step", tr.step()}, {"train_seconds", base_seconds + elapsed()},
                                                {"recipe", recipe.to_json()}}.dump(2));
  };
  const int64_t start_step = tr.step();
  double last_loss = 0;
  nlohmann::json last_eval;
  auto source = [&](int64_t, train::Rng& rng, train::Batch& b) { data.fill(rng, b); };
  while (tr.step() < cfg.total_steps && !g_stop) {
    if (max_steps >= 0 && tr.step() - start_step >= max_steps) break;
    if (minutes > 0 && elapsed() > minutes * 60) break;
    int64_t chunk = std::min<int64_t>(25, cfg.total_steps - tr.step());
    if (max_steps >= 0) chunk = std::min(chunk, max_steps - (tr.step() - start_step));
    tr.train(source,
             {.on_step = [&](const train::StepStats& s) {
               last_loss = s.loss;
               const bool eval_now = eval_every > 0 && (s.step % eval_every == 0 || s.step == cfg.total_steps);
               std::string ev = ",,,,,";
               if (eval_now) {
                 const double hl = tr.eval_loss(held_out);
                 last_eval = quick_eval(tr, tok, recipe, out + ".eval.tmp.gguf");
                 last_eval["heldout_loss"] = hl;
                 char buf[200];
                 std::snprintf(buf, sizeof buf, ",%.5f,%.3f,%.3f,%.3f,%.3f", hl, last_eval["add2"].get<double>(),
                               last_eval["add3"].get<double>(), last_eval["sub3"].get<double>(),
                               last_eval["reply_select"].get<double>());
                 ev = buf;
                 say("eval step " + std::to_string(s.step) + ": " + last_eval.dump());
               }
               char line[200];
               std::snprintf(line, sizeof line, "%lld,%.5f,%.6g,%.4f,%.0f,%.1f", (long long)s.step, s.loss, s.lr,
                             s.grad_norm, s.tokens_per_s, base_seconds + elapsed());
               logf << line << ev << "\n";
               if (s.step % 25 == 0) {
                 logf.flush();
                 if (!quiet) std::fprintf(stderr, "step %lld/%lld loss %.4f lr %.2e |g| %.3f %.0f tok/s\n", (long long)s.step,
                                          (long long)cfg.total_steps, s.loss, s.lr, s.grad_norm, s.tokens_per_s);
               }
               if (s.step % ckpt_every == 0) save();
             }},
             chunk);
  }
  save();
  logf.flush();
  train::export_gguf(tr.params(), tok, recipe.name, out);
  const bool finished = tr.step() >= cfg.total_steps;
  say(std::string(finished ? "finished" : "stopped") + " at step " + std::to_string(tr.step()) + "; wrote " + out +
      " and checkpoint " + ckpt);
  if (json) {
    print_json({{"command", "train"}, {"recipe", recipe_path}, {"out", out}, {"checkpoint", ckpt}, {"step", tr.step()},
                {"total_steps", cfg.total_steps}, {"finished", finished}, {"loss", last_loss},
                {"train_seconds", base_seconds + elapsed()}, {"last_eval", last_eval}});
  }
  return 0;
}

}  // namespace qbench::cli
