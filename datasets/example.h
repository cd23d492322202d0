// One evaluation or training item, shared by the project-written generators and the loaders of
// standard formats. The same struct serves three task kinds; which fields are set says which:
//
//  generation / exact match (add2 ... logic, dialogue, instruct, GSM8K, SVAMP, MATH-500):
//    context  the prompt text exactly as the model sees it (no chat template is added later for
//             generated items; loaders of chat prompt sets store the raw user turn, see below)
//    target   the reference continuation the model should write, starting with its separator
//             (usually " ") and, for generated items, ending with "\n". Used as training text and
//             for target log-likelihood.
//    answer   the canonical answer string compared by exact match after extraction from the
//             model's output (e.g. "432" for "Q: 347+85=? A:", whose target is " 2340\n").
//
//  multiple choice (reply_select, ARC, HellaSwag, PIQA, Winogrande):
//    choices  the candidate continuations of `context`, each with its leading separator
//             (" Paris"); scored by summed log-likelihood (acc) or per-byte (acc_norm)
//    gold     index into `choices` of the right one
//    answer   the right choice's text without the leading separator
//    Winogrande is the one exception ("partial scoring", meta["scoring"] == "partial"): there the
//    choices are alternative *contexts* and `target` is the continuation shared by all of them;
//    see choices_are_contexts().
//
//  language modelling (story, LAMBADA):
//    context  "" for story text (the whole text is in `target`), the passage minus its last word
//             for LAMBADA; target the text to score (" word" for LAMBADA); answer the last word.
//
//  chat prompt sets (MT-Bench, Vicuna, IFEval): context is the raw first user turn, with no chat
//  template; meta["turns"] holds every user turn. The task wraps them in the model's template.
//
// meta: free-form extras, e.g. the instruction id and kwargs of an instruct/IFEval item
// ({"instruction_id": ..., "kwargs": {...}} for generated items, {"instruction_id_list": [...],
// "kwargs": [...]} for IFEval), intents, MATH subject/level.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace qbench {

struct Example {
  std::string id;       // unique within its task: "<task>-<seed>-<index>" or the dataset's own id
  std::string task;     // generator or loader name ("add3", "arc_challenge", ...)
  std::string context;
  std::string target;
  std::vector<std::string> choices;
  int gold = -1;        // -1 when not multiple choice
  std::string answer;
  nlohmann::json meta = nlohmann::json::object();

  bool is_multiple_choice() const { return !choices.empty(); }
  friend bool operator==(const Example&, const Example&) = default;
};

// True for partial-scoring items (Winogrande): choices are contexts, target the shared ending.
inline bool choices_are_contexts(const Example& e) {
  return e.meta.is_object() && e.meta.value("scoring", std::string()) == "partial";
}

// The chat template of qbench's built-in chat suite and default model:
// "User: <text>\nBot:" — the bot's reply follows as " <reply>\n". The generated chat items are
// written in it (their training text); chat tasks write their meta "user" turn in the model's own
// template instead (tasks/chat_template.h, whose `qbench` template renders exactly this).
inline std::string chat_context(const std::string& user_turn) {
  return "User: " + user_turn + "\nBot:";
}

}  // namespace qbench
