// Scheme specs: which quantization method, with which options (STYLE.md, convention 6: every
// method declares its options once — name, default, allowed values, help — and that declaration
// drives parsing, validation, canonical printing, JSON and `qbench schemes`).
//
// Text form:  METHOD[:POSITIONAL][,KEY=VALUE]...   e.g. "rtn:int4,group=128,sym=false,clip=mse",
//             "q4_K", "fp16", "nf4", or an alias ("int8" = "rtn:int8,group=channel").
// JSON form:  {"method": "rtn", "bits": 4, "group": 128, "sym": false, "clip": "mse"}.
// Canonical:  METHOD followed by every declared option in declaration order,
//             "rtn:int4,group=128,sym=false,clip=mse"; a method without options prints its name.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qbench::quant {

struct OptionDecl {
  std::string name;
  std::string default_value;
  std::string help;
  std::vector<std::string> values;  // allowed values; empty: an integer in [min, max]
  int min = 0, max = 0;
  bool real = false;  // with empty `values`: a decimal number in [min, max] (e.g. SmoothQuant's alpha)
};

struct SchemeSpec {
  std::string method;  // registry name, canonical spelling
  std::vector<std::pair<std::string, std::string>> options;  // all declared options, in order

  const std::string& get(std::string_view key) const;  // asserts that the option is declared
  int get_int(std::string_view key) const;
  double get_double(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  std::string to_string() const;
  nlohmann::json to_json() const;
  bool operator==(const SchemeSpec&) const = default;
};

class Registry;
// Parse and validate against `registry` (the built-in one by default). Throws qbench::Error with
// a one-line message naming the scheme and the bad part.
SchemeSpec parse_scheme(std::string_view text);
SchemeSpec parse_scheme(std::string_view text, const Registry& registry);
SchemeSpec parse_scheme_json(const nlohmann::json& j);
SchemeSpec parse_scheme_json(const nlohmann::json& j, const Registry& registry);

}  // namespace qbench::quant
