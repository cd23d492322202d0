// Experiment configs of `qbench run` (experiments/*.json). Every field is declared once in
// QBENCH_EXPERIMENT_FIELDS (type, name, default, help — STYLE.md convention 6); that list
// generates the struct, JSON reading (unknown fields and wrong types are errors naming the file
// and field), JSON writing and the `qbench run --list-fields` listing. Configs carry a version.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace qbench::run {

using StringList = std::vector<std::string>;

inline constexpr int kConfigVersion = 1;

// clang-format off
#define QBENCH_EXPERIMENT_FIELDS(X)                                                                          \
  X(std::string, name, "default", "experiment name; the default output is results/runs/NAME.json")           \
  X(std::string, description,                                                                                 \
    "the built-in model x fp16, int8, int4 (group 128, RTN and GPTQ), q4_K, nf4 x perplexity, KL, math_reasoning, chat; " \
    "speed on random weights of the llama-160m shape packed by each scheme; 50 items per task, 40 perplexity chunks " \
    "of 128 tokens and 3 speed repetitions of 64 + 16 tokens keep it to about 2 minutes on 2 cores",           \
    "what the experiment measures and why its limits are what they are")                                      \
  X(std::string, model, "", "model file (GGUF, or llama2.c .bin with tokenizer; may start with $QBENCH_SHARED/); empty: the built-in default model") \
  X(std::string, tokenizer, "", "llama2.c tokenizer.bin for a .bin model")                                    \
  X(StringList, schemes, (StringList{"fp16", "int8", "rtn:int4,group=128", "gptq:int4,group=128", "q4_K", "nf4"}),                   \
    "quantization schemes (qbench schemes), one run each, in this order")                                     \
  X(std::string, baseline, "", "scheme the relative table divides by (empty: the first scheme)")             \
  X(std::string, activations, "kernel",                                                                       \
    "kernel: the packed formats' kernels (integer formats quantize activations to int8 per block, as llama.cpp; " \
    "the run records each path's activation precision); float: weights dequantized, exact float products "  \
    "(weight-only quantization measured alone)")                                                              \
  X(StringList, suites, (StringList{"math_reasoning", "chat"}), "task suites (qbench tasks)")                \
  X(std::string, chat_template, "",                                                                           \
    "chat template of the chat tasks by name (qbench eval --help lists them); empty: the model's own, recognised " \
    "in its chat template text (an unrecognised one is an error), or qbench's for a model without one")      \
  X(int64_t, limit, 50, "items per task (0: all); 50 keeps the default experiment to about 2 minutes on 2 cores") \
  X(int64_t, ctx, 0, "context window of the task suites in tokens (0: the model's)")                         \
  X(int64_t, threads, 2, "worker threads of the quality work (0: one per core)")                             \
  X(int64_t, seed, 1000, "seed of the generated task items and held-out text (1000: the evaluation seed)")   \
  X(bool, perplexity, true, "measure perplexity (llama.cpp protocol) on ppl_text")                           \
  X(std::string, ppl_text, "generated:story,dialogue",                                                        \
    "perplexity text: a file path, or generated:GEN,GEN... (evaluation-seed items joined with newlines)")     \
  X(int64_t, ppl_items, 300, "items per generator of a generated: text")                                     \
  X(int64_t, ppl_ctx, 128, "perplexity chunk size in tokens (llama.cpp's -c)")                               \
  X(int64_t, ppl_chunks, 40, "perplexity chunks scored (-1: all)")                                            \
  X(std::string, calib_text, "generated:story,dialogue,add3,sub3,word",                                        \
    "calibration text of calibration-based schemes (gptq, awq, smoothquant): a file path, or generated:GEN,... (items of the training seed 2000, "  \
    "disjoint from the evaluation items)")                                                                    \
  X(int64_t, calib_items, 200, "items per generator of a generated: calibration text")                       \
  X(int64_t, calib_samples, 128, "calibration windows drawn from calib_text")                                \
  X(int64_t, calib_ctx, 128, "tokens per calibration window")                                                \
  X(std::string, qat_text, "",                                                                                \
    "training text of qat:... schemes: a file path, or generated:GEN,... (items of the training seed 2000); "  \
    "empty: the default recipe's generators at its training seed (models/default.json)")                     \
  X(int64_t, qat_items, 2000, "items per generator of a generated: qat_text")                                \
  X(bool, kl, true, "KL divergence of each scheme against the unquantized model on the perplexity chunks")  \
  X(int64_t, kl_top_k, 64, "reference log-probabilities kept per position (the rest is one tail bin)")       \
  X(bool, speed, true, "measure prefill and decode speed, alone, after the quality work")                    \
  X(int64_t, speed_prefill, 64, "prefill tokens per measurement (64, 16 and 3 repetitions keep the default's speed "  \
    "units at the llama-160m shape to a few seconds per scheme)")                                               \
  X(int64_t, speed_decode, 16, "decode tokens per measurement (one at a time, after the prefill)")            \
  X(int64_t, speed_reps, 3, "measured repetitions (median and spread are reported)")                          \
  X(int64_t, speed_warmup, 1, "unmeasured warm-up repetitions")                                               \
  X(int64_t, speed_threads, 2, "threads of the speed measurement (0: one per core)")                        \
  X(std::string, speed_shape, "llama-160m",                                                                    \
    "measure speed on random weights of this published shape (as qbench bench --shape: tinyllama-1.1b, llama-160m, ...) " \
    "quantized by each scheme, instead of on the model; schemes that need calibration text are measured as the "      \
    "scheme writing the same packed format without it (gptq, awq: rtn; smoothquant: w8a8); empty: the model itself. " \
    "The default, llama-160m (162M parameters, untied head; a decoded token reads 263 MiB of fp16 or 68 MiB of " \
    "int4 weights), is beyond the L3 cache as real models are, unlike the built-in model's 6 MB")                \
  X(int64_t, speed_bandwidth_mib, 512,                                                                          \
    "buffer of the memory read-bandwidth probe run once before the speed units, so that decode is also given as " \
    "GB/s of weights read and its share of the bandwidth; 0: no probe")
