#include "harness/run/config.h"

#include <cstdlib>
#include <set>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "harness/run/shapes.h"
#include "quantizers/quantize_model.h"
#include "tasks/chat_template.h"

namespace qbench::run {
namespace {

std::string type_name(const std::string*) { return "a string"; }
std::string type_name(const int64_t*) { return "an integer"; }
std::string type_name(const bool*) { return "a boolean"; }
std::string type_name(const StringList*) { return "a list of strings"; }

bool read_value(const nlohmann::json& v, std::string& out) {
  if (!v.is_string()) return false;
  out = v.get<std::string>();
  return true;
}
bool read_value(const nlohmann::json& v, int64_t& out) {
  if (!v.is_number_integer()) return false;
  out = v.get<int64_t>();
  return true;
}
bool read_value(const nlohmann::json& v, bool& out) {
  if (!v.is_boolean()) return false;
  out = v.get<bool>();
  return true;
}
bool read_value(const nlohmann::json& v, StringList& out) {
  if (!v.is_array()) return false;
  StringList l;
  for (const auto& e : v) {
    if (!e.is_string()) return false;
    l.push_back(e.get<std::string>());
  }
  out = std::move(l);
  return true;
}

}  // namespace

std::string scheme_canonical(const std::string& scheme) {
  const quant::Recipe r = quant::make_recipe(scheme);
  const std::string kv = r.kv_cache ? "+kv=" + kv_cache_name(*r.kv_cache) : "";
  return (r.ftype ? std::string(quant::ftype_info(*r.ftype).name) : r.scheme.to_string()) + kv;
}

std::string expand_path(const std::string& value, const std::string& field) {
  const std::string var = "$QBENCH_SHARED/";
  if (value.rfind(var, 0) != 0) return value;
  const char* root = std::getenv("QBENCH_SHARED");
  if (root == nullptr || *root == '\0') {
    throw Error("field '" + field + "': '" + value + "' needs the environment variable QBENCH_SHARED, which is not set");
  }
  return std::string(root) + "/" + value.substr(var.size());
}

nlohmann::json ExperimentConfig::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  j["version"] = version;
#define QBENCH_WRITE_FIELD(type, name, def, help) j[#name] = name;
  QBENCH_EXPERIMENT_FIELDS(QBENCH_WRITE_FIELD)
#undef QBENCH_WRITE_FIELD
  return j;
}

std::vector<FieldInfo> experiment_fields() {
  const ExperimentConfig d;
  std::vector<FieldInfo> out;
  out.push_back({"version", d.version, "config format version (this qbench reads 1)"});
#define QBENCH_FIELD_INFO(type, name, def, help) out.push_back({#name, nlohmann::json(d.name), help});
  QBENCH_EXPERIMENT_FIELDS(QBENCH_FIELD_INFO)
#undef QBENCH_FIELD_INFO
  return out;
}

