#include "quantizers/registry.h"

#include <algorithm>
#include <cmath>
#include <mutex>

#include "engine/core/error.h"

namespace qbench::quant {
namespace {

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower((unsigned char)x) == std::tolower((unsigned char)y);
         });
}

}  // namespace

bool Registry::taken(std::string_view name) const { return find(name) || find_alias(name); }

void Registry::add(Method m) {
  QB_ASSERT(m.quantize != nullptr);
  QB_ASSERT((m.calib == CalibUse::None) == (m.quantize_calib == nullptr && m.prepare == nullptr));
  if (taken(m.name)) throw Error("quantizer registry: duplicate name '" + m.name + "'");
  methods_.push_back(std::move(m));
}

void Registry::add(Alias a) {
  if (taken(a.name)) throw Error("quantizer registry: duplicate name '" + a.name + "'");
  aliases_.push_back(std::move(a));
}

const Method* Registry::find(std::string_view name) const {
  for (const auto& m : methods_) {
    if (iequal(m.name, name)) return &m;
  }
  return nullptr;
}

const Alias* Registry::find_alias(std::string_view name) const {
  for (const auto& a : aliases_) {
    if (iequal(a.name, name)) return &a;
  }
  return nullptr;
}

const Method& Registry::method(const SchemeSpec& spec) const {
  const Method* m = find(spec.method);
  QB_ASSERT(m != nullptr);
  return *m;
}

const Registry& registry() {
  static Registry r;
  static std::once_flag once;
  std::call_once(once, [] { register_builtins(r); });
  return r;
}

void register_builtins(Registry& r) {
  register_rtn(r);
  register_hqq(r);
  register_codebooks(r);
  register_gguf_types(r);
  register_gptq(r);
  register_awq(r);
  register_smoothquant(r);
  register_qat(r);
}

void check_range(const WeightView& w, float limit, std::string_view format) {
  for (int64_t r = 0; r < w.rows; ++r) {
    const float* row = w.data + r * w.cols;
    for (int64_t c = 0; c < w.cols; ++c) {
      if (!(std::fabs(row[c]) <= limit)) {
        throw Error(std::string(w.name) + ": value " + std::to_string(row[c]) + " at row " + std::to_string(r) +
                    ", column " + std::to_string(c) + " is too large for " + std::string(format) +
                    " (its scales hold magnitudes up to " + std::to_string(limit) + ")");
      }
    }
  }
}

void check_row_multiple(const WeightView& w, int64_t multiple, std::string_view what) {
  if (w.cols % multiple != 0) {
    throw Error(std::string(w.name) + ": " + std::string(what) + " " + std::to_string(multiple) +
                " does not divide the row length " + std::to_string(w.cols));
  }
}

void check_weights_finite(const WeightView& w) {
  QB_ASSERT(w.rows > 0 && w.cols > 0 && w.data != nullptr);
  for (int64_t r = 0; r < w.rows; ++r) {
    const float* row = w.data + r * w.cols;
    for (int64_t c = 0; c < w.cols; ++c) {
      if (!std::isfinite(row[c])) {
        throw Error(std::string(w.name) + ": weight at row " + std::to_string(r) + ", column " + std::to_string(c) +
                    " is " + std::to_string(row[c]) + " (NaN or infinite weights cannot be quantized)");
      }
    }
  }
}

PackedTensor quantize_tensor(const WeightView& w, const SchemeSpec& spec) {
  check_weights_finite(w);
  PackedTensor p = registry().method(spec).quantize(w, spec);
  QB_ASSERT(p.bytes.size() == size_t(w.rows) * row_bytes(type_traits(p.type), w.cols));
  return p;
}

}  // namespace qbench::quant
