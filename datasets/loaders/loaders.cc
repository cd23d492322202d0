#include "datasets/loaders/loaders.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "datasets/loaders/records.h"
#include "engine/core/error.h"

namespace qbench {

using loaders::Record;

namespace {

std::string numbered_id(const std::string& task, size_t index) { return task + "-" + std::to_string(index); }

// "Question: {q}\nAnswer:", the lm-evaluation-harness prompt of GSM8K, ARC and PIQA.
std::string question_answer(const std::string& q) { return "Question: " + q + "\nAnswer:"; }

bool is_plain_number(const std::string& s) {
  size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  const size_t digits_start = i;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == digits_start) return false;
  if (i < s.size() && s[i] == '.') {
    ++i;
    const size_t frac = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i == frac) return false;
  }
  return i == s.size();
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  const size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

// Integral values print as integers ("51"), others with up to 15 significant digits ("2.5").
std::string format_number(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15) {
    return std::to_string(static_cast<int64_t>(v));
  }
  std::ostringstream os;
  os.precision(15);
  os << v;
  return os.str();
}

std::vector<Example> chat_prompts(const std::string& path, const std::string& task) {
  std::vector<Example> out;
  loaders::for_each_jsonl(path, [&](const Record& r) {
    Example e;
    e.task = task;
    e.id = task + "-" + std::to_string(r.integer("question_id"));
    const auto turns = r.strings("turns");
    if (turns.empty()) r.fail("field \"turns\" is empty");
    e.context = turns[0];
    e.meta = {{"category", r.str("category")}, {"turns", turns}};
    if (r.has("reference")) e.meta["reference"] = r.field("reference");
    out.push_back(std::move(e));
  });
  return out;
}

}  // namespace

std::vector<Example> load_gsm8k(const std::string& path) {
  std::vector<Example> out;
  loaders::for_each_jsonl(path, [&](const Record& r) {
    Example e;
    e.task = "gsm8k";
    e.id = numbered_id("gsm8k", out.size());
    e.context = question_answer(r.str("question"));
    const std::string solution = r.str("answer");
    const size_t pos = solution.rfind("#### ");
    if (pos == std::string::npos) r.fail("field \"answer\" has no \"#### \" final answer");
    std::string number;
    for (char c : trim(solution.substr(pos + 5))) {
      if (c != ',') number += c;
    }
    if (!is_plain_number(number)) r.fail("final answer after \"#### \" is not a number: \"" + number + "\"");
    e.target = " " + solution;
    e.answer = number;
    out.push_back(std::move(e));
  });
  return out;
}

std::vector<Example> load_svamp(const std::string& path) {
  std::vector<Example> out;
  loaders::for_each_json_array(path, [&](const Record& r) {
    Example e;
    e.task = "svamp";
    e.id = r.str("ID");
    const std::string body = trim(r.str("Body")), question = trim(r.str("Question"));
    e.context = question_answer(body + " " + question);
    const double answer = r.number("Answer");
    e.answer = format_number(answer);
    e.target = " " + e.answer;
    e.meta = {{"equation", r.has("Equation") ? r.field("Equation") : nlohmann::json()},
              {"type", r.has("Type") ? r.field("Type") : nlohmann::json()}};
    out.push_back(std::move(e));
  });
  return out;
}

std::vector<Example> load_math500(const std::string& path) {
  std::vector<Example> out;
  loaders::for_each_jsonl(path, [&](const Record& r) {
    Example e;
    e.task = "math500";
    e.id = r.has("unique_id") ? r.str("unique_id") : numbered_id("math500", out.size());
    e.context = "Problem: " + r.str("problem") + "\nAnswer:";
    e.target = " " + r.str("solution");
    e.answer = r.str("answer");
    e.meta = {{"subject", r.has("subject") ? r.field("subject") : nlohmann::json()},
              {"level", r.has("level") ? r.field("level") : nlohmann::json()}};
    out.push_back(std::move(e));
  });
  return out;
}

std::vector<Example> load_arc(const std::string& path, const std::string& task) {
  std::vector<Example> out;
  loaders::for_each_jsonl(path, [&](const Record& r) {
    Example e;
    e.task = task;
    e.id = r.str("id");
    e.context = question_answer(r.str("question"));
    const auto& choices = r.field("choices");
    if (!choices.is_object()) r.fail("field \"choices\" must be an object {text, label}");
    const Record c(path, r.line(), choices);
    const auto texts = c.strings("text"), labels = c.strings("label");
    if (texts.size() != labels.size()) {
      r.fail("choices have " + std::to_string(texts.size()) + " texts but " + std::to_string(labels.size()) + " labels");
    }
    if (texts.size() < 2) r.fail("fewer than 2 choices");
    const std::string key = r.str("answerKey");
    for (size_t i = 0; i < labels.size(); ++i) {
      if (labels[i] == key) e.gold = static_cast<int>(i);
    }
    if (e.gold < 0) r.fail("answerKey \"" + key + "\" is not one of the choice labels");
    for (const auto& t : texts) e.choices.push_back(" " + t);
    e.answer = texts[static_cast<size_t>(e.gold)];
    e.meta = {{"labels", labels}};
    out.push_back(std::move(e));
  });
  return out;
}

