// qbench tokenize: the token ids and pieces of a text, as llama.cpp's llama-tokenize prints them.
#include <iostream>

#include "datasets/text.h"
#include "engine/core/error.h"
#include "harness/cli.h"
#include "harness/commands.h"

namespace qbench::cli {

int cmd_tokenize(const std::vector<std::string>& args) {
  ModelOptions o;
  std::string prompt, file;
  bool no_bos = false, count_only = false;
  po::options_description desc("qbench tokenize options");
  desc.add_options()
      ("prompt,p", po::value(&prompt)->value_name("TEXT"), "text to tokenize")
      ("file,f", po::value(&file)->value_name("FILE"), "tokenize a UTF-8 text file instead")
      ("no-bos", po::bool_switch(&no_bos), "do not prepend BOS")
      ("count", po::bool_switch(&count_only), "print only the number of tokens");
  add_model_options(desc, o);
  po::variables_map vm;
  if (!parse(args, desc, "usage: qbench tokenize [--model FILE] (--prompt TEXT | --file FILE) [--json]", vm)) return 0;
  set_threads(o.threads);
  if (prompt.empty() == file.empty()) throw Error("give exactly one of --prompt and --file");
  const Model m = load_model_from(o);
  const Tokenizer& tok = m.require_tokenizer();
  const std::string text = file.empty() ? prompt : read_text_file(file);
  const std::vector<int32_t> ids = tok.encode(text, !no_bos);
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
