// Reading records of a dataset file with errors that name the file and line (internal to the
// loaders).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace qbench::loaders {

// One JSON object of a file and where it starts.
class Record {
 public:
  Record(const std::string& path, size_t line, nlohmann::json value)
      : path_(path), line_(line), value_(std::move(value)) {}

  const nlohmann::json& json() const { return value_; }
  size_t line() const { return line_; }
  [[noreturn]] void fail(const std::string& what) const;

  std::string str(const char* key) const;                 // required string field
  int64_t integer(const char* key) const;                 // required integer field
  double number(const char* key) const;                   // required number field
  std::vector<std::string> strings(const char* key) const;  // required array of strings
  const nlohmann::json& field(const char* key) const;     // required field of any type
  bool has(const char* key) const { return value_.contains(key); }

 private:
  const std::string& path_;
  size_t line_;
  nlohmann::json value_;
};

// Reads the whole file (Error when missing, empty or not UTF-8, naming the line of a bad byte).
std::string read_dataset_file(const std::string& path);

// Lines of `text` without their '\n' (and '\r' before it); a final newline adds no empty line.
std::vector<std::string_view> split_lines(std::string_view text);

// Calls `fn` for every non-blank line of a JSON-lines file, each parsed to an object.
void for_each_jsonl(const std::string& path, const std::function<void(const Record&)>& fn);

// Calls `fn` for every element of a file holding one JSON array of objects (line = where the
// element starts).
void for_each_json_array(const std::string& path, const std::function<void(const Record&)>& fn);

}  // namespace qbench::loaders
