// qbench qat: quantization-aware training of a model into one of qbench's integer formats,
// starting from a post-training quantization (RTN, GPTQ or AWQ) and distilled from the FP model.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/kernels/matmul.h"
#include "engine/model/model_writer.h"
#include "engine/train/export.h"
#include "engine/train/fake_quant.h"
#include "engine/train/trainer.h"
#include "harness/calib_options.h"
#include "harness/cli.h"
#include "harness/commands.h"
#include "harness/sysinfo.h"
#include "harness/train_recipe.h"
#include "quantizers/int_rules.h"
#include "quantizers/quantize_model.h"

namespace qbench::cli {
namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_qat_signal(int) { g_stop = true; }

std::string strip_gguf(const std::string& p) {
  return p.size() > 5 && p.compare(p.size() - 5, 5, ".gguf") == 0 ? p.substr(0, p.size() - 5) : p;
}

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

// Windows of a text file's tokens at random offsets, every position scored.
class TextWindows {
 public:
  TextWindows(const std::string& path, const Tokenizer& tok) : tokens_(tok.encode(read_text(path), true)) {}
  void fill(train::Rng& rng, train::Batch& b) const {
    const int64_t T = b.seq_len;
    if (int64_t(tokens_.size()) < T + 1) {
      throw Error("qat: --data has " + std::to_string(tokens_.size()) + " tokens, fewer than one window of " +
                  std::to_string(T + 1));
    }
    for (int64_t s = 0; s < b.n_seq; ++s) {
      const size_t o = size_t(rng.below(uint64_t(int64_t(tokens_.size()) - T)));
      std::copy(tokens_.begin() + std::ptrdiff_t(o), tokens_.begin() + std::ptrdiff_t(o + size_t(T) + 1), b.seq_tokens(s));
      std::fill(b.seq_mask(s), b.seq_mask(s) + T, 1.0f);
    }
  }

 private:
  static std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot read --data");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::vector<int32_t> tokens_;
};

const Matrix* find_matrix(const Model& m, const std::string& name) {
  for (const auto& [n, w] : m.linear_weights()) {
    if (n == name) return w;
  }
  return nullptr;
}

}  // namespace

