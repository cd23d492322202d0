// qbench info: what a model file holds.
#include <iostream>

#include "engine/core/error.h"
#include "harness/cli.h"
#include "harness/commands.h"
#include "tasks/chat_template.h"

namespace qbench::cli {

int cmd_info(const std::vector<std::string>& args) {
  ModelOptions o;
  po::options_description desc("qbench info options");
  add_model_options(desc, o);
  po::variables_map vm;
  if (!parse(args, desc, "usage: qbench info [--model FILE] [--json]\n\nShows a model's architecture, sizes and weight types.", vm)) return 0;
  set_threads(o.threads);
  const Model m = load_model_from(o);
  nlohmann::json tensors = nlohmann::json::array();
  tensors.push_back({{"name", "token_embd.weight"}, {"type", m.tok_embd.traits().name},
                     {"shape", {m.tok_embd.cols, m.tok_embd.rows}}, {"bytes", m.tok_embd.bytes()}});
  for (const auto& [name, w] : m.linear_weights()) {
    tensors.push_back({{"name", name}, {"type", w->traits().name}, {"shape", {w->cols, w->rows}},
                       {"bytes", w->bytes()}});
  }
  nlohmann::json j = model_json(m);
  j["tensors"] = tensors;
  if (!m.tokenizer.empty()) {
    const Tokenizer& t = m.tokenizer;
    j["tokenizer"] = {{"model", t.kind() == TokenizerKind::Spm ? "llama (SentencePiece-style)" : "gpt2 (byte-level BPE)"},
                      {"pre", t.pre_tokenizer()}, {"tokens", t.n_tokens()}, {"bos", t.bos()},
                      {"eos", t.eos()}, {"add_bos", t.add_bos()}, {"add_eos", t.add_eos()}};
  }
  const auto detected = detect_chat_template(m.chat_template);
  const std::string chat = m.chat_template.empty() ? "none"
                           : detected            ? std::string(chat_template(*detected).name)
                                                 : "unrecognised (pass --chat-template NAME to eval/run)";
  j["chat_template"] = {{"chars", m.chat_template.size()}, {"recognised_as", detected ? nlohmann::json(chat) : nullptr}};
  j["rope_freqs"] = m.rope_freqs;
  if (o.json) {
    print_json(j);
    return 0;
  }
  const ModelConfig& c = m.config;
  std::cout << m.path << " (" << m.format << ")\n"
            << "  architecture   " << c.arch << (c.name.empty() ? "" : "  name " + c.name) << "\n"
            << "  parameters     " << m.n_params() << "  (" << m.weight_bytes() << " bytes of weights)\n"
            << "  layers         " << c.n_layer << ", n_embd " << c.n_embd << ", n_ff " << c.n_ff << "\n"
            << "  heads          " << c.n_head << " (KV " << c.n_head_kv << "), head size " << c.head_dim()
            << ", rope " << (c.rope_type == RopeType::Normal ? "normal" : "neox") << " dim " << c.n_rot
            << " base " << c.rope_freq_base << "\n"
            << "  vocabulary     " << c.n_vocab << (m.tokenizer.empty() ? " (no tokenizer loaded)" : "") << "\n"
            << "  context        " << c.n_ctx_train << "\n"
            << "  output         " << (m.tied_output ? "tied to the token embedding" : "separate") << "\n";
  if (c.rope_freq_scale != 1.0f) std::cout << "  rope scaling   linear, factor " << 1.0f / c.rope_freq_scale << "\n";
  if (!m.rope_freqs.empty()) std::cout << "  rope factors   " << m.rope_freqs.size() << " (rope_freqs: Llama 3.1 scaling)\n";
  if (!m.tokenizer.empty()) {
    const auto& t = j["tokenizer"];
    std::cout << "  tokenizer      " << t["model"].get<std::string>()
              << (m.tokenizer.pre_tokenizer().empty() ? "" : ", pre-tokenizer " + m.tokenizer.pre_tokenizer()) << ", "
              << m.tokenizer.n_tokens() << " tokens, BOS " << m.tokenizer.bos() << (m.tokenizer.add_bos() ? " (added)" : "")
              << ", EOS " << m.tokenizer.eos() << "\n";
  }
  std::cout << "  chat template  " << chat
            << (m.chat_template.empty() ? "" : " (" + std::to_string(m.chat_template.size()) + " characters)") << "\n";
  for (const auto& t : tensors) {
    std::cout << "    " << t["name"].get<std::string>() << "  " << t["type"].get<std::string>() << "  ["
              << t["shape"][0] << ", " << t["shape"][1] << "]\n";
  }
  return 0;
}

}  // namespace qbench::cli
