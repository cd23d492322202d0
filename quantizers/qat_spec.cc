#include "quantizers/qat_spec.h"

#include <cstdio>
#include <string>

#include "engine/core/error.h"
#include "quantizers/int_rules.h"

namespace qbench::quant {
namespace {

PackedTensor quantize_qat(const WeightView& w, const SchemeSpec&) {
  throw Error(std::string(w.name) +
              ": scheme 'qat' trains the whole model: run it with qbench qat or list it in qbench run");
}

std::string number(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", x);
  return buf;
}

}  // namespace

bool is_qat(const SchemeSpec& spec) { return spec.method == "qat"; }

QatSettings qat_settings(const SchemeSpec& spec) {
  QB_ASSERT(is_qat(spec));
  QatSettings s;
  if (spec.get("target") == "q4_0") {
    if (spec.get("bits") != "4" || spec.get("group") != "32" || spec.get("sym") != "true" || spec.get("init") != "rtn") {
      throw Error("scheme 'qat': target=q4_0 is ggml's 4-bit blocks of 32 from its own rounding: give int4,group=32 "
                  "(symmetric, init=rtn), e.g. qat:int4,group=32,target=q4_0");
    }
    s.ptq = parse_scheme("q4_0");
    s.format = IntFormat{4, true, 32};
    s.q4_0 = true;
  } else {
    s.ptq = parse_scheme(spec.get("init") + ":int" + spec.get("bits") + ",group=" + spec.get("group") +
                         ",sym=" + spec.get("sym"));
    s.format = int_format_of_spec(s.ptq);
  }
  s.steps = spec.get_int("steps");
  s.lr = spec.get_double("lr");
  s.kd_weight = spec.get_double("kd");
  s.ce_weight = spec.get_double("ce");
  if (s.kd_weight + s.ce_weight <= 0.0) throw Error("scheme 'qat': kd and ce cannot both be 0");
  s.batch = spec.get_int("batch");
  s.seq_len = spec.get_int("seq");
  s.seed = uint64_t(spec.get_int("seed"));
  s.scale_lr_ratio = spec.get_double("scale_lr");
  return s;
}

SchemeSpec qat_spec(const QatSettings& s) {
  return parse_scheme("qat:int" + std::to_string(s.format.bits) + ",group=" +
                      (s.format.per_row() ? std::string("channel") : std::to_string(s.format.group)) +
                      ",sym=" + (s.format.sym ? "true" : "false") + ",init=" + (s.q4_0 ? "rtn" : s.ptq.method) +
                      ",steps=" + std::to_string(s.steps) + ",lr=" + number(s.lr) + ",kd=" + number(s.kd_weight) +
                      ",ce=" + number(s.ce_weight) + ",batch=" + std::to_string(s.batch) +
                      ",seq=" + std::to_string(s.seq_len) + ",seed=" + std::to_string(s.seed) +
                      ",scale_lr=" + number(s.scale_lr_ratio) + ",target=" + (s.q4_0 ? "q4_0" : "int"));
}

void register_qat(Registry& r) {
  Method qat{
      "qat",
      "quantization-aware training (LSQ scales, STE, distillation from the FP model) into rtn's integer formats "
      "or ggml's q4_0, "
      "starting from rtn/gptq/awq; whole-model: qbench qat or qbench run",
      {
          {"bits", "4", "bits per code", {}, 2, 8},
          {"group", "128", "values per scale along the row: 32, 64, 128, channel (one per output row)",
           {"32", "64", "128", "channel"}},
          {"sym", "true", "symmetric codes, or a uint8 zero point (learned too)", {"true", "false"}},
          {"init", "rtn", "the post-training start (gptq and awq need calibration text)", {"rtn", "gptq", "awq"}},
          {"steps", "300", "optimizer steps", {}, 1, 1000000},
          {"lr", "0.0001", "peak learning rate of the weights (10% warm-up, cosine to 10%)", {}, 0, 1, true},
          {"kd", "1", "weight of KL(FP teacher || student)", {}, 0, 100, true},
          {"ce", "0", "weight of cross-entropy on the data", {}, 0, 100, true},
          {"batch", "16", "sequences per step", {}, 1, 4096},
          {"seq", "0", "tokens per sequence (0: the model's context, at most 128)", {}, 0, 1000000},
          {"seed", "1", "data order seed", {}, 0, 2147483647},
          {"scale_lr", "1", "learning rate of the scales and zero points, as a ratio of lr", {}, 0, 1000, true},
          {"target", "int", "the packed format: qbench's integer format of bits/group/sym, or ggml's q4_0 "
           "(with int4,group=32: llama.cpp serves it)", {"int", "q4_0"}},
      },
      "bits",
      "int",
      quantize_qat,
      std::nullopt,
  };
  qat.whole_model = true;
  r.add(std::move(qat));
}

}  // namespace qbench::quant
