// qbench convert: write a model as a Hugging Face folder (the form Transformers, vLLM and the
// GPTQ/AWQ tool chains read). The other direction, a folder to GGUF, is `qbench quantize`.
#include <iostream>

#include "engine/core/error.h"
#include "engine/model/hf_writer.h"
#include "harness/cli.h"
#include "harness/commands.h"

namespace qbench::cli {

int cmd_convert(const std::vector<std::string>& args) {
  ModelOptions o;
  std::string out, dtype = "bf16";
  double shard_mb = 0;
  po::options_description desc("qbench convert options");
  desc.add_options()
      ("out,o", po::value(&out)->required()->value_name("DIR"), "the folder to write (new or empty)")
      ("dtype", po::value(&dtype)->default_value("bf16")->value_name("T"), "weight dtype: bf16, f16 or f32")
      ("max-shard-size", po::value(&shard_mb)->default_value(0)->value_name("MB"),
       "split the weights into shards of at most MB megabytes with model.safetensors.index.json (0: one file)");
  add_model_options(desc, o);
  po::variables_map vm;
  if (!parse(args, desc,
             "usage: qbench convert [--model PATH] --out DIR [--dtype bf16|f16|f32] [--max-shard-size MB]\n\n"
             "Writes the model as a Hugging Face folder: config.json, model.safetensors (or shards and their index),\n"
             "tokenizer.json and tokenizer_config.json (with the chat template). q/k rows are written in the\n"
             "checkpoint layout Transformers uses. Quantized weights are written dequantized. To go from a folder\n"
             "to GGUF, use qbench quantize --model DIR --scheme S --out FILE.gguf.",
             vm)) {
    return 0;
  }
  set_threads(o.threads);
  HfWriteOptions opt;
  if (dtype == "bf16") {
    opt.dtype = safetensors::DType::BF16;
  } else if (dtype == "f16") {
    opt.dtype = safetensors::DType::F16;
  } else if (dtype == "f32") {
    opt.dtype = safetensors::DType::F32;
  } else {
    throw Error("--dtype '" + dtype + "' is not one of bf16, f16, f32");
  }
  if (!(shard_mb >= 0) || shard_mb > 1e9) throw Error("--max-shard-size must be a size in MB >= 0");
  opt.max_shard_bytes = size_t(shard_mb * 1e6);
  const Model m = load_model_from(o);
  write_hf_folder(m, out, opt);
  if (o.json) {
    print_json({{"command", "convert"}, {"model", model_json(m)}, {"out", out}, {"dtype", dtype},
                {"max_shard_bytes", opt.max_shard_bytes}});
  } else {
    std::cout << "wrote " << out << " (" << dtype << ", " << m.n_params() << " parameters)\n";
  }
  return 0;
}

}  // namespace qbench::cli
