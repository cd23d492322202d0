#include "harness/cli.h"

#include <csignal>

#include <tbb/global_control.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <thread>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/kernels/matmul.h"

namespace qbench::cli {

void add_model_options(po::options_description& desc, ModelOptions& o) {
  desc.add_options()
      ("model,m", po::value(&o.model)->value_name("PATH"),
       "a GGUF file, a Hugging Face folder (config.json, *.safetensors, tokenizer.json), or a llama2.c "
       "checkpoint (.bin) with --tokenizer (default: the built-in model)")
      ("tokenizer", po::value(&o.tokenizer)->value_name("FILE"),
       "llama2.c tokenizer.bin; for a GGUF it replaces the file's own vocabulary");
  add_output_options(desc, o.json, o.threads);
}

void add_output_options(po::options_description& desc, bool& json, int& threads) {
  desc.add_options()
      ("threads,t", po::value(&threads)->default_value(0)->value_name("N"),
       "worker threads (0: one per core); results do not depend on it")
      ("json", po::bool_switch(&json), "print exactly one JSON document on stdout (logs go to stderr)")
      ("help,h", "show this help");
}

bool parse(const std::vector<std::string>& args, const po::options_description& desc,
           const char* usage, po::variables_map& vm, const po::positional_options_description* positional) {
  try {
    auto parser = po::command_line_parser(args).options(desc);
    if (positional) parser.positional(*positional);
    po::store(parser.run(), vm);
    if (vm.count("help")) {
      std::cout << usage << "\n\n" << desc << "\n";
      return false;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw Error(std::string(e.what()) + " (see --help)");
  }
  return true;
}

namespace {
std::unique_ptr<tbb::global_control> g_thread_limit;
int g_threads = 0;
}  // namespace

void set_threads(int threads) {
  if (threads < 0) throw Error("--threads must be >= 0, got " + std::to_string(threads));
  g_threads = threads > 0 ? threads : int(std::max(1u, std::thread::hardware_concurrency()));
  g_thread_limit = std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism,
                                                         size_t(g_threads));
}

int thread_count() { return g_threads; }

std::string default_model_path() {
  if (const char* env = std::getenv("QBENCH_DEFAULT_MODEL"); env && *env) return env;
  return QBENCH_SOURCE_DIR "/models/default.gguf";
}

Model load_model_from(const ModelOptions& o) {
  std::string path = o.model;
  if (path.empty()) {
    path = default_model_path();
    if (!std::filesystem::exists(path)) {
      throw Error("no --model given and the built-in default model " + path +
                  " does not exist (train it with 'qbench train', or pass --model FILE)");
    }
  }
  return load_model(path, o.tokenizer);
}

std::string json_text(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

void print_json(const nlohmann::json& j) { std::cout << json_text(j, 2) << std::endl; }

nlohmann::json model_json(const Model& m) {
  const ModelConfig& c = m.config;
  return {
      {"path", m.path},
      {"format", m.format},
      {"architecture", c.arch},
      {"name", c.name},
      {"parameters", m.n_params()},
      {"weight_bytes", m.weight_bytes()},
      {"n_vocab", c.n_vocab},
      {"n_embd", c.n_embd},
      {"n_ff", c.n_ff},
      {"n_layer", c.n_layer},
      {"n_head", c.n_head},
      {"n_head_kv", c.n_head_kv},
      {"n_ctx_train", c.n_ctx_train},
      {"n_rot", c.n_rot},
      {"rope_freq_base", c.rope_freq_base},
      {"rope_type", c.rope_type == RopeType::Normal ? "normal" : "neox"},
      {"rms_eps", c.rms_eps},
      {"tied_output", m.tied_output},
  };
}

bool stderr_is_tty() { return ::isatty(STDERR_FILENO) == 1; }

void write_output(const std::string& path, const std::string& text) {
  if (path.empty()) {
    std::cout << text;
  } else {
    write_file_atomic(path, text);
  }
}

void add_activation_option(po::options_description& desc, std::string& mode) {
  desc.add_options()("activations", po::value(&mode)->value_name("kernel|float"),
                     "kernel (default): the packed formats' kernels, activations quantized to int8 per block for "
                     "integer formats (as llama.cpp; int4 runs as W4A8); float: dequantized weights, exact float "
                     "products (weight-only quantization alone)");
}

nlohmann::json apply_activations(Model& m, const std::string& mode, int64_t prefill_tokens) {
  if (mode == "float") {
    m.matmul.path = MatmulPath::Dequantize;
  } else if (mode == "kernel" || mode.empty()) {
    m.matmul.path = MatmulPath::Kernels;
  } else {
    throw Error("--activations: expected kernel or float, got '" + mode + "'");
  }
  nlohmann::json paths = nlohmann::json::array();
  for (const MatmulPathInfo& p : describe_matmul_paths(m, prefill_tokens)) {
    paths.push_back({{"weight_format", p.weight_format}, {"matrices", p.n_matrices},
                     {"decode", {{"path", p.decode_path}, {"activations", p.decode_activations}}},
                     {"prefill", {{"path", p.prefill_path}, {"activations", p.prefill_activations}}}});
  }
  return {{"activations", mode.empty() ? "kernel" : mode}, {"prefill_tokens", prefill_tokens}, {"paths", paths}};
}

void add_kv_cache_option(po::options_description& desc, std::string& types) {
  desc.add_options()("kv-cache", po::value(&types)->value_name("TYPE[/TYPE_V]"),
                     "KV cache storage, as llama.cpp's -ctk/-ctv: f32 (default), f16, bf16, q8_0, q4_0, q4_1, q5_0, "
                     "q5_1, iq4_nl; TYPE_K/TYPE_V for different key and value types. Keys and values are quantized "
                     "per head as they are appended and attention reads them as stored (quantized types need a head "
                     "size that is a multiple of 32). Quantized types are rotated as llama.cpp rotates them by default "
                     "(a Hadamard transform of Q/K and of V for head sizes that are multiples of 64); append ,rot=off "
                     "for none (llama.cpp's LLAMA_ATTN_ROT_DISABLE=1)");
}

std::string apply_kv_cache(Model& m, const std::string& types) {
  if (!types.empty()) {
    if (!m.kv_cache.is_f32()) {
      throw Error("--kv-cache " + types + " and the scheme's +kv=" + kv_cache_name(m.kv_cache) + ": give the KV cache once");
    }
    m.kv_cache = parse_kv_cache(types);
  }
  return kv_cache_name(m.kv_cache);
}

std::string activations_summary(const nlohmann::json& matmul) {
  std::string out = "activations (" + matmul.value("activations", std::string("kernel")) + "):";
  bool first = true;
  for (const auto& p : matmul["paths"]) {
    out += first ? " " : "; ";
    first = false;
    out += p["decode"]["activations"].get<std::string>() + " for " + p["weight_format"].get<std::string>() + " (x" +
           std::to_string(p["matrices"].get<int64_t>()) + ", " + p["decode"]["path"].get<std::string>();
    if (p["prefill"]["path"] != p["decode"]["path"]) {
      out += "; prefill " + p["prefill"]["path"].get<std::string>() + ", " + p["prefill"]["activations"].get<std::string>();
    }
    out += ")";
  }
  return out;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

std::string strip_extension(const std::string& path, const std::string& ext) {
  return path.size() > ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0
             ? path.substr(0, path.size() - ext.size())
             : path;
}

namespace {
std::atomic<bool> g_signal_stop{false};
extern "C" void on_stop_signal(int) { g_signal_stop = true; }
}  // namespace

const std::atomic<bool>& stop_on_signals() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  return g_signal_stop;
}

}  // namespace qbench::cli
