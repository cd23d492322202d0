// Quantizing a whole model: a recipe (default scheme, llama.cpp mix, per-tensor rules) decides a
// scheme for every 2-D weight, the registry's methods pack them, and the result is a Model
// variant whose matrices point at the packed bytes (held in Model::storage). Norms and biases
// stay F32; weights kept as they are share the source's bytes.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/model/model.h"
#include "quantizers/calibration.h"
#include "quantizers/llama_mix.h"
#include "quantizers/spec.h"

namespace qbench::quant {

struct TensorRule {
  std::string pattern;  // ECMAScript regex, searched in the tensor name (llama-quantize's --tensor-type)
  SchemeSpec spec;
};

struct Recipe {
  std::string name;                   // as given ("Q4_K_M", "rtn:int4,group=32")
  SchemeSpec scheme;                  // default scheme of quantized tensors
  std::optional<LlamaFtype> ftype;    // llama.cpp mix, for GGUF type names and presets
  bool pure = false;                  // ftype recipes: no mix, every tensor in the base type
  std::vector<TensorRule> rules;      // first match wins
  std::optional<SchemeSpec> output;       // --output-tensor-type
  std::optional<SchemeSpec> token_embd;   // --token-embedding-type
  // "+kv=TYPE[/TYPE_V]" at the end of the scheme text: the quantized model's KV cache types
  // (engine/model/model.h, KvCacheTypes); a run-time setting of the model, not part of any file.
  std::optional<KvCacheTypes> kv_cache;
};

// "Q4_K_M", "q4_0" (llama.cpp file types, with their mixes), any scheme spec ("rtn:int4,...",
// "nf4"), or a JSON object spec, optionally followed by "+kv=TYPE" or "+kv=TYPE_K/TYPE_V" (the KV
// cache in llama.cpp's -ctk / -ctv types: "q4_K+kv=q8_0", "f16+kv=q4_0"). Throws qbench::Error
// on an unknown or malformed scheme.
Recipe make_recipe(std::string_view text);
// "PATTERN=SCHEME" (e.g. "ffn_down=f16", "attn_v=rtn:int6"); throws on a bad regex or scheme.
TensorRule parse_rule(std::string_view text);
// The scheme that writes ggml type `t` (asserts that one exists).
SchemeSpec spec_for_type(TensorType t);
// GGUF general.file_type for a quantized file: the llama.cpp ftype for mixes and ggml casts,
// 1024 (LLAMA_FTYPE_GUESSED) when qbench's own formats are used.
uint32_t gguf_file_type(const Recipe& r, bool all_ggml);

struct TensorPlan {
  std::string name;
  const Matrix* source = nullptr;
  std::optional<SchemeSpec> spec;  // nullopt: kept as it is
  std::string reason;              // "default", "mix Q4_K_M", "--tensor-type ffn_down", ...
};
// One entry per 2-D weight in file order (token_embd, output unless tied, then the layers).
std::vector<TensorPlan> plan_model(const Model& m, const Recipe& r);

struct TensorReport {
  std::string name;
  std::string scheme;  // canonical spec, or "keep"
  std::string format;  // format name of the stored bytes
  int64_t rows = 0, cols = 0;
  size_t bytes = 0;
  double bits_per_weight = 0;
  double mse = 0;      // mean squared weight error
  double sqnr_db = 0;  // 10 log10(sum w^2 / sum err^2); +inf when exact
  double seconds = 0;
  std::string note;      // why this scheme ("default", "mix Q4_K_M", ...), and any fallback
  std::string fallback;  // a fallback taken (llama-quantize's type fallback, GPTQ's damping raised
                         // or plain RTN, dead inputs), or empty
};

struct QuantizeReport {
  std::vector<TensorReport> tensors;
  int64_t n_weights = 0;  // elements of all 2-D weights
  size_t bytes = 0;       // their stored bytes
  double bits_per_weight = 0;
  double seconds = 0;
  bool all_ggml = true;   // every tensor in a ggml type (llama.cpp can load the file)
  // Calibration (empty when none was used): what was run, and the seconds spent observing
  // (forward passes; included in `seconds`) and transforming (AWQ/SmoothQuant scale search).
  std::string calibration;
  std::string imatrix;          // source of the importance matrix used, or empty
  double calib_seconds = 0;
  double transform_seconds = 0;
  std::vector<std::string> notes;  // per-decision lines of calibration methods (AWQ's alphas, ...)
  // Every fallback taken, one line each ("blk.0.attn_output.weight: no scale (...); clip only",
  // "output.weight: q6_K -> q8_0 (64 columns)"): what makes the result other than the scheme
  // says. `qbench run` records them with the run and `report` flags runs that carry any.
  std::vector<std::string> fallbacks;
  nlohmann::json to_json() const;
};

// Thrown by quantize_model when its `cancel` flag was set (Ctrl-C): the work is abandoned at the
// next tensor or layer boundary instead of being finished and thrown away.
class Cancelled : public Error {
 public:
  Cancelled() : Error("quantization cancelled") {}
};

// Throws qbench::Error naming the tensor on NaN/Inf weights, shapes a scheme cannot take, etc.,
// and when a scheme needs calibration text that `calib` does not give.
// Calibration (quantizers/calibration.h): CalibUse::Optional methods get the imatrix row of each
// tensor (from calib->imatrix, else computed from calib->windows); Required methods run their
// PrepareFn on an F32 working copy with statistics of the FP model, then quantize;
// Sequential methods (GPTQ) quantize layer by layer, re-collecting layer l's statistics on the
// model whose layers < l are already quantized (output.weight last).
// True when some tensor of the plan uses a method that needs calibration text (gptq, awq).
bool recipe_needs_calibration(const Model& m, const Recipe& r);

// `cancel` (optional) is polled between tensors and between calibration passes; once set, throws
// Cancelled.
Model quantize_model(const Model& m, const Recipe& r, QuantizeReport* report = nullptr,
                     const Calibration* calib = nullptr, const std::atomic<bool>* cancel = nullptr);

// Error of `packed` (type `t`) against the F32 `w` (rows x cols): sums of squares.
struct ErrorStats {
  double sum_sq_err = 0, sum_sq = 0;
  int64_t n = 0;
  double mse() const { return n ? sum_sq_err / double(n) : 0.0; }
  double sqnr_db() const;
};
ErrorStats weight_error(const float* w, int64_t rows, int64_t cols, TensorType t, const uint8_t* packed);

}  // namespace qbench::quant
