// qbench tokenize: the token ids and pieces of a text, as llama.cpp's llama-tokenize prints them.
#include <cstring>
#include <filesystem>
#include <iostream>

#include "datasets/text.h"
#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "harness/cli.h"
#include "harness/commands.h"

namespace qbench::cli {
namespace {

// A GGUF by name or by magic (a missing or unreadable file is left to the loader's error).
bool is_gguf_path(const std::string& path) {
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".gguf") == 0) return true;
  try {
    const MappedFile map(path);
    return map.size() >= 4 && std::memcmp(map.data(), "GGUF", 4) == 0;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

int cmd_tokenize(const std::vector<std::string>& args) {
  ModelOptions o;
  std::string prompt, file;
  bool no_bos = false, count_only = false, parse_special = false;
  po::options_description desc("qbench tokenize options");
  desc.add_options()
      ("prompt,p", po::value(&prompt)->value_name("TEXT"), "text to tokenize")
      ("file,f", po::value(&file)->value_name("FILE"), "tokenize a UTF-8 text file instead")
      ("no-bos", po::bool_switch(&no_bos), "do not add BOS (nor EOS)")
      ("parse-special", po::bool_switch(&parse_special),
       "read control tokens written in the text (\"<|begin_of_text|>\") as those tokens, as llama-tokenize does "
       "by default; without it they are plain text (user-defined tokens are always recognised)")
      ("count", po::bool_switch(&count_only), "print only the number of tokens");
  add_model_options(desc, o);
  po::variables_map vm;
  if (!parse(args, desc, "usage: qbench tokenize [--model FILE | --tokenizer FILE] (--prompt TEXT | --file FILE) [--no-bos] [--json]\n"
             "  --model: a GGUF (a vocab-only file is enough: only its metadata is read), a Hugging Face folder\n"
             "    (only its tokenizer.json and tokenizer_config.json are read) or a llama2.c checkpoint;\n"
             "  --tokenizer alone: a Hugging Face tokenizer.json (byte-level BPE), a GGUF or a llama2.c tokenizer.bin", vm)) return 0;
  set_threads(o.threads);
  if (prompt.empty() == file.empty()) throw Error("give exactly one of --prompt and --file");
  // Only the tokenizer is needed: a GGUF's metadata or the --tokenizer file, never the weights.
  Tokenizer tok;
  const std::string model_path = o.model.empty() && o.tokenizer.empty() ? default_model_path() : o.model;
  if (!o.tokenizer.empty()) {
    tok = Tokenizer::from_file(o.tokenizer);
  } else if (is_gguf_path(model_path)) {
    tok = Tokenizer::from_file(model_path);
  } else if (std::filesystem::is_directory(model_path)) {  // a Hugging Face folder: its tokenizer.json
    tok = Tokenizer::from_file((std::filesystem::path(model_path) / "tokenizer.json").string());
  } else {
    tok = load_model_from(o).require_tokenizer();
  }
  const std::string text = file.empty() ? prompt : read_text_file(file);
  const std::vector<int32_t> ids = tok.encode(text, !no_bos, parse_special);
  if (o.json) {
    nlohmann::json pieces = nlohmann::json::array();
    if (!count_only) {
      for (int32_t id : ids) pieces.push_back(tok.piece(id));
    }
    nlohmann::json j = {{"n_tokens", ids.size()}};
    if (!count_only) {
      j["ids"] = ids;
      j["pieces"] = pieces;
    }
    print_json(j);
    return 0;
  }
  if (count_only) {
    std::cout << ids.size() << "\n";
    return 0;
  }
  for (int32_t id : ids) std::cout << id << " -> '" << tok.piece(id) << "'\n";
  return 0;
}

}  // namespace qbench::cli
