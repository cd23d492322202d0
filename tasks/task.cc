#include "tasks/task.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <set>

#include "datasets/generators/generators.h"
#include "engine/core/rng.h"
#include "datasets/loaders/loaders.h"
#include "engine/core/error.h"
#include "engine/core/mapped_file.h"

namespace qbench {
namespace {

struct KindName {
  TaskKind kind;
  const char* name;
};
constexpr KindName kKinds[] = {
    {TaskKind::MultipleChoice, "multiple_choice"}, {TaskKind::ExactMatch, "exact_match"},
    {TaskKind::Instruction, "instruction"},        {TaskKind::TargetLoglik, "target_loglik"},
    {TaskKind::RollingLoglik, "rolling_loglik"},
};

template <typename T>
T field(const nlohmann::json& j, const char* key, const std::string& where, T dflt) {
  if (!j.contains(key)) return dflt;
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error(where + ": field '" + key + "' has the wrong type (" + j.at(key).dump() + ")");
  }
}

void check_fields(const nlohmann::json& j, const std::set<std::string>& allowed, const std::string& where) {
  if (!j.is_object()) throw Error(where + ": expected a JSON object");
  for (const auto& [k, v] : j.items()) {
    if (!allowed.count(k)) throw Error(where + ": unknown field '" + k + "'");
  }
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return {};
  const size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

}  // namespace

const char* task_kind_name(TaskKind k) {
  for (const auto& kn : kKinds) {
    if (kn.kind == k) return kn.name;
  }
  return "unknown";
}

nlohmann::json TaskDef::to_json() const {
  nlohmann::json src;
  if (!source.generator.empty()) {
    src = {{"generator", source.generator}, {"count", source.count}, {"seed", source.seed}};
  } else {
    src = {{"loader", source.loader}};
    if (!source.path.empty()) src["path"] = source.path;
  }
  return {{"name", name}, {"version", version}, {"description", description}, {"kind", task_kind_name(kind)},
          {"source", src}, {"few_shot", few_shot}, {"few_shot_seed", few_shot_seed}, {"stop", stop},
          {"max_tokens", max_tokens}, {"extract", extract}, {"chat", chat}};
}

TaskDef parse_task(const nlohmann::json& j, const std::string& where) {
  check_fields(j, {"name", "version", "description", "kind", "source", "few_shot", "few_shot_seed", "stop",
                   "max_tokens", "extract", "chat"},
               where);
  TaskDef t;
  t.file = where;
  t.name = field<std::string>(j, "name", where, "");
  if (t.name.empty()) throw Error(where + ": missing field 'name'");
  t.version = field<int>(j, "version", where, 1);
  t.description = field<std::string>(j, "description", where, "");
  const std::string kind = field<std::string>(j, "kind", where, "");
  bool found = false;
  for (const auto& kn : kKinds) {
    if (kind == kn.name) {
      t.kind = kn.kind;
      found = true;
    }
  }
  if (!found) throw Error(where + ": unknown task kind '" + kind + "'");
  if (!j.contains("source")) throw Error(where + ": missing field 'source'");
  const auto& s = j.at("source");
  check_fields(s, {"generator", "loader", "path", "count", "seed"}, where + " (source)");
  t.source.generator = field<std::string>(s, "generator", where, "");
  t.source.loader = field<std::string>(s, "loader", where, "");
  t.source.path = field<std::string>(s, "path", where, "");
  t.source.count = field<int64_t>(s, "count", where, 0);
  t.source.seed = field<uint64_t>(s, "seed", where, 0);
  if (t.source.generator.empty() == t.source.loader.empty()) {
    throw Error(where + ": source needs exactly one of 'generator' and 'loader'");
  }
  if (!t.source.generator.empty()) {
    if (!builtin_generators().contains(t.source.generator)) {
      throw Error(where + ": unknown generator '" + t.source.generator + "'");
    }
    if (t.source.count <= 0) throw Error(where + ": a generator source needs a positive 'count'");
  } else if (!builtin_loaders().contains(t.source.loader)) {
    throw Error(where + ": unknown loader '" + t.source.loader + "'");
  }
  t.few_shot = field<int>(j, "few_shot", where, 0);
  if (t.few_shot < 0 || t.few_shot > 64) throw Error(where + ": few_shot must be in [0, 64]");
  t.few_shot_seed = field<uint64_t>(j, "few_shot_seed", where, 1234);
  t.stop = field<std::vector<std::string>>(j, "stop", where, {"\n"});
  t.max_tokens = field<int64_t>(j, "max_tokens", where, 32);
  if (t.max_tokens <= 0) throw Error(where + ": max_tokens must be positive");
  t.extract = field<std::string>(j, "extract", where, "exact");
  try {
    extract_answer(t.extract, "");
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  t.chat = field<bool>(j, "chat", where, false);
  if (t.chat && t.kind == TaskKind::RollingLoglik) {
    throw Error(where + ": 'chat' formats a prompt; a rolling_loglik task has none");
  }
  if (t.chat && t.few_shot > 0) {
    throw Error(where + ": 'chat' and 'few_shot' cannot be combined (the chat template writes the item's one user turn)");
  }
  return t;
}

TaskDef load_task_file(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {  // also numbers out of range (1e400)
    throw Error(path + ": not valid JSON: " + e.what());
  }
  return parse_task(j, path);
}

std::string tasks_dir() {
  if (const char* env = std::getenv("QBENCH_TASKS_DIR"); env && *env) return env;
  return QBENCH_SOURCE_DIR "/tasks";
}

std::vector<TaskDef> builtin_tasks() {
  std::vector<std::string> files;
  const auto dir = std::filesystem::path(tasks_dir()) / "defs";
  if (!std::filesystem::is_directory(dir)) throw Error(dir.string() + ": task folder not found");
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".json") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  std::vector<TaskDef> out;
  std::set<std::string> names;
  for (const auto& f : files) {
    TaskDef t = load_task_file(f);
    if (!names.insert(t.name).second) throw Error(f + ": duplicate task name '" + t.name + "'");
    out.push_back(std::move(t));
  }
  return out;
}

const TaskDef& find_task(const std::vector<TaskDef>& tasks, const std::string& name) {
  for (const auto& t : tasks) {
    if (t.name == name) return t;
  }
  std::string known;
  for (const auto& t : tasks) known += (known.empty() ? "" : ", ") + t.name;
  throw Error("unknown task '" + name + "' (known: " + known + ")");
}

std::vector<std::string> suite_names() {
  std::vector<std::string> out;
  const auto dir = std::filesystem::path(tasks_dir()) / "suites";
  if (!std::filesystem::is_directory(dir)) return out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".json") out.push_back(e.path().stem().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> suite_tasks(const std::string& suite) {
  const auto path = (std::filesystem::path(tasks_dir()) / "suites" / (suite + ".json")).string();
  if (!std::filesystem::exists(path)) {
    std::string known;
    for (const auto& s : suite_names()) known += (known.empty() ? "" : ", ") + s;
    throw Error("unknown suite '" + suite + "' (known: " + known + ")");
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {  // also numbers out of range (1e400)
    throw Error(path + ": not valid JSON: " + e.what());
  }
  check_fields(j, {"name", "description", "tasks"}, path);
  return field<std::vector<std::string>>(j, "tasks", path, {});
}

std::vector<Example> task_items(const TaskDef& t, int64_t limit) {
  std::vector<Example> items;
  if (!t.source.generator.empty()) {
    const int64_t n = limit > 0 ? std::min(limit, t.source.count) : t.source.count;
    items = builtin_generators().get(t.source.generator).generate(n, t.source.seed);
  } else {
    const Loader& ld = builtin_loaders().get(t.source.loader);
    items = ld.load(resolve_dataset_path(ld, t.source.path));
    if (limit > 0 && int64_t(items.size()) > limit) items.resize(size_t(limit));
  }
  if (t.few_shot > 0) {
    // Shots for generated tasks come from the generator with the few-shot seed; for loaded
    // ones from the other items of the set. Each item gets its own seeded draw.
    std::vector<Example> pool;
    if (!t.source.generator.empty()) {
      pool = builtin_generators().get(t.source.generator).generate(t.few_shot * 8 + 16, t.few_shot_seed);
    } else {
      const Loader& ld = builtin_loaders().get(t.source.loader);
      pool = ld.load(resolve_dataset_path(ld, t.source.path));
    }
    for (size_t i = 0; i < items.size(); ++i) {
      Rng rng(t.few_shot_seed ^ (0x9E3779B97F4A7C15ull * (i + 1)));
      std::string shots;
      int taken = 0;
      for (int tries = 0; taken < t.few_shot && tries < 1000; ++tries) {
        const Example& s = pool[size_t(rng.next() % pool.size())];
        if (s.context == items[i].context) continue;
        const std::string solved = s.is_multiple_choice() && s.gold >= 0 ? s.context + s.choices[size_t(s.gold)]
                                                                          : s.context + s.target;
        shots += solved;
        if (shots.back() != '\n') shots += "\n\n";
        ++taken;
      }
      items[i].context = shots + items[i].context;
    }
  }
  return items;
}

std::string extract_answer(const std::string& rule, const std::string& output) {
  static const std::regex number(R"(-?[0-9][0-9,]*(\.[0-9]+)?)");
  auto strip_commas = [](std::string s) {
    s.erase(std::remove(s.begin(), s.end(), ','), s.end());
    return s;
  };
  if (rule == "exact") {
    const size_t nl = output.find('\n');
    return trim(output.substr(0, nl));
  }
  if (rule == "first_number" || rule == "last_number") {
    std::string found;
    for (auto it = std::sregex_iterator(output.begin(), output.end(), number); it != std::sregex_iterator(); ++it) {
      found = it->str();
      if (rule == "first_number") break;
    }
    return strip_commas(found);
  }
  if (rule == "reversed_digits") {
    const size_t a = output.find_first_of("0123456789");
    if (a == std::string::npos) return {};
    const size_t b = output.find_first_not_of("0123456789", a);
    std::string d = output.substr(a, b == std::string::npos ? std::string::npos : b - a);
    std::reverse(d.begin(), d.end());
    const size_t nz = d.find_first_not_of('0');
    return nz == std::string::npos ? "0" : d.substr(nz);
  }
  if (rule == "gsm8k") {
    static const std::regex strict(R"(#### (\-?[0-9\.\,]+))");
    std::smatch m;
    if (!std::regex_search(output, m, strict)) return {};
    std::string s = strip_commas(m[1].str());
    while (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  }
  if (rule.rfind("regex:", 0) == 0) {
    std::regex re;
    try {
      re = std::regex(rule.substr(6));
    } catch (const std::regex_error& e) {
      throw Error("extract rule '" + rule + "' is not a valid regular expression");
    }
    std::smatch m;
    if (!std::regex_search(output, m, re)) return {};
    return m.size() > 1 ? m[1].str() : m[0].str();
  }
  throw Error("unknown answer extraction rule '" + rule +
              "' (exact, first_number, last_number, reversed_digits, gsm8k, regex:...)");
}

}  // namespace qbench
