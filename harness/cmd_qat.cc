// qbench qat: quantization-aware training of a model into one of qbench's integer formats or
// ggml's Q4_0, starting from a post-training quantization (RTN, GPTQ or AWQ; Q4_0's) and distilled
// from the FP model
// (harness/qat.h).
#include <atomic>
#include <csignal>
#include <cstdio>

#include "engine/core/error.h"
#include "engine/model/model_writer.h"
#include "harness/calib_options.h"
#include "harness/cli.h"
#include "harness/commands.h"
#include "harness/qat.h"
#include "harness/sysinfo.h"
#include "quantizers/int_rules.h"

namespace qbench::cli {

int cmd_qat(const std::vector<std::string>& args) {
  std::string model_path = QBENCH_SOURCE_DIR "/models/default.gguf", scheme_text = "rtn:int2,group=32", out;
  quant::QatSettings st;
  QatRunOptions o;
  bool quiet = false, json = false;
  int threads = 0;
  CalibOptions calib_opts;
  po::options_description desc("qbench qat options");
  desc.add_options()
      ("model,m", po::value(&model_path)->value_name("PATH"), "FP model to quantize and teach from (default: models/default.gguf)")
      ("scheme,s", po::value(&scheme_text)->value_name("SPEC"),
       "the post-training start and target format: rtn, gptq or awq into a qbench integer format, e.g. "
       "rtn:int2,group=32 (the default) or gptq:int3,group=32 (needs --calib); q4_0 (ggml's, so llama.cpp serves "
       "the result); or a whole qat:... spec "
       "(qbench schemes), which then also gives the training settings below")
      ("out,o", po::value(&out)->value_name("F.gguf"), "the trained model, packed like the PTQ start (required)")
      ("steps", po::value(&st.steps)->value_name("N"), "optimizer steps (default 300)")
      ("lr", po::value(&st.lr)->value_name("X"), "peak learning rate of the weights (default 1e-4; 10% warm-up, cosine to 10%)")
      ("scale-lr-ratio", po::value(&st.scale_lr_ratio)->value_name("X"), "scales' and zero points' learning rate / lr (default 1)")
      ("batch", po::value(&st.batch)->value_name("N"), "sequences per step (default 16)")
      ("seq-len", po::value(&st.seq_len)->value_name("T"), "tokens per sequence (default: the model's context, at most 128)")
      ("kd-weight", po::value(&st.kd_weight)->value_name("X"), "weight of KL(FP teacher || student) (default 1)")
      ("ce-weight", po::value(&st.ce_weight)->value_name("X"), "weight of cross-entropy on the data (default 0)")
      ("seed", po::value(&st.seed)->value_name("S"), "data order seed (default 1)")
      ("data", po::value(&o.data_path)->value_name("FILE"),
       "train on windows of this text (default: the recipe's generators at its training seed, never evaluation items)")
      ("recipe", po::value(&o.recipe_path)->value_name("FILE"), "recipe whose data section makes the default data (models/default.json)")
      ("checkpoint", po::value(&o.checkpoint)->value_name("FILE"), "checkpoint (default <out>.ckpt; scales in <checkpoint>.qat)")
      ("checkpoint-every", po::value(&o.checkpoint_every)->value_name("N"), "steps between checkpoints (default 100)")
      ("log", po::value(&o.log_path)->value_name("FILE"), "loss log, CSV (default <out>-qat.csv); appended on --resume")
      ("resume", po::bool_switch(&o.resume), "continue from the checkpoint if it exists")
      ("max-steps", po::value(&o.max_steps)->value_name("N"), "stop after N more steps (checkpoint and export)")
      ("minutes", po::value(&o.minutes)->value_name("M"), "stop after M minutes (checkpoint and export)")
      ("quiet", po::bool_switch(&quiet), "no progress lines");
  add_calib_options(desc, calib_opts);
  add_output_options(desc, json, threads);
  po::variables_map vm;
  if (!parse(args, desc,
             "usage: qbench qat --out F.gguf [--model M] [--scheme SPEC] [--steps N] [--lr X] [--resume]\n\n"
             "Quantization-aware training (docs/schemes.md, \"QAT\"): quantizes the model with the scheme, then trains\n"
             "its weights, norms and the format's scales and zero points (LSQ) through the fake-quantized forward,\n"
             "distilling the FP model's next-token distribution. The token embedding stays as the PTQ stores it.\n"
             "Writes the same packed format as the PTQ start (for q4_0 every tensor in Q4_0, as the scheme q4_0:\n"
             "and llama-quantize --pure), so speed and memory are the PTQ row's; checkpoints let a run\n"
             "stop (Ctrl-C, --minutes) and continue with --resume bit-exactly for the same thread count.",
             vm)) {
    return 0;
  }
  if (out.empty()) throw Error("qat: --out F.gguf is required");
  const quant::SchemeSpec given = quant::parse_scheme(scheme_text);
  if (quant::is_qat(given)) {
    for (const char* flag : {"steps", "lr", "scale-lr-ratio", "batch", "seq-len", "kd-weight", "ce-weight", "seed"}) {
      if (vm.count(flag)) throw Error(std::string("qat: --") + flag + " given with a qat:... scheme that sets it too");
    }
    st = quant::qat_settings(given);
  } else {
    const std::string& method = given.method;
    if (method == "q4_0") {
      st.ptq = given;
      st.format = IntFormat{4, true, 32};
      st.q4_0 = true;
    } else {
      if (method != "rtn" && method != "gptq" && method != "awq") {
        throw Error("qat: --scheme must be rtn, gptq or awq into a qbench integer format (e.g. rtn:int2,group=32), "
                    "or q4_0, not '" + scheme_text + "'");
      }
      if (given.get("group") == "tensor") throw Error("qat: group=tensor is not supported; use channel or 32/64/128");
      st.ptq = given;
      st.format = quant::int_format_of_spec(given);
    }
    if (st.steps <= 0 || st.batch <= 0 || st.seq_len < 0) {
      throw Error("qat: --steps and --batch must be positive, --seq-len >= 0");
    }
    if (!(st.lr > 0) || !(st.scale_lr_ratio >= 0) || !(st.kd_weight >= 0) || !(st.ce_weight >= 0) ||
        st.kd_weight + st.ce_weight <= 0) {
      throw Error("qat: --lr must be > 0, --scale-lr-ratio, --kd-weight and --ce-weight >= 0 with a positive sum");
    }
  }
  if (o.checkpoint_every <= 0) throw Error("qat: --checkpoint-every must be positive");
  const quant::SchemeSpec spec = quant::qat_spec(st);  // canonical, and checks the ranges
  set_threads(threads);
  if (o.checkpoint.empty()) o.checkpoint = strip_extension(out, ".gguf") + ".ckpt";
  if (o.log_path.empty()) o.log_path = strip_extension(out, ".gguf") + "-qat.csv";
  if (!quiet) o.say = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
  o.stop = &stop_on_signals();

  const Model m = load_model(model_path);
  const std::optional<quant::Calibration> calib = make_calibration(m, calib_opts);
  const QatOutcome r = run_qat(m, st, o, calib ? &*calib : nullptr);
  gguf::Writer w = model_gguf_writer(r.model);
  w.set("general.file_type", gguf::Value::u32(quant::gguf_file_type(quant::make_recipe(st.ptq.to_string()), r.ptq.all_ggml)));
  w.set("general.quantization_version", gguf::Value::u32(2));
  w.set("qbench.scheme", gguf::Value::str(spec.to_string()));
  w.write(out);
  if (o.say) {
    o.say(std::string(r.finished ? "finished" : "stopped") + " at step " + std::to_string(r.step) + "; wrote " + out +
          " and checkpoint " + o.checkpoint);
  }
  if (json) {
    print_json({{"command", "qat"},
                {"model", model_path},
                {"scheme", spec.to_string()},
                {"out", out},
                {"checkpoint", o.checkpoint},
                {"step", r.step},
                {"total_steps", r.total_steps},
                {"finished", r.finished},
                {"loss", r.loss},
                {"train_tokens", r.train_tokens},
                {"train_seconds", r.train_seconds},
                {"ptq_seconds", r.ptq.seconds},
                {"peak_rss_bytes", peak_rss_bytes()}});
  }
  return 0;
}

}  // namespace qbench::cli
