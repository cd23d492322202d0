// The `qat` scheme: quantization-aware training into one of qbench's integer formats
// (engine/train/fake_quant.h; the training itself runs in harness/qat.h). It is a whole-model
// method: quantize_model refuses it per tensor, and `qbench qat` / `qbench run` train it.
//
//   qat:int2,group=32,sym=true,init=rtn,steps=300,lr=0.0001,kd=1,ce=0,batch=16,seq=0,seed=1,scale_lr=1,target=int
//   qat:int4,group=32,target=q4_0   (ggml's Q4_0, so that llama.cpp serves the trained model)
//
// Every setting that changes the result is an option, so the canonical spec (and with it a
// results unit's key) names the whole training run but its data (harness/qat.h).
#pragma once

#include <cstdint>

#include "engine/formats/int_quants.h"
#include "quantizers/registry.h"
#include "quantizers/spec.h"

namespace qbench::quant {

struct QatSettings {
  SchemeSpec ptq;        // the start: rtn, gptq or awq into `format` (their other options default),
                         // or q4_0 for target=q4_0
  IntFormat format;      // for q4_0: {4, true, 32}
  bool q4_0 = false;     // ggml's Q4_0 instead of qbench's integer format (target=q4_0)
  int64_t steps = 300;
  double lr = 1e-4;           // peak learning rate of the weights
  double kd_weight = 1.0;     // KL(FP teacher || student)
  double ce_weight = 0.0;     // cross-entropy on the data
  int64_t batch = 16;         // sequences per step
  int64_t seq_len = 0;        // tokens per sequence; 0: the model's context, at most 128
  uint64_t seed = 1;          // data order
  double scale_lr_ratio = 1.0;
};

bool is_qat(const SchemeSpec& spec);
// The settings of a `qat` spec (asserts is_qat).
QatSettings qat_settings(const SchemeSpec& spec);
// The `qat` spec of settings (canonical when parsed).
SchemeSpec qat_spec(const QatSettings& s);

void register_qat(Registry& r);

}  // namespace qbench::quant