int cmd_qat(const std::vector<std::string>& args) {
  std::string model_path = QBENCH_SOURCE_DIR "/models/default.gguf", scheme_text = "rtn:int2,group=32", out, ckpt,
              log_path, data_path, recipe_path = QBENCH_SOURCE_DIR "/models/default.json";
  int64_t steps = 300, batch_size = 16, seq_len = 0, max_steps = -1, ckpt_every = 100;
  double lr = 1e-4, kd_weight = 1.0, ce_weight = 0.0, scale_lr_ratio = 1.0, minutes = 0;
  uint64_t seed = 1;
  bool resume = false, quiet = false, json = false;
  int threads = 0;
  CalibOptions calib_opts;
  po::options_description desc("qbench qat options");
  desc.add_options()
      ("model,m", po::value(&model_path)->value_name("PATH"), "FP model to quantize and teach from (default: models/default.gguf)")
      ("scheme,s", po::value(&scheme_text)->value_name("SPEC"),
       "post-training start and target format: rtn, gptq or awq into a qbench integer format, e.g. "
       "rtn:int2,group=32 or gptq:int3,group=32 (default rtn:int2,group=32); gptq/awq need --calib")
      ("out,o", po::value(&out)->value_name("F.gguf"), "the trained model, packed like the scheme's PTQ output (required)")
      ("steps", po::value(&steps)->value_name("N"), "optimizer steps (default 300)")
      ("lr", po::value(&lr)->value_name("X"), "peak learning rate of the weights (default 1e-4; cosine to 10%, 10% warm-up)")
      ("scale-lr-ratio", po::value(&scale_lr_ratio)->value_name("X"), "scales' and zero points' learning rate / lr (default 1)")
      ("batch", po::value(&batch_size)->value_name("N"), "sequences per step (default 16)")
      ("seq-len", po::value(&seq_len)->value_name("T"), "tokens per sequence (default: the model's context, at most 128)")
      ("kd-weight", po::value(&kd_weight)->value_name("X"), "weight of KL(FP teacher || student) (default 1)")
      ("ce-weight", po::value(&ce_weight)->value_name("X"), "weight of cross-entropy on the data (default 0)")
      ("data", po::value(&data_path)->value_name("FILE"),
       "train on windows of this text (default: the recipe's generators at its training seed, never evaluation items)")
      ("recipe", po::value(&recipe_path)->value_name("FILE"), "recipe whose data section makes the default data (models/default.json)")
      ("seed", po::value(&seed)->value_name("S"), "data order seed (default 1)")
      ("checkpoint", po::value(&ckpt)->value_name("FILE"), "checkpoint (default <out>.ckpt, scales in <checkpoint>.qat)")
      ("checkpoint-every", po::value(&ckpt_every)->value_name("N"), "steps between checkpoints (default 100)")
      ("log", po::value(&log_path)->value_name("FILE"), "loss log, CSV (default <out>-qat.csv); appended on --resume")
      ("resume", po::bool_switch(&resume), "continue from the checkpoint if it exists")
      ("max-steps", po::value(&max_steps)->value_name("N"), "stop after N more steps (checkpoint and export)")
      ("minutes", po::value(&minutes)->value_name("M"), "stop after M minutes (checkpoint and export)")
      ("quiet", po::bool_switch(&quiet), "no progress lines");
  add_calib_options(desc, calib_opts);
  add_output_options(desc, json, threads);
  po::variables_map vm;
  if (!parse(args, desc,
             "usage: qbench qat --out F.gguf [--model M] [--scheme SPEC] [--steps N] [--lr X] [--resume]\n\n"
             "Quantization-aware training (docs/schemes.md, \"QAT\"): quantizes the model with the scheme, then trains\n"
             "its weights, norms and the format's scales and zero points (LSQ) through the fake-quantized forward,\n"
             "distilling the FP model's next-token distribution. The token embedding stays as it is. Writes the\n"
             "same packed format as the PTQ scheme, so speed and memory are the PTQ row's; checkpoints let a run\n"
             "stop (Ctrl-C, --minutes) and continue with --resume bit-exactly for the same thread count.",
             vm)) {
    return 0;
  }
  if (out.empty()) throw Error("qat: --out F.gguf is required");
  if (steps <= 0 || batch_size <= 0 || seq_len < 0 || ckpt_every <= 0) {
    throw Error("qat: --steps, --batch and --checkpoint-every must be positive, --seq-len >= 0");
  }
  if (!(lr > 0) || !(scale_lr_ratio >= 0) || !(kd_weight >= 0) || !(ce_weight >= 0) || kd_weight + ce_weight <= 0) {
    throw Error("qat: --lr must be > 0, --scale-lr-ratio, --kd-weight and --ce-weight >= 0 with a positive sum");
  }
  set_threads(threads);
  if (ckpt.empty()) ckpt = strip_gguf(out) + ".ckpt";
  if (log_path.empty()) log_path = strip_gguf(out) + "-qat.csv";
  const std::string state_path = ckpt + ".qat";
  auto say = [&](const std::string& s) {
    if (!quiet) std::fprintf(stderr, "%s\n", s.c_str());
  };

  // The post-training start.
  const quant::Recipe recipe = quant::make_recipe(scheme_text);
  const std::string& method = recipe.scheme.method;
  if (recipe.ftype || (method != "rtn" && method != "gptq" && method != "awq")) {
    throw Error("qat: --scheme must be rtn, gptq or awq into a qbench integer format (e.g. rtn:int2,group=32), not '" +
                scheme_text + "'");
  }
  if (recipe.scheme.get("group") == "tensor") throw Error("qat: group=tensor is not supported; use channel or 32/64/128");
  const IntFormat format = quant::int_format_of_spec(recipe.scheme);
  const Model m = load_model(model_path);
  train::check_train_config(m.config);
  const auto t_start = std::chrono::steady_clock::now();
  quant::QuantizeReport rep;
  const std::optional<quant::Calibration> calib = make_calibration(m, calib_opts);
  const Model ptq = quant::quantize_model(m, recipe, &rep, calib ? &*calib : nullptr);
  say("quantized with " + recipe.scheme.to_string() + " in " + std::to_string(rep.seconds) + " s");

  train::TrainerConfig cfg;
  cfg.model = m.config;
  cfg.tied_output = m.tied_output;
  cfg.train_embedding = false;
  cfg.batch_size = batch_size;
  cfg.seq_len = seq_len > 0 ? seq_len : std::min<int64_t>(m.config.n_ctx_train, 128);
  cfg.lr = lr;
  cfg.min_lr_ratio = 0.1;
  cfg.warmup_steps = std::max<int64_t>(1, steps / 10);
  cfg.total_steps = steps;
  cfg.adamw.weight_decay = 0.0;
  cfg.seed = seed;
  train::Trainer tr(cfg);
  // Weights: RTN's forward is the same from the FP weights (kept as masters: they carry what
  // lies between the grid points); GPTQ's and AWQ's codes (and AWQ's folded norms) only from
  // their own dequantized output.
  train::import_params(tr.params(), method == "rtn" ? m : ptq, model_path);
  train::TrainParams teacher(m.config, m.tied_output);
  train::import_params(teacher, m, model_path);
  train::FakeQuantLinear fq(tr.params(), {format, scale_lr_ratio, cfg.adamw});
  const TensorType type = int_format_type(format);
  for (int s = 0; s < int(tr.params().tensors().size()); ++s) {
    if (!fq.quantized(s)) continue;
    const std::string& name = tr.params().tensor(s).name;
    const Matrix* w = find_matrix(ptq, name);
    if (w == nullptr || w->type != type) {
      throw Error("qat: " + name + " was not quantized to " + std::string(type_traits(type).name) +
                  " by the scheme (a fallback?); QAT needs every linear weight in the one format");
    }
    fq.set_from_packed(s, w->data);
    // Start where PTQ ends: the fake quantizer packs the same bytes.
    if (fq.pack(s, tr.params().data(s)) != std::vector<uint8_t>(w->data, w->data + w->bytes())) {
      throw Error("qat: internal error: the fake quantizer does not reproduce the PTQ bytes of " + name);
    }
  }
  tr.set_linear(&fq);

  double train_seconds = 0.0;
  const std::string meta_path = ckpt + ".json";
  if (resume && std::filesystem::exists(ckpt)) {
    tr.load_checkpoint(ckpt);
    load_qat_state(state_path, fq, tr.step());
    if (std::filesystem::exists(meta_path)) {
      train_seconds = nlohmann::json::parse(read_file(meta_path)).value("train_seconds", 0.0);
    }
    say("resumed from " + ckpt + " at step " + std::to_string(tr.step()));
  }

  std::optional<TrainingData> gen;
  std::optional<TextWindows> text;
  if (data_path.empty()) {
    gen.emplace(load_recipe(recipe_path), m.require_tokenizer(), say);
  } else {
    text.emplace(data_path, m.require_tokenizer());
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
    if (kd_weight > 0) teacher_model.forward(teacher, b, &b.teacher_logits);
    b.ce_weight = ce_weight;
    b.kd_weight = kd_weight;
  };

  const bool new_log = !resume || !std::filesystem::exists(log_path);
  std::ofstream logf(log_path, new_log ? std::ios::trunc : std::ios::app);
  if (!logf) throw Error(log_path + ": cannot open for writing");
  if (new_log) logf << "step,loss,lr,grad_norm,tokens_per_s,train_seconds\n";

  std::signal(SIGINT, on_qat_signal);
  std::signal(SIGTERM, on_qat_signal);
  const auto start = std::chrono::steady_clock::now();
  const double base_seconds = train_seconds;
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  auto save = [&] {
    tr.save_checkpoint(ckpt);
    save_qat_state(state_path, fq, tr.step());
    write_file_atomic(meta_path, nlohmann::json{{"step", tr.step()}, {"train_seconds", base_seconds + elapsed()},
                                                {"scheme", recipe.scheme.to_string()}}.dump(2));
  };
  const int64_t start_step = tr.step();
  double last_loss = 0;
  while (tr.step() < cfg.total_steps && !g_stop) {
    if (max_steps >= 0 && tr.step() - start_step >= max_steps) break;
    if (minutes > 0 && elapsed() > minutes * 60) break;
    int64_t chunk = std::min<int64_t>(10, cfg.total_steps - tr.step());
    if (max_steps >= 0) chunk = std::min(chunk, max_steps - (tr.step() - start_step));
    tr.train(source,
             {.on_step = [&](const train::StepStats& s) {
               last_loss = s.loss;
               char line[160];
               std::snprintf(line, sizeof line, "%lld,%.6f,%.6g,%.4f,%.0f,%.1f", (long long)s.step, s.loss, s.lr,
                             s.grad_norm, s.tokens_per_s, base_seconds + elapsed());
               logf << line << "\n";
               if (s.step % ckpt_every == 0) save();
             }},
             chunk);
    logf.flush();
    if (!quiet) {
      const double done = double(tr.step() - start_step), left = double(cfg.total_steps - tr.step());
      const double eta = done > 0 ? elapsed() / done * left : 0.0;
      std::fprintf(stderr, "step %lld/%lld loss %.4f  %.1f s, ETA %.0f s\n", (long long)tr.step(),
                   (long long)cfg.total_steps, last_loss, elapsed(), eta);
    }
  }
  save();
  logf.flush();

  // Export: the PTQ model with the trained packed weights and norms.
  Model q = ptq;
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
  gguf::Writer w = model_gguf_writer(q);
  w.set("general.file_type", gguf::Value::u32(quant::gguf_file_type(recipe, rep.all_ggml)));
  w.set("general.quantization_version", gguf::Value::u32(2));
  w.set("qbench.scheme", gguf::Value::str("qat:" + recipe.scheme.to_string()));
  w.write(out);
  // What was trained is what is served: the written tensors dequantize to the trained forward.
  {
    const Model back = load_model(out);
    std::vector<float> row;
    for (int s = 0; s < int(P.tensors().size()); ++s) {
      if (!fq.quantized(s)) continue;
      const train::ParamTensor& t = P.tensor(s);
      const float* y = fq.forward(s, P.data(s), t.rows, t.cols);
      const Matrix* bw = find_matrix(back, t.name);
      row.resize(size_t(t.cols));
      for (int64_t r = 0; r < t.rows; ++r) {
        matrix_row(*bw, r, row.data());
        if (std::memcmp(row.data(), y + r * t.cols, row.size() * sizeof(float)) != 0) {
          throw Error("qat: internal error: " + out + ": " + t.name + " does not dequantize to the trained weights");
        }
      }
    }
  }
  const bool finished = tr.step() >= cfg.total_steps;
  const double total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  say(std::string(finished ? "finished" : "stopped") + " at step " + std::to_string(tr.step()) + "; wrote " + out +
      " and checkpoint " + ckpt);
  if (json) {
    print_json({{"command", "qat"},
                {"model", model_path},
                {"scheme", "qat:" + recipe.scheme.to_string()},
                {"out", out},
                {"checkpoint", ckpt},
                {"step", tr.step()},
                {"total_steps", cfg.total_steps},
                {"finished", finished},
                {"loss", last_loss},
                {"train_tokens", tr.step() * cfg.batch_size * cfg.seq_len},
                {"train_seconds", base_seconds + elapsed()},
                {"ptq_seconds", rep.seconds},
                {"seconds", total_seconds},
                {"peak_rss_bytes", peak_rss_bytes()}});
  }
  return 0;
}

}  // namespace qbench::cli
