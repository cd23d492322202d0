#include "datasets/instructions.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "engine/core/error.h"

namespace qbench {

namespace {

using nlohmann::json;

// Python str.strip() for ASCII text: whitespace is \t\n\v\f\r, space and \x1c-\x1f.
bool py_space(unsigned char c) { return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F); }

std::string_view strip(std::string_view s) {
  while (!s.empty() && py_space(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && py_space(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Decodes one UTF-8 code point at s[i] (invalid bytes decode as themselves), advancing i.
uint32_t next_code_point(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  size_t len = b0 < 0x80 ? 1 : (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xE ? 3 : (b0 >> 3) == 0x1E ? 4 : 1;
  if (i + len > s.size()) len = 1;
  uint32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += len;
  return cp;
}

bool word_char(uint32_t cp) {
  if (cp < 0x80) {
    return (cp >= '0' && cp <= '9') || (cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z') || cp == '_';
  }
  // Non-ASCII: letters and digits of most scripts count; the common punctuation and space
  // blocks do not.
  if (cp >= 0x80 && cp <= 0xBF) return cp == 0xAA || cp == 0xB5 || cp == 0xBA || (cp >= 0xB2 && cp <= 0xB3) || cp == 0xB9 || (cp >= 0xBC && cp <= 0xBE);
  if (cp == 0xD7 || cp == 0xF7) return false;
  if (cp >= 0x2000 && cp <= 0x2BFF) return false;  // punctuation, symbols, arrows, shapes
  if (cp >= 0x3000 && cp <= 0x303F) return false;  // CJK punctuation
  if (cp >= 0xFE30 && cp <= 0xFE4F) return false;
  if (cp >= 0xFF00 && cp <= 0xFF0F) return false;
  if (cp >= 0x1F000 && cp <= 0x1FAFF) return false;  // emoji
  return true;
}

// ---- kwargs access ----
struct Spec {
  std::vector<std::string> keys;  // required keys (all of them; none is optional)
  std::function<void(const std::string& id, const json& kw)> validate;
  std::function<bool(const json& kw, std::string_view response)> check;
};

[[noreturn]] void bad_kwargs(const std::string& id, const std::string& what) {
  throw Error("instruction '" + id + "': " + what);
}

int64_t get_int(const std::string& id, const json& kw, const char* key) {
  const json& v = kw.at(key);
  if (!v.is_number_integer()) bad_kwargs(id, std::string("kwarg '") + key + "' must be an integer, got " + v.dump());
  return v.get<int64_t>();
}
std::string get_string(const std::string& id, const json& kw, const char* key) {
  const json& v = kw.at(key);
  if (!v.is_string()) bad_kwargs(id, std::string("kwarg '") + key + "' must be a string, got " + v.dump());
  return v.get<std::string>();
}

bool is_upper_py(std::string_view s) {  // Python str.isupper() on ASCII letters
  bool cased = false;
  for (char c : s) {
    if (c >= 'a' && c <= 'z') return false;
    if (c >= 'A' && c <= 'Z') cased = true;
  }
  return cased;
}
bool is_lower_py(std::string_view s) {
  bool cased = false;
  for (char c : s) {
    if (c >= 'A' && c <= 'Z') return false;
    if (c >= 'a' && c <= 'z') cased = true;
  }
  return cased;
}

std::string_view remove_prefix(std::string_view s, std::string_view p) {
  return s.starts_with(p) ? s.substr(p.size()) : s;
}

bool json_format(std::string_view value) {
  value = strip(value);
  value = remove_prefix(value, "```json");
  value = remove_prefix(value, "```Json");
  value = remove_prefix(value, "```JSON");
  value = remove_prefix(value, "```");
  if (value.ends_with("```")) value.remove_suffix(3);
  value = strip(value);
  return json::accept(value);
}

bool nth_paragraph_first_word(const json& kw, std::string_view value) {
  const int64_t want_paragraphs = kw.at("num_paragraphs").get<int64_t>();
  const int64_t nth = kw.at("nth_paragraph").get<int64_t>();
  const std::string want_word = ascii_lower(kw.at("first_word").get<std::string>());
  std::vector<std::string_view> paragraphs;
  for (size_t start = 0;;) {
    const size_t pos = value.find("\n\n", start);
    paragraphs.push_back(value.substr(start, pos == std::string_view::npos ? pos : pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 2;
  }
  int64_t num_paragraphs = static_cast<int64_t>(paragraphs.size());
  for (auto p : paragraphs) {
    if (strip(p).empty()) --num_paragraphs;
  }
  if (nth > num_paragraphs || nth < 1) return false;
  const std::string_view paragraph = strip(paragraphs[static_cast<size_t>(nth - 1)]);
  if (paragraph.empty()) return false;
  size_t end = 0;
  while (end < paragraph.size() && !py_space(static_cast<unsigned char>(paragraph[end]))) ++end;
  std::string_view word = paragraph.substr(0, end);
  while (word.starts_with('\'')) word.remove_prefix(1);
  while (word.starts_with('"')) word.remove_prefix(1);
  std::string first;
  for (char c : word) {
    if (c == '.' || c == ',' || c == '?' || c == '!' || c == '\'' || c == '"') break;
    first += c;
  }
  return num_paragraphs == want_paragraphs && ascii_lower(first) == want_word;
}

const std::map<std::string, Spec>& specs() {
  static const std::map<std::string, Spec> kSpecs = {
      {"change_case:english_capital", {{}, nullptr, [](const json&, std::string_view r) { return is_upper_py(r); }}},
      {"change_case:english_lowercase", {{}, nullptr, [](const json&, std::string_view r) { return is_lower_py(r); }}},
      {"length_constraints:number_words",
       {{"relation", "num_words"},
        [](const std::string& id, const json& kw) {
          const std::string rel = get_string(id, kw, "relation");
          if (rel != "less than" && rel != "at least" && rel != "exactly") {
            bad_kwargs(id, "relation must be \"less than\", \"at least\" or \"exactly\", got \"" + rel + "\"");
          }
          if (get_int(id, kw, "num_words") < 0) bad_kwargs(id, "num_words must be >= 0");
        },
        [](const json& kw, std::string_view r) {
          const int64_t n = count_words_ifeval(r), want = kw.at("num_words").get<int64_t>();
          const std::string rel = kw.at("relation").get<std::string>();
          return rel == "less than" ? n < want : rel == "at least" ? n >= want : n == want;
        }}},
      {"startend:end_checker",
       {{"end_phrase"},
        [](const std::string& id, const json& kw) { get_string(id, kw, "end_phrase"); },
        [](const json& kw, std::string_view r) {
          std::string_view v = strip(r);
          while (v.starts_with('"')) v.remove_prefix(1);
          while (v.ends_with('"')) v.remove_suffix(1);
          return ascii_lower(v).ends_with(ascii_lower(strip(kw.at("end_phrase").get<std::string>())));
        }}},
      {"detectable_format:json_format", {{}, nullptr, [](const json&, std::string_view r) { return json_format(r); }}},
      {"punctuation:no_comma", {{}, nullptr, [](const json&, std::string_view r) { return r.find(',') == std::string_view::npos; }}},
      {"length_constraints:nth_paragraph_first_word",
       {{"num_paragraphs", "nth_paragraph", "first_word"},
        [](const std::string& id, const json& kw) {
          get_int(id, kw, "num_paragraphs");
          get_int(id, kw, "nth_paragraph");
          get_string(id, kw, "first_word");
        },
        nth_paragraph_first_word}},
      {"startend:quotation",
       {{}, nullptr, [](const json&, std::string_view r) {
          const std::string_view v = strip(r);
          return v.size() > 1 && v.front() == '"' && v.back() == '"';
        }}},
  };
  return kSpecs;
}

const Spec& spec_for(const std::string& id) {
  auto it = specs().find(id);
  if (it == specs().end()) throw Error("unsupported instruction id '" + id + "'");
  return it->second;
}

// Copy of kwargs without null values; checks keys against the spec.
json normalized_kwargs(const std::string& id, const Spec& spec, const json& kwargs) {
  if (!kwargs.is_null() && !kwargs.is_object()) bad_kwargs(id, "kwargs must be an object, got " + kwargs.dump());
  json kw = json::object();
  if (kwargs.is_object()) {
    for (const auto& [k, v] : kwargs.items()) {
      if (v.is_null()) continue;
      if (std::find(spec.keys.begin(), spec.keys.end(), k) == spec.keys.end()) {
        bad_kwargs(id, "unexpected kwarg '" + k + "' = " + v.dump());
      }
      kw[k] = v;
    }
  }
  for (const auto& k : spec.keys) {
    if (!kw.contains(k)) bad_kwargs(id, "missing kwarg '" + k + "' in " + kwargs.dump());
  }
  if (spec.validate) spec.validate(id, kw);
  return kw;
}

}  // namespace

int64_t count_words_ifeval(std::string_view text) {
  int64_t words = 0;
  bool in_word = false;
  for (size_t i = 0; i < text.size();) {
    const bool w = word_char(next_code_point(text, i));
    if (w && !in_word) ++words;
    in_word = w;
  }
  return words;
}

void validate_instruction_kwargs(const std::string& instruction_id, const nlohmann::json& kwargs) {
  normalized_kwargs(instruction_id, spec_for(instruction_id), kwargs);
}

bool check_instruction(const std::string& instruction_id, const nlohmann::json& kwargs,
                       const std::string& response) {
  const Spec& spec = spec_for(instruction_id);
  return spec.check(normalized_kwargs(instruction_id, spec, kwargs), response);
}

bool is_supported_instruction(const std::string& instruction_id) {
  return specs().count(instruction_id) != 0;
}

std::vector<std::string> supported_instructions() {
  std::vector<std::string> out;
  for (const auto& [id, s] : specs()) out.push_back(id);
  return out;
}

}  // namespace qbench
