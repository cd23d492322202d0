#include "tasks/chat_template.h"

#include <array>

#include "engine/core/error.h"

namespace qbench {
namespace {

// Python's str.strip() / Jinja's trim on ASCII white space (the templates' `| trim`, `.strip()`).
std::string strip(std::string_view s) {
  constexpr std::string_view ws = " \t\n\r\f\v";
  const size_t a = s.find_first_not_of(ws);
  if (a == std::string_view::npos) return {};
  return std::string(s.substr(a, s.find_last_not_of(ws) - a + 1));
}

[[noreturn]] void refuse(const char* tmpl, const std::string& why) {
  throw Error(std::string("chat template ") + tmpl + ": " + why);
}

// The templates of Llama 2, Mistral and Gemma raise_exception unless user and assistant turns
// alternate, starting with the user (after an optional leading system turn).
void require_alternation(const char* tmpl, std::span<const ChatMessage> turns) {
  for (size_t i = 0; i < turns.size(); ++i) {
    const std::string& role = turns[i].role;
    if (role != "user" && role != "assistant") {
      refuse(tmpl, "role '" + role + "' is not supported (user and assistant, after an optional first system turn)");
    }
    if ((role == "user") != (i % 2 == 0)) {
      refuse(tmpl, "conversation roles must alternate user/assistant/user/assistant/...");
    }
  }
}

// A leading system turn, split off.
struct SystemSplit {
  const std::string* system = nullptr;
  std::span<const ChatMessage> turns;
};
SystemSplit split_system(std::span<const ChatMessage> m) {
  if (!m.empty() && m[0].role == "system") return {&m[0].content, m.subspan(1)};
  return {nullptr, m};
}

// qbench's default model: "User: <text>\nBot:" and the reply as " <reply>\n" (chat_context() in
// datasets/example.h, the format of its training data). It never saw a system turn; one is
// written as a "System: " line.
std::string render_qbench(std::span<const ChatMessage> messages, bool add_generation_prompt) {
  std::string out;
  for (const auto& m : messages) {
    if (m.role == "user") {
      out += "User: " + m.content + "\n";
    } else if (m.role == "assistant") {
      out += "Bot: " + m.content + "\n";
    } else if (m.role == "system") {
      out += "System: " + m.content + "\n";
    } else {
      refuse("qbench", "role '" + m.role + "' is not supported (system, user, assistant)");
    }
  }
  if (add_generation_prompt) out += "Bot:";
  return out;
}

// Meta Llama 3 Instruct: a header per turn, content trimmed, <|eot_id|> after each.
std::string render_llama3(std::span<const ChatMessage> messages, bool add_generation_prompt) {
  std::string out;
  for (const auto& m : messages) {
    out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + strip(m.content) + "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// ChatML (Qwen, SmolLM, OpenHermes, ...): content as given.
std::string render_chatml(std::span<const ChatMessage> messages, bool add_generation_prompt) {
  std::string out;
  for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// Meta Llama 2 Chat, as its tokenizer_config.json template: "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n
// {user} [/INST] {assistant} </s><s>[INST] ...", turns stripped. The prompt after a user turn
// already ends where the assistant writes, so add_generation_prompt adds nothing.
std::string render_llama2(std::span<const ChatMessage> messages, bool) {
  const SystemSplit s = split_system(messages);
  require_alternation("llama2", s.turns);
  std::string out;
  for (size_t i = 0; i < s.turns.size(); ++i) {
    std::string content = s.turns[i].content;
    if (i == 0 && s.system) content = "<<SYS>>\n" + *s.system + "\n<</SYS>>\n\n" + content;
    if (s.turns[i].role == "user") {
      out += i > 0 ? "<s>[INST] " : "[INST] ";
      out += strip(content);
      out += " [/INST]";
    } else {
      out += ' ';
      out += strip(content);
      out += " </s>";
    }
  }
  return out;
}

// Mistral 7B Instruct v0.2 / Mixtral 8x7B Instruct v0.1: "[INST] {user} [/INST]{assistant}</s>",
// content as given. The template has no system role (it raises); qbench puts a system turn
// before the first user turn's text, separated by a blank line (where Mistral's later v1
// template puts it).
std::string render_mistral(std::span<const ChatMessage> messages, bool) {
  const SystemSplit s = split_system(messages);
  require_alternation("mistral", s.turns);
  std::string out;
  for (size_t i = 0; i < s.turns.size(); ++i) {
    const ChatMessage& m = s.turns[i];
    if (m.role == "user") {
      out += "[INST] " + (i == 0 && s.system ? *s.system + "\n\n" : std::string()) + m.content + " [/INST]";
    } else {
      out += m.content + "</s>";
    }
  }
  return out;
}

// HuggingFaceH4 Zephyr 7B beta (also TinyLlama Chat): "<|role|>\n{content}</s>\n" per turn, its
// eos_token being </s>.
std::string render_zephyr(std::span<const ChatMessage> messages, bool add_generation_prompt) {
  std::string out;
  for (const auto& m : messages) {
    if (m.role != "user" && m.role != "assistant" && m.role != "system") {
      refuse("zephyr", "role '" + m.role + "' is not supported (system, user, assistant)");
    }
    out += "<|" + m.role + "|>\n" + m.content + "</s>\n";
  }
  if (add_generation_prompt && !messages.empty()) out += "<|assistant|>\n";
  return out;
}

// Google Gemma (1, 2; 3 for text): "<start_of_turn>user\n{content}<end_of_turn>\n", the
// assistant's role named "model", content trimmed. Gemma 1 and 2 refuse a system turn; qbench
// puts it before the first user turn's text with a blank line, as Gemma 3's template does.
std::string render_gemma(std::span<const ChatMessage> messages, bool add_generation_prompt) {
  const SystemSplit s = split_system(messages);
  require_alternation("gemma", s.turns);
  std::string out;
  for (size_t i = 0; i < s.turns.size(); ++i) {
    const ChatMessage& m = s.turns[i];
    const bool user = m.role == "user";
    out += std::string("<start_of_turn>") + (user ? "user" : "model") + "\n";
    if (i == 0 && s.system) out += *s.system + "\n\n";
    out += strip(m.content) + "<end_of_turn>\n";
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

constexpr std::array<ChatTemplate, size_t(ChatTemplateId::Count)> kTemplates = {{
    {ChatTemplateId::Qbench, "qbench", "qbench's default model: User: / Bot:", render_qbench},
    {ChatTemplateId::Llama3, "llama3", "Llama 3 Instruct headers, <|eot_id|>", render_llama3},
    {ChatTemplateId::ChatML, "chatml", "ChatML <|im_start|> (Qwen, SmolLM, ...)", render_chatml},
    {ChatTemplateId::Llama2, "llama2", "Llama 2 Chat [INST] with <<SYS>>", render_llama2},
    {ChatTemplateId::Mistral, "mistral", "Mistral Instruct v0.2, Mixtral [INST]", render_mistral},
    {ChatTemplateId::Zephyr, "zephyr", "Zephyr, TinyLlama Chat <|user|> </s>", render_zephyr},
    {ChatTemplateId::Gemma, "gemma", "Gemma <start_of_turn>user/model", render_gemma},
}};

constexpr bool ids_in_order() {
  for (size_t i = 0; i < kTemplates.size(); ++i) {
    if (size_t(kTemplates[i].id) != i) return false;
  }
  return true;
}
static_assert(ids_in_order(), "kTemplates lists every ChatTemplateId once, in id order");

}  // namespace

std::span<const ChatTemplate> chat_templates() { return kTemplates; }

const ChatTemplate& chat_template(ChatTemplateId id) {
  QB_ASSERT(size_t(id) < kTemplates.size());
  return kTemplates[size_t(id)];
}

const ChatTemplate* find_chat_template(std::string_view name) {
  for (const auto& t : kTemplates) {
    if (name == t.name) return &t;
  }
  return nullptr;
}

std::string chat_template_names() {
  std::string out;
  for (const auto& t : kTemplates) out += (out.empty() ? "" : ", ") + std::string(t.name);
  return out;
}

std::optional<ChatTemplateId> detect_chat_template(std::string_view text) {
  if (const ChatTemplate* t = find_chat_template(strip(text))) return t->id;
  const auto has = [&](std::string_view marker) { return text.find(marker) != std::string_view::npos; };
  if (has("<|im_start|>")) {
    // Phi-4 (<|im_sep|>) and SmolVLM (<end_of_utterance>) use ChatML's marker for other formats.
    if (has("<|im_sep|>") || has("<end_of_utterance>")) return std::nullopt;
    return ChatTemplateId::ChatML;
  }
  if (has("<|start_header_id|>") && has("<|end_header_id|>")) return ChatTemplateId::Llama3;
  if (has("[INST]")) {
    // Mistral's v7 ([SYSTEM_PROMPT]), v3 ([AVAILABLE_TOOLS]) and v1 (" [INST] " with a space
    // before it) formats differ from v0.2's in their spaces and system placement.
    if (has("[SYSTEM_PROMPT]") || has("[AVAILABLE_TOOLS]") || has("' [INST]") || has("\" [INST]")) {
      return std::nullopt;
    }
    if (has("<<SYS>>")) {
      // Llama 2's own template puts BOS before every [INST]; variants without it render otherwise.
      return has("bos_token + '[INST]") ? std::optional(ChatTemplateId::Llama2) : std::nullopt;
    }
    return ChatTemplateId::Mistral;
  }
  if (has("<start_of_turn>")) return ChatTemplateId::Gemma;
  if (has("<|user|>") && has("<|assistant|>")) {
    // Zephyr ends turns with eos_token; Phi-3 (<|end|>), StableLM (<|endoftext|>) and GLM do not.
    if (has("<|end|>") || has("<|endoftext|>") || !has("eos_token")) return std::nullopt;
    return ChatTemplateId::Zephyr;
  }
  return std::nullopt;
}

const char* chat_template_source_name(ChatTemplateSource s) {
  switch (s) {
    case ChatTemplateSource::Named: return "named";
    case ChatTemplateSource::Detected: return "detected";
    case ChatTemplateSource::Default: return "default";
  }
  return "?";
}

std::string ChatTemplateChoice::describe() const {
  QB_ASSERT(tmpl != nullptr);
  switch (source) {
    case ChatTemplateSource::Named: return std::string(tmpl->name) + " (chosen by name)";
    case ChatTemplateSource::Detected: return std::string(tmpl->name) + " (recognised in the model's chat template)";
    case ChatTemplateSource::Default: return std::string(tmpl->name) + " (the model has no chat template)";
  }
  return tmpl->name;
}

ChatTemplateChoice choose_chat_template(const Model& model, const std::string& name) {
  if (!name.empty()) {
    const ChatTemplate* t = find_chat_template(name);
    if (t == nullptr) {
      throw Error("--chat-template: unknown chat template '" + name + "' (known: " + chat_template_names() + ")");
    }
    return {t, ChatTemplateSource::Named};
  }
  if (!model.chat_template.empty()) {
    if (const auto id = detect_chat_template(model.chat_template)) return {&chat_template(*id), ChatTemplateSource::Detected};
    // One line: the start of the template with its line breaks escaped.
    std::string head;
    for (char ch : model.chat_template.substr(0, 60)) head += ch == '\n' ? std::string("\\n") : std::string(1, ch);
    throw Error(model.path + ": the model's chat template is not one qbench recognises ('" + head +
                (model.chat_template.size() > 60 ? "...'" : "'") + "); pass --chat-template NAME (one of: " +
                chat_template_names() + ")");
  }
  return {&chat_template(ChatTemplateId::Qbench), ChatTemplateSource::Default};
}

std::string render_user_turn(const ChatTemplate& t, const std::string& user_turn) {
  const ChatMessage m{"user", user_turn};
  return t.render(std::span<const ChatMessage>(&m, 1), true);
}

}  // namespace qbench
