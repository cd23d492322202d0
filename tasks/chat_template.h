// Chat templates: how a conversation of {role, content} messages becomes the text a chat model
// was trained on. One table of named templates (the formats of the common model families and
// qbench's own), each a renderer written in C++; recognition of a model's Jinja template text
// (GGUF tokenizer.chat_template, tokenizer_config.json chat_template) by the markers of its
// family, in the spirit of llama.cpp's llm_chat_detect_template; and the choice of the template
// for a model (a name the user gives, else the model's own, else qbench's).
//
// BOS: no renderer writes the leading BOS. The tokenizer adds it when the vocabulary asks
// (Tokenizer::encode with add_special), so a template's own leading `bos_token` would make it
// twice; llama.cpp's built-in renderers drop it for the same reason. A BOS *inside* the
// conversation (Llama 2's "</s><s>[INST]" between turns) is written as text, and the rendered
// text is tokenized with special tokens parsed (SpecialText::Parse), so it becomes the token.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/model/model.h"

namespace qbench {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (llama3 and chatml take any role name)
  std::string content;
  friend bool operator==(const ChatMessage&, const ChatMessage&) = default;
};

// The named templates. Append-only: names appear in results files.
enum class ChatTemplateId : uint8_t { Qbench, Llama3, ChatML, Llama2, Mistral, Zephyr, Gemma, Count };

struct ChatTemplate {
  ChatTemplateId id;
  const char* name;         // --chat-template NAME, and the name recorded in results
  const char* description;  // a few words for --help: whose format it is
  // Renders `messages`; with `add_generation_prompt`, ends with the opening of an assistant turn.
  // Throws qbench::Error for a conversation the model's own template refuses (a role it does not
  // know; user and assistant turns that do not alternate).
  std::string (*render)(std::span<const ChatMessage> messages, bool add_generation_prompt);
};

// Every named template, in id order.
std::span<const ChatTemplate> chat_templates();
const ChatTemplate& chat_template(ChatTemplateId id);
// By name (exact, lower case); nullptr when there is none.
const ChatTemplate* find_chat_template(std::string_view name);
// "qbench, llama3, chatml, ..." for messages.
std::string chat_template_names();

// The named template a Jinja template text is, or nothing when it is not recognised. A text that
// is just a name ("chatml") is that template. Families are told by their markers (Llama 3
// headers, ChatML's <|im_start|>, [INST] with and without <<SYS>>, <|user|>, <start_of_turn>);
// look-alikes qbench does not render exactly (Phi-3's <|end|>, Phi-4's <|im_sep|>, Mistral's
// later [SYSTEM_PROMPT]/[AVAILABLE_TOOLS]/" [INST]" formats, ...) are not recognised, so they
// are an error instead of a silently different prompt.
std::optional<ChatTemplateId> detect_chat_template(std::string_view jinja_text);

// Where the template of an evaluation came from.
enum class ChatTemplateSource : uint8_t {
  Named,     // --chat-template NAME or the experiment's chat_template field
  Detected,  // recognised in the model's own chat template text
  Default,   // the model has no chat template: qbench's own format (below)
};
const char* chat_template_source_name(ChatTemplateSource s);  // "named", "detected", "default"

struct ChatTemplateChoice {
  const ChatTemplate* tmpl = nullptr;
  ChatTemplateSource source = ChatTemplateSource::Default;
  std::string describe() const;  // "llama3 (detected in the model's chat template)"
};

// The template for `model`: `name` when not empty (an unknown name is an Error listing the
// names); else the model's chat template text, recognised by detect_chat_template (an
// unrecognised text is an Error that says to pass --chat-template NAME and lists the names);
// else, for a model without a chat template (qbench's own models, base models, llama2.c
// checkpoints), qbench's format: such a model has no chat format of its own, and qbench's is
// the one its default model was trained on.
ChatTemplateChoice choose_chat_template(const Model& model, const std::string& name);

// One user turn with the assistant's turn opened: the prompt of a chat task item.
std::string render_user_turn(const ChatTemplate& t, const std::string& user_turn);

}  // namespace qbench
