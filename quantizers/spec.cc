#include "quantizers/spec.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "engine/core/error.h"
#include "quantizers/registry.h"

namespace qbench::quant {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s;
}

// Canonical value of option `d` for the user's `value`, or an Error naming the scheme.
std::string check_value(const Method& m, const OptionDecl& d, std::string_view value) {
  const std::string v = lower(trim(value));
  if (!d.values.empty()) {
    for (const auto& allowed : d.values) {
      if (v == lower(allowed)) return allowed;
    }
    throw Error("scheme '" + m.name + "': " + d.name + " must be one of " + join(d.values) + ", got '" +
                std::string(value) + "'");
  }
  if (d.real) {
    size_t used = 0;
    double x = 0;
    try {
      x = std::stod(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (v.empty() || used != v.size() || !std::isfinite(x) || x < d.min || x > d.max) {
      throw Error("scheme '" + m.name + "': " + d.name + " must be a number in " + std::to_string(d.min) + ".." +
                  std::to_string(d.max) + ", got '" + std::string(value) + "'");
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", x);  // canonical: "0.5", "0.85", "1"
    return buf;
  }
  size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (v.empty() || used != v.size() || n < d.min || n > d.max) {
    throw Error("scheme '" + m.name + "': " + d.name + " must be an integer in " + std::to_string(d.min) + ".." +
                std::to_string(d.max) + ", got '" + std::string(value) + "'");
  }
  return std::to_string(n);
}

// Method name plus (key, value) assignments in the order given; aliases expanded first, so the
// user's own options override an alias's optional ones ("int4,group=32"). A key given twice by
// the user ("group=64,group=32", "rtn:int4,bits=8") or changing what an alias's name says
// ("int4,bits=8") is an error, never last-wins.
struct RawSpec {
  const Method* method = nullptr;
  std::vector<std::pair<std::string, std::string>> kv;
  size_t n_alias = 0;       // kv[0, n_alias) come from an alias's expansion
  std::string alias;        // its name, or empty
  std::string alias_fixed;  // the alias's positional key (its name states it: int4 -> bits)

  void add_user(std::string key, std::string value) {
    for (size_t i = 0; i < kv.size(); ++i) {
      if (kv[i].first != key) continue;
      if (i >= n_alias) {
        throw Error("scheme '" + method->name + "': option '" + key + "' given twice ('" + kv[i].second + "' and '" +
                    value + "')");
      }
      if (key == alias_fixed) {
        throw Error("scheme '" + alias + "' sets " + key + "=" + kv[i].second + "; '" + key + "=" + value +
                    "' contradicts it");
      }
    }
    kv.emplace_back(std::move(key), std::move(value));
  }
};

RawSpec parse_raw(std::string_view text, const Registry& reg, int depth) {
  QB_ASSERT(depth < 4);
  text = trim(text);
  if (text.empty()) throw Error("empty scheme (see qbench schemes)");
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    const size_t comma = text.find(',', start);
    parts.push_back(trim(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start)));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  std::string_view head = parts[0], positional;
  if (const size_t colon = head.find(':'); colon != std::string_view::npos) {
    positional = trim(head.substr(colon + 1));
    head = trim(head.substr(0, colon));
  }
  RawSpec raw;
  if (const Alias* a = reg.find_alias(head)) {
    if (!positional.empty()) throw Error("scheme '" + a->name + "' takes no ':" + std::string(positional) + "'");
    raw = parse_raw(a->expansion, reg, depth + 1);
    raw.n_alias = raw.kv.size();
    raw.alias = a->name;
    if (!raw.method->positional.empty() && !raw.kv.empty() && raw.kv[0].first == raw.method->positional) {
      raw.alias_fixed = raw.method->positional;
    }
  } else {
    raw.method = reg.find(head);
    if (raw.method == nullptr) {
      throw Error("unknown scheme '" + std::string(head) + "' (see qbench schemes)");
    }
    if (!positional.empty()) {
      const Method& m = *raw.method;
      if (m.positional.empty()) {
        throw Error("scheme '" + m.name + "' takes no ':" + std::string(positional) + "'");
      }
      std::string_view p = positional;
      const std::string pl = lower(p);
      if (!m.positional_prefix.empty() && pl.rfind(m.positional_prefix, 0) == 0) {
        p.remove_prefix(m.positional_prefix.size());
      }
      raw.kv.emplace_back(m.positional, std::string(p));
    }
  }
  for (size_t i = 1; i < parts.size(); ++i) {
    const size_t eq = parts[i].find('=');
    if (eq == std::string_view::npos || eq == 0) {
      throw Error("scheme '" + raw.method->name + "': expected KEY=VALUE, got '" + std::string(parts[i]) + "'");
    }
    raw.add_user(lower(trim(parts[i].substr(0, eq))), std::string(trim(parts[i].substr(eq + 1))));
  }
  return raw;
}

SchemeSpec resolve(const RawSpec& raw) {
  const Method& m = *raw.method;
  SchemeSpec s;
  s.method = m.name;
  for (const auto& d : m.options) s.options.emplace_back(d.name, d.default_value);
  for (const auto& [key, value] : raw.kv) {
    auto it = std::find_if(m.options.begin(), m.options.end(), [&](const OptionDecl& d) { return d.name == key; });
    if (it == m.options.end()) {
      std::vector<std::string> names;
      for (const auto& d : m.options) names.push_back(d.name);
      throw Error("scheme '" + m.name + "': unknown option '" + key + "'" +
                  (names.empty() ? " (it takes none)" : " (options: " + join(names) + ")"));
    }
    s.options[size_t(it - m.options.begin())].second = check_value(m, *it, value);
  }
  return s;
}

}  // namespace

const std::string& SchemeSpec::get(std::string_view key) const {
  for (const auto& [k, v] : options) {
    if (k == key) return v;
  }
  QB_ASSERT(false && "undeclared option");
  static const std::string empty;
  return empty;
}

int SchemeSpec::get_int(std::string_view key) const { return std::stoi(get(key)); }
double SchemeSpec::get_double(std::string_view key) const { return std::stod(get(key)); }
bool SchemeSpec::get_bool(std::string_view key) const { return get(key) == "true"; }

std::string SchemeSpec::to_string() const {
  std::string s = method;
  const Method* m = registry().find(method);
  for (size_t i = 0; i < options.size(); ++i) {
    // The first option of a method with a positional form prints in that form ("rtn:int4").
    if (i == 0 && m && m->positional == options[0].first) {
      s += ":" + m->positional_prefix + options[0].second;
    } else {
      s += "," + options[i].first + "=" + options[i].second;
    }
  }
  return s;
}

nlohmann::json SchemeSpec::to_json() const {
  nlohmann::json j = {{"method", method}};
  const Method* m = registry().find(method);
  auto is_real = [&](const std::string& key) {
    if (!m) return false;
    for (const auto& d : m->options) {
      if (d.name == key) return d.real;
    }
    return false;
  };
  for (const auto& [k, v] : options) {
    if (is_real(k)) {
      j[k] = std::stod(v);
    } else if (v == "true" || v == "false") {
      j[k] = v == "true";
    } else if (!v.empty() && std::all_of(v.begin(), v.end(), [](char c) { return std::isdigit((unsigned char)c); })) {
      j[k] = std::stoll(v);
    } else {
      j[k] = v;
    }
  }
  return j;
}

SchemeSpec parse_scheme(std::string_view text, const Registry& reg) { return resolve(parse_raw(text, reg, 0)); }
SchemeSpec parse_scheme(std::string_view text) { return parse_scheme(text, registry()); }

SchemeSpec parse_scheme_json(const nlohmann::json& j, const Registry& reg) {
  if (!j.is_object() || !j.contains("method") || !j["method"].is_string()) {
    throw Error("scheme JSON must be an object with a string \"method\", got " + j.dump());
  }
  RawSpec raw = parse_raw(j["method"].get<std::string>(), reg, 0);
  for (const auto& [key, value] : j.items()) {
    if (key == "method") continue;
    std::string v;
    if (value.is_string()) {
      v = value.get<std::string>();
    } else if (value.is_boolean()) {
      v = value.get<bool>() ? "true" : "false";
    } else if (value.is_number_integer()) {
      v = std::to_string(value.get<long long>());
    } else if (value.is_number_float()) {
      v = value.dump();  // checked against a real option's range by resolve()
    } else {
      throw Error("scheme '" + raw.method->name + "': option '" + key + "' has unsupported value " + value.dump());
    }
    raw.add_user(lower(key), v);
  }
  return resolve(raw);
}
SchemeSpec parse_scheme_json(const nlohmann::json& j) { return parse_scheme_json(j, registry()); }

}  // namespace qbench::quant
