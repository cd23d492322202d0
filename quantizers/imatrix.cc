#include "quantizers/imatrix.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/io/gguf.h"

namespace qbench::quant {
namespace {

using nlohmann::json;

constexpr const char* kSumsSuffix = ".in_sum2";
constexpr const char* kCountsSuffix = ".counts";

void check_value(const std::string& path, const std::string& name, float v) {
  if (!std::isfinite(v) || v < 0) {
    throw Error(path + ": imatrix entry " + name + " has a value that is not a finite non-negative number: " +
                std::to_string(v));
  }
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<float> f32_values(const gguf::TensorInfo& t) {
  std::vector<float> v(size_t(t.n_elements()));
  std::memcpy(v.data(), t.data, v.size() * sizeof(float));
  return v;
}

// llama.cpp's GGUF imatrix.
Imatrix read_gguf(const std::string& path) {
  const auto f = gguf::File::open(path);
  Imatrix im;
  im.format = "gguf";
  for (const char* key : {"imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"}) {
    if (f->find(key) == nullptr) {
      throw Error(path + ": a GGUF file without " + key + ": not a llama.cpp imatrix (general.type " +
                  f->get_string("general.type").value_or("missing") + ")");
    }
  }
  const gguf::Array& datasets = f->require_array("imatrix.datasets", gguf::ValueType::STRING);
  for (const gguf::Value& d : datasets.items) im.source += (im.source.empty() ? "" : ", ") + *d.as_string();
  im.chunk_count = f->require_int("imatrix.chunk_count");
  im.chunk_size = f->require_int("imatrix.chunk_size");

  std::map<std::string, std::pair<const gguf::TensorInfo*, const gguf::TensorInfo*>> entries;
  for (const gguf::TensorInfo& t : f->tensors()) {
    if (ends_with(t.name, kSumsSuffix)) {
      entries[t.name.substr(0, t.name.size() - std::strlen(kSumsSuffix))].first = &t;
    } else if (ends_with(t.name, kCountsSuffix)) {
      entries[t.name.substr(0, t.name.size() - std::strlen(kCountsSuffix))].second = &t;
    }
  }
  if (entries.empty()) throw Error(path + ": imatrix has no <name>.in_sum2 / <name>.counts tensors");
  for (const auto& [name, pair] : entries) {
    const auto [sums, counts] = pair;
    if (sums == nullptr || counts == nullptr) {
      throw Error(path + ": imatrix entry " + name + " has " + (sums ? "in_sum2 but no counts" : "counts but no in_sum2"));
    }
    if (sums->type != TensorType::F32 || counts->type != TensorType::F32) {
      throw Error(path + ": imatrix entry " + name + " is not F32");
    }
    const int64_t cols = sums->dims[0];
    const int64_t n_mat = sums->n_elements() / cols;
    if (counts->n_elements() != n_mat) {
      throw Error(path + ": imatrix entry " + name + " has " + std::to_string(counts->n_elements()) + " counts for " +
                  std::to_string(n_mat) + " matrices");
    }
    if (n_mat != 1) {
      throw Error(path + ": imatrix entry " + name + " has one row per expert (" + std::to_string(n_mat) +
                  "): mixture-of-experts models are not supported");
    }
    std::vector<float> s = f32_values(*sums);
    const float count = f32_values(*counts)[0];
    check_value(path, name + kCountsSuffix, count);
    std::vector<float> mean(s.size());
    for (size_t j = 0; j < s.size(); ++j) {
      check_value(path, name + kSumsSuffix, s[j]);
      mean[j] = count > 0.0f ? s[j] / count : 1.0f;  // an entry that never saw a token: all 1
    }
    im.n_tokens = std::max(im.n_tokens, int64_t(count));
    im.tensors[name] = std::move(mean);
    im.sums[name] = std::move(s);
    im.counts[name] = count;
  }
  return im;
}

// Reads the legacy binary layout with bounds checks; nullopt-style errors carry `what`.
class Reader {
 public:
  Reader(const std::string& path, std::span<const uint8_t> b) : path_(path), b_(b) {}
  int32_t i32(const char* what) {
    int32_t v;
    std::memcpy(&v, take(sizeof v, what), sizeof v);
    return v;
  }
  const uint8_t* take(size_t n, const char* what) {
    if (n > b_.size() - at_) {
      throw Error(path_ + ": not an imatrix (neither qbench JSON, llama.cpp GGUF nor legacy .dat): the file ends in " +
                  what + " at byte " + std::to_string(at_));
    }
    const uint8_t* p = b_.data() + at_;
    at_ += n;
    return p;
  }
  size_t left() const { return b_.size() - at_; }

 private:
  std::string path_;
  std::span<const uint8_t> b_;
  size_t at_ = 0;
};

// llama.cpp's legacy .dat.
Imatrix read_dat(const std::string& path, const MappedFile& map) {
  Reader r(path, map.bytes());
  const std::string bad = path + ": not an imatrix (neither qbench JSON, llama.cpp GGUF nor legacy .dat): ";
  Imatrix im;
  im.format = "dat";
  const int32_t n_entries = r.i32("the entry count");
  if (n_entries <= 0 || size_t(n_entries) > map.size() / 12) throw Error(bad + "entry count " + std::to_string(n_entries));
  for (int32_t e = 0; e < n_entries; ++e) {
    const int32_t len = r.i32("a name length");
    if (len <= 0 || len > 4096) throw Error(bad + "entry " + std::to_string(e) + " has a name length of " + std::to_string(len));
    const uint8_t* s = r.take(size_t(len), "a name");
    std::string name(reinterpret_cast<const char*>(s), size_t(len));
    const int32_t ncall = r.i32("a call count");
    const int32_t nval = r.i32("a value count");
    if (nval <= 0 || size_t(nval) > r.left() / sizeof(float)) {
      throw Error(bad + "entry " + name + " has a value count of " + std::to_string(nval));
    }
    if (im.tensors.contains(name)) throw Error(path + ": imatrix entry " + name + " appears twice");
    std::vector<float> v(static_cast<size_t>(nval));
    std::memcpy(v.data(), r.take(v.size() * sizeof(float), "the values"), v.size() * sizeof(float));
    for (float& x : v) {
      check_value(path, name, x);
      if (ncall > 0) x /= float(ncall);
    }
    im.tensors[name] = std::move(v);
  }
  // The newest legacy files end with the chunk count and the dataset's name.
  if (r.left() > 0) {
    im.chunk_count = r.i32("the chunk count");
    const int32_t len = r.i32("the dataset name's length");
    if (len < 0 || size_t(len) != r.left()) {
      throw Error(bad + "the dataset name's length " + std::to_string(len) + " does not match the " +
                  std::to_string(r.left()) + " bytes left");
    }
    const uint8_t* s = r.take(size_t(len), "the dataset name");
    im.source.assign(reinterpret_cast<const char*>(s), size_t(len));
  }
  return im;
}

Imatrix read_json(const std::string& path, const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(path + ": imatrix is not valid JSON: " + e.what());
  }
  if (!j.is_object() || j.value("format", "") != "qbench-imatrix" || j.value("version", 0) != 1) {
    throw Error(path + ": not a qbench imatrix (expected \"format\": \"qbench-imatrix\", \"version\": 1)");
  }
  Imatrix im;
  im.format = "json";
  im.source = j.value("source", "");
  im.n_tokens = j.value("n_tokens", int64_t(0));
  if (!j.contains("tensors") || !j["tensors"].is_object()) throw Error(path + ": imatrix has no \"tensors\" object");
  for (const auto& [name, arr] : j["tensors"].items()) {
    if (!arr.is_array() || arr.empty()) throw Error(path + ": imatrix tensor " + name + " is not a non-empty array");
    std::vector<float> v;
    for (const auto& x : arr) {
      if (!x.is_number() || !std::isfinite(x.get<double>()) || x.get<double>() < 0) {
        throw Error(path + ": imatrix tensor " + name + " has a value that is not a finite non-negative number: " +
                    x.dump());
      }
      v.push_back(x.get<float>());
    }
    im.tensors[name] = std::move(v);
  }
  return im;
}

void write_gguf(const Imatrix& im, const std::string& path) {
  gguf::Writer w;
  w.set("general.type", gguf::Value::str("imatrix"));
  w.set("imatrix.datasets", gguf::Value::array(gguf::ValueType::STRING, {gguf::Value::str(im.source)}));
  w.set("imatrix.chunk_count", gguf::Value::u32(uint32_t(im.chunk_count)));
  w.set("imatrix.chunk_size", gguf::Value::u32(uint32_t(im.chunk_size)));
  for (const auto& [name, mean] : im.tensors) {
    const auto c = im.counts.find(name);
    const float count = c != im.counts.end() ? c->second : float(std::max<int64_t>(im.n_tokens, 1));
    std::vector<float> sums;
    if (const auto s = im.sums.find(name); s != im.sums.end()) {
      sums = s->second;
    } else {
      sums.resize(mean.size());
      for (size_t j = 0; j < mean.size(); ++j) sums[j] = mean[j] * count;
    }
    const auto bytes = [](const std::vector<float>& v) {
      return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float));
    };
    w.add_tensor(name + kSumsSuffix, {int64_t(sums.size())}, TensorType::F32, bytes(sums));
    const std::vector<float> counts{count};
    w.add_tensor(name + kCountsSuffix, {1}, TensorType::F32, bytes(counts));
  }
  w.write(path);
}

}  // namespace

json Imatrix::to_json() const {
  json t = json::object();
  for (const auto& [name, v] : tensors) t[name] = v;
  return {{"format", "qbench-imatrix"}, {"version", 1}, {"source", source}, {"n_tokens", n_tokens}, {"tensors", t}};
}

Imatrix read_imatrix(const std::string& path) {
  const MappedFile map(path);
  const std::string_view text(reinterpret_cast<const char*>(map.data()), map.size());
  if (text.starts_with("GGUF")) return read_gguf(path);  // gguf::File maps the file itself
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && text[first] == '{') return read_json(path, std::string(text));
  return read_dat(path, map);
}

void write_imatrix(const Imatrix& im, const std::string& path) {
  if (ends_with(path, ".gguf")) {
    write_gguf(im, path);
  } else {
    write_file_atomic(path, im.to_json().dump() + "\n");
  }
}

}  // namespace qbench::quant
