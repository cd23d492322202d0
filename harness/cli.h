// Shared pieces of the qbench command line: the command table, common options, model loading,
// output helpers. Each command lives in its own cmd_*.cc and is listed in commands().
#pragma once

#include <atomic>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/model/model.h"

namespace qbench::cli {

namespace po = boost::program_options;

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const std::vector<std::string>& args);  // args after the command name
};
const std::vector<Command>& commands();

// Options every model-taking command shares.
struct ModelOptions {
  std::string model;
  std::string tokenizer;
  int threads = 0;
  bool json = false;
};
void add_model_options(po::options_description& desc, ModelOptions& o);
void add_output_options(po::options_description& desc, bool& json, int& threads);

// Parses `args` against `desc`; returns false after printing help when --help was given.
// Throws qbench::Error for unknown or malformed options.
bool parse(const std::vector<std::string>& args, const po::options_description& desc,
           const char* usage, po::variables_map& vm,
           const po::positional_options_description* positional = nullptr);

// Limits TBB to `threads` worker threads (0: all cores) for the lifetime of the process.
void set_threads(int threads);
int thread_count();

// The model given with --model, or the built-in default model.
Model load_model_from(const ModelOptions& o);
std::string default_model_path();

// Serialises JSON; text that is not valid UTF-8 (a model's raw byte tokens) is written with
// U+FFFD replacement characters instead of failing.
std::string json_text(const nlohmann::json& j, int indent = -1);
// Prints exactly one JSON document on stdout.
void print_json(const nlohmann::json& j);
// Model description used in every JSON result.
nlohmann::json model_json(const Model& m);
// True when stderr is a terminal (progress lines are shown only then).
bool stderr_is_tty();

// --activations kernel|float: how the quantized model's matrix products are computed. kernel (the
// default): the packed formats' kernels, as llama.cpp computes them, with activations quantized
// to int8 per block for the integer formats (so int4 weights run as W4A8); float: weights
// dequantized to FP32 and exact float products, to measure weight quantization alone.
void add_activation_option(po::options_description& desc, std::string& mode);
// Sets m's matmul path for `mode` (throws qbench::Error on another value) and returns what its
// products compute: {"activations": mode, "prefill_tokens", "paths": [{"weight_format",
// "matrices", "decode": {"path", "activations"}, "prefill": {...}}]} (engine/kernels/matmul.h).
nlohmann::json apply_activations(Model& m, const std::string& mode, int64_t prefill_tokens);
// --kv-cache TYPE or TYPE_K/TYPE_V: the KV cache's storage types (llama.cpp's -ctk / -ctv; default
// f32, or what the scheme's "+kv=" suffix set), set on m by apply_kv_cache (throws qbench::Error
// naming the allowed types otherwise, or when the scheme set one too). Returns the name recorded
// in JSON results ("f32", "q8_0", "q8_0/q4_0").
void add_kv_cache_option(po::options_description& desc, std::string& types);
std::string apply_kv_cache(Model& m, const std::string& types);
// One line for humans: "activations: int8 per 32 values (q8_0) for q4_0 (x29, avx512); f32 for f32 (x1)".
std::string activations_summary(const nlohmann::json& matmul);

// `text` to stdout when `path` is empty, else to the file `path` atomically (temporary + rename).
void write_output(const std::string& path, const std::string& text);

// `s` with every occurrence of `from` replaced by `to` (left to right, not rescanning replacements).
std::string replace_all(std::string s, const std::string& from, const std::string& to);
// `path` without the extension `ext` (e.g. ".gguf") when it ends with it.
std::string strip_extension(const std::string& path, const std::string& ext);
// A flag SIGINT and SIGTERM set (for the resumable trainers: stop at the next step, save, export).
const std::atomic<bool>& stop_on_signals();

}  // namespace qbench::cli
