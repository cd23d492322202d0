// qbench schemes: every quantization scheme (registry methods, aliases, llama.cpp mixes) with
// its options, defaults and a one-line explanation.
#include <cstdio>
#include <iostream>

#include "harness/cli.h"
#include "harness/commands.h"
#include "quantizers/llama_mix.h"
#include "quantizers/registry.h"

namespace qbench::cli {

int cmd_schemes(const std::vector<std::string>& args) {
  bool json = false;
  int threads = 0;
  po::options_description desc("qbench schemes options");
  add_output_options(desc, json, threads);
  po::variables_map vm;
  if (!parse(args, desc,
             "usage: qbench schemes [--json]\n\n"
             "Lists the quantization schemes: methods with their options (METHOD[:POSITIONAL][,KEY=VALUE]...),\n"
             "short aliases, and llama.cpp's mixes (file types such as Q4_K_M).",
             vm)) {
    return 0;
  }
  const quant::Registry& reg = quant::registry();
  nlohmann::json methods = nlohmann::json::array(), aliases = nlohmann::json::array(), mixes = nlohmann::json::array();
  for (const auto& m : reg.methods()) {
    nlohmann::json opts = nlohmann::json::array();
    for (const auto& o : m.options) {
      nlohmann::json oj = {{"name", o.name}, {"default", o.default_value}, {"help", o.help}};
      if (o.values.empty()) {
        oj["min"] = o.min;
        oj["max"] = o.max;
        if (o.real) oj["real"] = true;
      } else {
        oj["values"] = o.values;
      }
      opts.push_back(oj);
    }
    methods.push_back({{"name", m.name},
                       {"summary", m.summary},
                       {"default_spec", quant::parse_scheme(m.name).to_string()},
                       {"options", opts},
                       {"ggml_type", m.ggml_type ? nlohmann::json(type_traits(*m.ggml_type).name) : nlohmann::json(nullptr)}});
  }
  for (const auto& a : reg.aliases()) {
    aliases.push_back({{"name", a.name}, {"spec", quant::parse_scheme(a.expansion).to_string()}, {"summary", a.summary}});
  }
  for (const auto& f : quant::all_ftypes()) {
    mixes.push_back({{"name", f.name}, {"base", type_traits(f.base).name}, {"file_type", f.file_type}, {"summary", f.summary}});
  }
  if (json) {
    print_json({{"command", "schemes"}, {"methods", methods}, {"aliases", aliases}, {"mixes", mixes}});
    return 0;
  }
  std::printf("Methods (METHOD[:POSITIONAL][,KEY=VALUE]...):\n");
  for (const auto& m : reg.methods()) {
    std::printf("  %-6s %s\n", m.name.c_str(), m.summary.c_str());
    for (const auto& o : m.options) {
      std::string range = o.values.empty() ? std::to_string(o.min) + ".." + std::to_string(o.max) : "";
      for (size_t i = 0; i < o.values.size(); ++i) range += (i ? "|" : "") + o.values[i];
      std::printf("         %-6s = %-28s default %-5s %s\n", o.name.c_str(), range.c_str(), o.default_value.c_str(),
                  o.help.c_str());
    }
  }
  std::printf("\nAliases:\n");
  for (const auto& a : reg.aliases()) std::printf("  %-6s %s\n", a.name.c_str(), a.summary.c_str());
  std::printf("\nllama.cpp mixes (qbench quantize --scheme NAME; a GGUF type name such as q4_0 or q4_K\n"
              "means its llama-quantize file type, q4_K = Q4_K_M; --pure disables the mix):\n");
  for (const auto& f : quant::all_ftypes()) {
    std::printf("  %-7s %s\n", std::string(f.name).c_str(), std::string(f.summary).c_str());
  }
  return 0;
}

}  // namespace qbench::cli