std::vector<Example> load_hellaswag(const std::string& path) {
  const std::string text = loaders::read_dataset_file(path);
  const auto lines = loaders::split_lines(text);
  constexpr size_t kLinesPerItem = 6;
  if (lines.size() % kLinesPerItem != 0) {
    const size_t start = lines.size() - lines.size() % kLinesPerItem;
    throw Error(path + ":" + std::to_string(start + 1) + ": incomplete item: " +
                std::to_string(lines.size() - start) + " lines left, an item has 6 (context, label, 4 endings)");
  }
  std::vector<Example> out;
  for (size_t start = 0; start < lines.size(); start += kLinesPerItem) {
    const auto where = [&](size_t k) { return path + ":" + std::to_string(start + k + 1) + ": "; };
    Example e;
    e.task = "hellaswag";
    e.id = numbered_id("hellaswag", out.size());
    e.context = std::string(lines[start]);
    if (trim(e.context).empty()) throw Error(where(0) + "empty context line");
    const std::string label(lines[start + 1]);
    if (label.size() != 1 || label[0] < '0' || label[0] > '3') {
      throw Error(where(1) + "label must be 0, 1, 2 or 3, got \"" + label + "\"");
    }
    e.gold = label[0] - '0';
    for (size_t k = 2; k < kLinesPerItem; ++k) {
      std::string choice = " ";
      choice.append(lines[start + k]);
      e.choices.push_back(std::move(choice));
    }
    e.answer = std::string(lines[start + 2 + static_cast<size_t>(e.gold)]);
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<Example> load_piqa(const std::string& path) {
  std::vector<Example> out;
  loaders::for_each_jsonl(path, [&](const Record& r) {
    Example e;
    e.task = "piqa";
    e.id = numbered_id("piqa", out.size());
    e.context = question_answer(r.str("goal"));
    const std::string sol1 = r.str("sol1"), sol2 = r.str("sol2");
    const int64_t label = r.integer("label");
    if (label != 0 && label != 1) r.fail("field \"label\" must be 0 or 1, got " + std::to_string(label));
    e.choices = {" " + sol1, " " + sol2};
    e.gold = static_cast<int>(label);
    e.answer = label == 0 ? sol1 : sol2;
    out.push_back(std::move(e));
  });
  return out;
}

std::vector<Example> load_winogrande(const std::string& path) {
  std::vector<Example> out;
  loaders::for_each_jsonl(path, [&](const Record& r) {
    Example e;
    e.task = "winogrande";
    e.id = numbered_id("winogrande", out.size());
    const std::string sentence = r.str("sentence");
    const size_t blank = sentence.find('_');
    if (blank == std::string::npos) r.fail("field \"sentence\" has no \"_\" blank: \"" + sentence + "\"");
    const std::string option1 = r.str("option1"), option2 = r.str("option2");
    const auto& a = r.field("answer");
    std::string answer = a.is_string() ? a.get<std::string>() : a.is_number_integer() ? std::to_string(a.get<int64_t>()) : "";
    if (answer != "1" && answer != "2") r.fail("field \"answer\" must be \"1\" or \"2\", got " + a.dump());
    // lm-evaluation-harness partial scoring: each option completes the context up to the blank;
    // the shared continuation is the rest of the sentence.
    const std::string before = sentence.substr(0, blank);
    e.context = sentence;
    e.choices = {before + option1, before + option2};
    e.target = " " + trim(sentence.substr(blank + 1));
    e.gold = answer == "1" ? 0 : 1;
    e.answer = answer == "1" ? option1 : option2;
    e.meta = {{"scoring", "partial"}};
    out.push_back(std::move(e));
  });
  return out;
}

std::vector<Example> load_lambada(const std::string& path) {
  std::vector<Example> out;
  loaders::for_each_jsonl(path, [&](const Record& r) {
    Example e;
    e.task = "lambada";
    e.id = numbered_id("lambada", out.size());
    const std::string text = r.str("text");
    // As lm-evaluation-harness: split on the last ' ' (not on other whitespace).
    const size_t space = text.rfind(' ');
    if (space == std::string::npos || space + 1 == text.size()) {
      r.fail("field \"text\" has no final space-separated word");
    }
    e.context = text.substr(0, space);
    e.answer = text.substr(space + 1);
    e.target = " " + e.answer;
    out.push_back(std::move(e));
  });
  return out;
}

std::vector<Example> load_mt_bench(const std::string& path) { return chat_prompts(path, "mt_bench"); }
std::vector<Example> load_vicuna_bench(const std::string& path) { return chat_prompts(path, "vicuna_bench"); }

std::vector<Example> load_ifeval(const std::string& path) {
  std::vector<Example> out;
  loaders::for_each_jsonl(path, [&](const Record& r) {
    Example e;
    e.task = "ifeval";
    e.id = "ifeval-" + std::to_string(r.integer("key"));
    e.context = r.str("prompt");
    const auto ids = r.strings("instruction_id_list");
    const auto& kwargs = r.field("kwargs");
    if (!kwargs.is_array() || kwargs.size() != ids.size()) {
      r.fail("field \"kwargs\" must be an array with one object per instruction id (" +
             std::to_string(ids.size()) + ")");
    }
    for (const auto& k : kwargs) {
      if (!k.is_object()) r.fail("field \"kwargs\" holds a non-object: " + k.dump());
    }
    e.meta = {{"instruction_id_list", ids}, {"kwargs", kwargs}};
    out.push_back(std::move(e));
  });
  return out;
}

// ---- registry ----

void LoaderRegistry::add(Loader loader) {
  const std::string name = loader.name;
  if (name.empty()) throw Error("loader registry: empty loader name");
  if (!loaders_.emplace(name, std::move(loader)).second) {
    throw Error("loader registry: duplicate loader name '" + name + "'");
  }
}

const Loader& LoaderRegistry::get(const std::string& name) const {
  auto it = loaders_.find(name);
  if (it == loaders_.end()) {
    std::string known;
    for (const auto& [n, l] : loaders_) known += (known.empty() ? "" : ", ") + n;
    throw Error("unknown dataset loader '" + name + "' (known: " + known + ")");
  }
  return it->second;
}

std::vector<std::string> LoaderRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [n, l] : loaders_) out.push_back(n);
  return out;
}

