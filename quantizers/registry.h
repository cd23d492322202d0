// The name-keyed registry of quantization methods (STYLE.md, convention 4): filled once by
// register_builtins() (quantizers/registry.cc, under std::call_once); duplicate names are an error.
//
// A method is an algorithm that turns one F32 weight matrix into packed bytes of some format in
// engine/formats (the format owns layout and dequantization; the method chooses scales and
// rounding). Aliases are short names that expand to a spec ("int8" -> "rtn:int8,group=channel").
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/formats/types.h"
#include "engine/model/model.h"
#include "quantizers/spec.h"

namespace qbench::quant {

// A row-major F32 matrix: `rows` output features of `cols` input features.
struct WeightView {
  std::string_view name;  // tensor name, for error messages
  int64_t rows = 0, cols = 0;
  const float* data = nullptr;
};

struct PackedTensor {
  TensorType type = TensorType::F32;
  std::vector<uint8_t> bytes;  // rows * row_bytes(type, cols)
  std::string note;            // e.g. a llama-quantize fallback: "q6_K -> q8_0 (64 columns ...)"
};

// Quantizes a checked matrix (finite values; shape already validated against nothing else).
// Throws qbench::Error naming the tensor when the method cannot handle its shape or range.
using QuantizeFn = PackedTensor (*)(const WeightView& w, const SchemeSpec& spec);

// Calibration-based methods (quantizers/calibration.h; observe first, then convert).
struct InputStats;
struct CalibStats;
struct CalibContext {
  const InputStats* stats = nullptr;               // statistics of the weight's input, or nullptr
  const std::vector<float>* importance = nullptr;  // imatrix row (mean x^2 per input column), or nullptr
};
enum class CalibUse {
  None,        // never uses calibration
  Optional,    // uses an importance matrix when one is given (--imatrix or --calib), plain otherwise
  Required,    // needs calibration text (--calib); quantize_calib gets the input statistics
  Sequential,  // Required, and layer l's statistics are re-collected with layers < l already
               // quantized (GPTQ's sequential setting)
};
using QuantizeCalibFn = PackedTensor (*)(const WeightView& w, const SchemeSpec& spec, const CalibContext& ctx);
// A model-level FP transform run before any tensor is quantized (AWQ's and SmoothQuant's scale
// folding): `m` has owned F32 linears and norms that the transform may rewrite in place (via
// mutable_f32). `spec_of(tensor name)` is the scheme the recipe gives that tensor (nullptr: kept);
// the transform optimises for the tensors of its own method. Appends one line per decision to
// `notes.decisions` ("blk.0.attn_q.weight: alpha 0.5") and one per fallback — a site left
// unscaled or quantized without calibration — to `notes.fallbacks`; fallbacks reach the results.
struct PrepareNotes {
  std::vector<std::string> decisions;
  std::vector<std::string> fallbacks;
};
using SpecLookup = std::function<const SchemeSpec*(const std::string& tensor_name)>;
using PrepareFn = void (*)(Model& m, const SpecLookup& spec_of, const CalibStats& stats, PrepareNotes& notes);
struct Method {
  std::string name;
  std::string summary;  // one line
  std::vector<OptionDecl> options;
  std::string positional;         // option set by the token after ':' (e.g. "bits")
  std::string positional_prefix;  // stripped from that token (e.g. "int" in "rtn:int4")
  QuantizeFn quantize = nullptr;
  std::optional<TensorType> ggml_type;  // the ggml type it always writes (GGUF block types, casts)
  CalibUse calib = CalibUse::None;
  QuantizeCalibFn quantize_calib = nullptr;  // used instead of `quantize` when calibration is available
  PrepareFn prepare = nullptr;               // model transform before quantization (Required only)
  // Optional methods: whether this spec uses an importance matrix at all (nullptr: always). RTN
  // uses it only for clip=mse; without one, --calib does not pay for collecting statistics.
  bool (*uses_importance)(const SchemeSpec& spec) = nullptr;
  // A method of the whole model, not of one tensor (qat: trained by qbench qat / qbench run;
  // keep: the file as stored, resolved by plan_model): `quantize` is never called on a tensor.
  bool whole_model = false;
  // Required or Sequential: quantization cannot run without calibration text.
  bool needs_calibration_text() const { return calib == CalibUse::Required || calib == CalibUse::Sequential; }
  bool wants_importance(const SchemeSpec& spec) const {
    return calib == CalibUse::Optional && (uses_importance == nullptr || uses_importance(spec));
  }
};

struct Alias {
  std::string name;
  std::string expansion;  // a spec string
  std::string summary;
};

class Registry {
 public:
  void add(Method m);     // throws qbench::Error on a duplicate name (methods and aliases share names)
  void add(Alias a);
  // Case-insensitive look-ups; nullptr when unknown.
  const Method* find(std::string_view name) const;
  const Alias* find_alias(std::string_view name) const;
  const Method& method(const SchemeSpec& spec) const;  // asserts
  const std::vector<Method>& methods() const { return methods_; }
  const std::vector<Alias>& aliases() const { return aliases_; }

 private:
  bool taken(std::string_view name) const;
  std::vector<Method> methods_;
  std::vector<Alias> aliases_;
};

// The built-in registry, filled on first use under std::call_once by register_builtins().
const Registry& registry();
void register_builtins(Registry& r);

// Checks the input (every value finite: qbench::Error naming the tensor, row and column otherwise)
// and runs the spec's method.
PackedTensor quantize_tensor(const WeightView& w, const SchemeSpec& spec);

// Throws qbench::Error naming the tensor, row and column of the first NaN/Inf weight.
void check_weights_finite(const WeightView& w);

// Shared by the methods: throws qbench::Error naming the tensor when a value exceeds `limit` in
// magnitude (what the target format can scale), and when `cols` is not a multiple of `multiple`.
void check_range(const WeightView& w, float limit, std::string_view format);
void check_row_multiple(const WeightView& w, int64_t multiple, std::string_view what);

// Methods of each file, called by register_builtins().
void register_rtn(Registry& r);
void register_gguf_types(Registry& r);
void register_codebooks(Registry& r);
void register_gptq(Registry& r);
void register_awq(Registry& r);
void register_smoothquant(Registry& r);  // w8a8, smoothquant
void register_hqq(Registry& r);          // quantizers/hqq.cc
void register_qat(Registry& r);          // quantizers/qat_spec.cc

}  // namespace qbench::quant
