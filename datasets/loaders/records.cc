#include "datasets/loaders/records.h"

#include <algorithm>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/core/utf8.h"

namespace qbench::loaders {

namespace {

size_t line_of_offset(std::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  return 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<ptrdiff_t>(offset), '\n'));
}

std::string shorten(std::string s, size_t max = 80) {
  if (s.size() > max) s = s.substr(0, max) + "...";
  return s;
}

}  // namespace

void Record::fail(const std::string& what) const {
  throw Error(path_ + ":" + std::to_string(line_) + ": " + what);
}

const nlohmann::json& Record::field(const char* key) const {
  auto it = value_.find(key);
  if (it == value_.end()) fail(std::string("missing field \"") + key + "\"");
  return *it;
}

std::string Record::str(const char* key) const {
  const auto& v = field(key);
  if (!v.is_string()) fail(std::string("field \"") + key + "\" must be a string, got " + shorten(v.dump()));
  return v.get<std::string>();
}

int64_t Record::integer(const char* key) const {
  const auto& v = field(key);
  if (!v.is_number_integer()) fail(std::string("field \"") + key + "\" must be an integer, got " + shorten(v.dump()));
  return v.get<int64_t>();
}

double Record::number(const char* key) const {
  const auto& v = field(key);
  if (!v.is_number()) fail(std::string("field \"") + key + "\" must be a number, got " + shorten(v.dump()));
  return v.get<double>();
}

std::vector<std::string> Record::strings(const char* key) const {
  const auto& v = field(key);
  if (!v.is_array()) fail(std::string("field \"") + key + "\" must be an array of strings, got " + shorten(v.dump()));
  std::vector<std::string> out;
  for (const auto& s : v) {
    if (!s.is_string()) fail(std::string("field \"") + key + "\" must hold only strings, got " + shorten(s.dump()));
    out.push_back(s.get<std::string>());
  }
  return out;
}

std::string read_dataset_file(const std::string& path) {
  std::string text = read_file(path);
  if (text.empty()) throw Error(path + ": dataset file is empty");
  if (auto bad = find_invalid_utf8(text)) {
    throw Error(path + ":" + std::to_string(line_of_offset(text, *bad)) +
                ": not valid UTF-8 (bad byte sequence at byte offset " + std::to_string(*bad) + ")");
  }
  return text;
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (line.ends_with('\r')) line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

void for_each_jsonl(const std::string& path, const std::function<void(const Record&)>& fn) {
  const std::string text = read_dataset_file(path);
  const auto lines = split_lines(text);
  size_t records = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string_view line = lines[i];
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    nlohmann::json value;
    try {
      value = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {  // also numbers out of range (1e400)
      throw Error(path + ":" + std::to_string(i + 1) + ": invalid JSON (" + e.what() + "): " +
                  shorten(std::string(line)));
    }
    if (!value.is_object()) {
      throw Error(path + ":" + std::to_string(i + 1) + ": expected a JSON object, got " + shorten(value.dump()));
    }
    ++records;
    fn(Record(path, i + 1, std::move(value)));
  }
  if (records == 0) throw Error(path + ": no records (only blank lines)");
}

void for_each_json_array(const std::string& path, const std::function<void(const Record&)>& fn) {
  const std::string text = read_dataset_file(path);
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(path + ":" + std::to_string(line_of_offset(text, e.byte > 0 ? e.byte - 1 : 0)) +
                ": invalid JSON (" + e.what() + ")");
  } catch (const nlohmann::json::exception& e) {  // numbers out of range (1e400)
    throw Error(path + ": invalid JSON (" + std::string(e.what()) + ")");
  }
  if (!value.is_array()) throw Error(path + ":1: expected one JSON array of records, got " + std::string(value.type_name()));
  // Offsets where the array's elements start: scan at nesting depth 1, outside strings.
  std::vector<size_t> starts;
  int depth = 0;
  bool in_string = false, escaped = false, expect_element = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (depth == 1 && expect_element && c != ']') {
      starts.push_back(i);
      expect_element = false;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      ++depth;
      if (depth == 1) expect_element = true;
    } else if (c == ']' || c == '}') --depth;
    else if (c == ',' && depth == 1) expect_element = true;
  }
  for (size_t k = 0; k < value.size(); ++k) {
    const size_t line = k < starts.size() ? line_of_offset(text, starts[k]) : 0;
    if (!value[k].is_object()) {
      throw Error(path + ":" + std::to_string(line) + ": array element " + std::to_string(k) +
                  " is not a JSON object: " + shorten(value[k].dump()));
    }
    fn(Record(path, line, std::move(value[k])));
  }
  if (value.empty()) throw Error(path + ": the array holds no records");
}

}  // namespace qbench::loaders