// clang-format on

struct ExperimentConfig {
  int version = kConfigVersion;
#define QBENCH_DECLARE_FIELD(type, name, def, help) type name = def;
  QBENCH_EXPERIMENT_FIELDS(QBENCH_DECLARE_FIELD)
#undef QBENCH_DECLARE_FIELD

  nlohmann::json to_json() const;
};

// One declared field, for listings (name, JSON default, help).
struct FieldInfo {
  std::string name;
  nlohmann::json default_value;
  std::string help;
};
std::vector<FieldInfo> experiment_fields();

// Parses a config; `where` names the file in errors. Missing fields keep their defaults;
// unknown fields, wrong types, an unsupported version and out-of-range values throw
// qbench::Error ("<where>: field 'limit': expected an integer, got \"x\"").
ExperimentConfig parse_config(const nlohmann::json& j, const std::string& where);
// Reads and parses the file (duplicate keys and unparsable numbers such as 1e400 are errors
// naming the file).
ExperimentConfig load_config(const std::string& path);
// JSON text of the file `path`, refusing a key given twice in one object (nlohmann would keep
// the last one); every error is a qbench::Error naming `path`.
nlohmann::json parse_json_strict(const std::string& text, const std::string& path);
// The canonical spelling of a scheme: every option written out ("rtn:int4,group=128,sym=true,
// clip=none"), or llama-quantize's name of a file type with its mix ("q4_K" -> "Q4_K_M").
// Throws qbench::Error on an unknown or malformed scheme.
std::string scheme_canonical(const std::string& scheme);
// Path fields (model, tokenizer, ppl_text) may start with "$QBENCH_SHARED/" (the shared models
// and datasets folder); other relative paths are relative to the working directory. Throws
// qbench::Error naming the field when the variable is needed but not set.
std::string expand_path(const std::string& value, const std::string& field);
// Range checks (also run by parse_config).
void validate_config(const ExperimentConfig& c, const std::string& where);

}  // namespace qbench::run