void register_builtin_loaders(LoaderRegistry& r) {
  r.add({"gsm8k", "gsm8k/test.jsonl", "GSM8K test (jsonl question/answer)", load_gsm8k});
  r.add({"svamp", "svamp/SVAMP.json", "SVAMP (JSON array)", load_svamp});
  r.add({"math500", "math500/test.jsonl", "MATH-500 (jsonl)", load_math500});
  r.add({"arc_easy", "arc/ARC-Easy-test.jsonl", "ARC-Easy test (HF ai2_arc jsonl)",
         [](const std::string& p) { return load_arc(p, "arc_easy"); }});
  r.add({"arc_challenge", "arc/ARC-Challenge-test.jsonl", "ARC-Challenge test (HF ai2_arc jsonl)",
         [](const std::string& p) { return load_arc(p, "arc_challenge"); }});
  r.add({"hellaswag", "hellaswag/hellaswag_val_full.txt", "HellaSwag validation (llama.cpp 6-line layout)", load_hellaswag});
  r.add({"piqa", "piqa/valid.jsonl", "PIQA validation (jsonl goal/sol1/sol2/label)", load_piqa});
  r.add({"winogrande", "winogrande/dev.jsonl", "WinoGrande dev (jsonl, partial scoring)", load_winogrande});
  r.add({"lambada", "lambada/lambada_test.jsonl", "LAMBADA (OpenAI jsonl)", load_lambada});
  r.add({"mt_bench", "mt_bench/question.jsonl", "MT-Bench questions", load_mt_bench});
  r.add({"vicuna_bench", "vicuna_bench/question.jsonl", "Vicuna benchmark questions", load_vicuna_bench});
  r.add({"ifeval", "ifeval/input_data.jsonl", "IFEval prompts", load_ifeval});
}

const LoaderRegistry& builtin_loaders() {
  static const LoaderRegistry registry = [] {
    LoaderRegistry r;
    register_builtin_loaders(r);
    return r;
  }();
  return registry;
}

std::string resolve_dataset_path(const Loader& loader, const std::string& explicit_path) {
  if (!explicit_path.empty()) return explicit_path;
  const char* root = std::getenv("QBENCH_SHARED");
  if (root == nullptr || *root == '\0') {
    throw Error("dataset '" + loader.name + "': no path given and QBENCH_SHARED is not set (expected $QBENCH_SHARED/datasets/" +
                loader.default_path + ")");
  }
  return (std::filesystem::path(root) / "datasets" / loader.default_path).string();
}

}  // namespace qbench