ExperimentConfig parse_config(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw Error(where + ": an experiment config must be a JSON object");
  ExperimentConfig c;
  std::set<std::string> known = {"version"};
#define QBENCH_KNOWN_FIELD(type, name, def, help) known.insert(#name);
  QBENCH_EXPERIMENT_FIELDS(QBENCH_KNOWN_FIELD)
#undef QBENCH_KNOWN_FIELD
  for (const auto& [key, value] : j.items()) {
    if (!known.count(key)) throw Error(where + ": unknown field '" + key + "' (see qbench run --list-fields)");
  }
  if (j.contains("version")) {
    const auto& v = j["version"];
    if (!v.is_number_integer() || v.get<int64_t>() != kConfigVersion) {
      throw Error(where + ": field 'version': this qbench reads version " + std::to_string(kConfigVersion) +
                  ", got " + v.dump());
    }
  }
#define QBENCH_READ_FIELD(type, name, def, help)                                                       \
  if (j.contains(#name) && !read_value(j[#name], c.name)) {                                            \
    throw Error(where + ": field '" #name "': expected " + type_name(&c.name) + ", got " + j[#name].dump()); \
  }
  QBENCH_EXPERIMENT_FIELDS(QBENCH_READ_FIELD)
#undef QBENCH_READ_FIELD
  validate_config(c, where);
  return c;
}

void validate_config(const ExperimentConfig& c, const std::string& where) {
  auto bad = [&](const std::string& field, const std::string& why) {
    throw Error(where + ": field '" + field + "': " + why);
  };
  if (c.name.empty() || c.name.find('/') != std::string::npos) bad("name", "must be a non-empty name without '/'");
  if (c.schemes.empty()) bad("schemes", "at least one scheme is needed");
  std::set<std::string> seen;
  for (const auto& s : c.schemes) {
    // Only the spelling is checked here; a scheme that cannot apply to the model fails its run.
    std::string canonical;
    try {
      canonical = scheme_canonical(s);
    } catch (const Error& e) {
      bad("schemes", e.what());
    }
    if (!seen.insert(canonical).second) bad("schemes", "'" + s + "' is listed twice (as " + canonical + ")");
  }
  if (!c.baseline.empty()) {
    bool found = false;
    for (const auto& s : c.schemes) found = found || s == c.baseline;
    if (!found) bad("baseline", "'" + c.baseline + "' is not one of the schemes");
  }
  if (c.activations != "kernel" && c.activations != "float") {
    bad("activations", "expected \"kernel\" or \"float\", got \"" + c.activations + "\"");
  }
  if (!c.chat_template.empty() && find_chat_template(c.chat_template) == nullptr) {
    bad("chat_template", "unknown chat template \"" + c.chat_template + "\" (known: " + chat_template_names() + ")");
  }
  if (c.limit < 0) bad("limit", "must be >= 0, got " + std::to_string(c.limit));
  if (c.ctx < 0 || c.ctx == 1) {
    bad("ctx", "must be 0 (the model's context) or >= 2 (one context token and one scored token), got " +
                   std::to_string(c.ctx));
  }
  if (c.threads < 0) bad("threads", "must be >= 0, got " + std::to_string(c.threads));
  if (c.seed < 0) bad("seed", "must be >= 0, got " + std::to_string(c.seed));
  if (c.ppl_text.empty()) bad("ppl_text", "must name a file or generated:GEN,...");
  if (c.ppl_items < 1) bad("ppl_items", "must be >= 1, got " + std::to_string(c.ppl_items));
  if (c.calib_text.empty()) bad("calib_text", "must name a file or generated:GEN,...");
  if (c.calib_items < 1) bad("calib_items", "must be >= 1, got " + std::to_string(c.calib_items));
  if (c.qat_items < 1) bad("qat_items", "must be >= 1, got " + std::to_string(c.qat_items));
  if (c.calib_samples < 1) bad("calib_samples", "must be >= 1, got " + std::to_string(c.calib_samples));
  if (c.calib_ctx < 8) bad("calib_ctx", "must be >= 8, got " + std::to_string(c.calib_ctx));
  if (c.ppl_ctx < 8) bad("ppl_ctx", "must be >= 8, got " + std::to_string(c.ppl_ctx));
  if (c.ppl_chunks == 0 || c.ppl_chunks < -1) bad("ppl_chunks", "must be -1 (all) or >= 1, got " + std::to_string(c.ppl_chunks));
  if (c.kl && !c.perplexity) bad("kl", "needs perplexity: true (KL is measured on the perplexity chunks)");
  if (c.kl_top_k < 1) bad("kl_top_k", "must be >= 1, got " + std::to_string(c.kl_top_k));
  if (c.speed_prefill < 1) bad("speed_prefill", "must be >= 1, got " + std::to_string(c.speed_prefill));
  if (c.speed_decode < 1) bad("speed_decode", "must be >= 1, got " + std::to_string(c.speed_decode));
  if (c.speed_reps < 1) bad("speed_reps", "must be >= 1, got " + std::to_string(c.speed_reps));
  if (c.speed_warmup < 0) bad("speed_warmup", "must be >= 0, got " + std::to_string(c.speed_warmup));
  if (c.speed_threads < 0) bad("speed_threads", "must be >= 0, got " + std::to_string(c.speed_threads));
  if (!c.speed_shape.empty()) {
    try {
      find_shape(c.speed_shape);
      for (const auto& s : c.schemes) uncalibrated_equivalent(s);
    } catch (const Error& e) {
      bad("speed_shape", e.what());
    }
  }
  if (c.speed_bandwidth_mib < 0 || c.speed_bandwidth_mib > (int64_t(1) << 20)) {
    bad("speed_bandwidth_mib", "must be 0 (no probe) or a size in MiB up to 1048576, got " + std::to_string(c.speed_bandwidth_mib));
  }
}

nlohmann::json parse_json_strict(const std::string& text, const std::string& path) {
  // Duplicate keys: nlohmann keeps the last silently; a config that says "ctx" twice is refused.
  std::vector<std::set<std::string>> keys;  // one set per open object
  std::string duplicate;
  const nlohmann::json::parser_callback_t check = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) keys.emplace_back();
    if (event == E::object_end && !keys.empty()) keys.pop_back();
    if (event == E::key && !keys.empty() && !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, check);
  } catch (const nlohmann::json::exception& e) {  // syntax, and numbers out of range (1e400)
    throw Error(path + ": not valid JSON (" + std::string(e.what()) + ")");
  }
  if (!duplicate.empty()) throw Error(path + ": key '" + duplicate + "' appears twice in one object");
  return j;
}

ExperimentConfig load_config(const std::string& path) {
  return parse_config(parse_json_strict(read_file(path), path), path);
}

}  // namespace qbench::run
