#include "engine/io/safetensors.h"

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"

namespace qbench::safetensors {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeader = 100'000'000;  // the reference implementation's limit

struct DTypeInfo {
  DType type;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F64, "F64", 8},  {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8},         {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},  {DType::I8, "I8", 1},           {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
};

const DTypeInfo& info(DType t) {
  for (const auto& d : kDTypes) {
    if (d.type == t) return d;
  }
  QB_ASSERT(false);
  return kDTypes[0];
}

// Byte size of a tensor, or throws when it overflows.
size_t checked_bytes(const std::vector<int64_t>& shape, size_t elem, const std::string& where) {
  size_t n = elem;
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(n, size_t(d), &n)) throw Error(where + ": shape is too large");
  }
  return n;
}

}  // namespace

const char* dtype_name(DType t) { return info(t).name; }
size_t dtype_size(DType t) { return info(t).size; }

int64_t TensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::unique_ptr<File> File::open(const std::string& path) {
  std::unique_ptr<File> f(new File());
  f->map_ = std::make_shared<MappedFile>(path);
  const uint8_t* base = f->map_->data();
  const size_t size = f->map_->size();
  if (size < 8) {
    throw Error(path + ": not a safetensors file: " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | base[i];
  if (n > kMaxHeader) {
    throw Error(path + ": safetensors header length " + std::to_string(n) + " exceeds the 100 MB limit (corrupt file?)");
  }
  if (n > size - 8) {
    throw Error(path + ": safetensors header length " + std::to_string(n) + " runs past the end of the " +
                std::to_string(size) + "-byte file (truncated?)");
  }
  const char* text = reinterpret_cast<const char*>(base + 8);
  if (n < 2 || text[0] != '{') throw Error(path + ": safetensors header is not a JSON object");
  json header;
  try {
    header = json::parse(text, text + n);
  } catch (const json::exception& e) {
    throw Error(path + ": safetensors header is not valid JSON (" + std::string(e.what()) + ")");
  }
  if (!header.is_object()) throw Error(path + ": safetensors header is not a JSON object");
  f->data_offset_ = 8 + size_t(n);
  const size_t data_size = size - f->data_offset_;

  for (const auto& [name, entry] : header.items()) {
    const std::string where = path + ": tensor '" + name + "'";
    if (name == "__metadata__") {
      if (!entry.is_object()) throw Error(path + ": __metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) throw Error(path + ": __metadata__ value '" + k + "' is not a string");
        f->metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object()) throw Error(where + " is not an object");
    TensorInfo t;
    t.name = name;
    const auto dt = entry.find("dtype");
    if (dt == entry.end() || !dt->is_string()) throw Error(where + ": missing dtype");
    const std::string dname = dt->get<std::string>();
    const DTypeInfo* di = nullptr;
    for (const auto& d : kDTypes) {
      if (dname == d.name) di = &d;
    }
    if (di == nullptr) throw Error(where + ": unknown dtype '" + dname + "'");
    t.dtype = di->type;
    const auto sh = entry.find("shape");
    if (sh == entry.end() || !sh->is_array()) throw Error(where + ": missing shape");
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t(1) << 40)) {
        throw Error(where + ": shape " + sh->dump() + " is not a list of sizes");
      }
      t.shape.push_back(int64_t(d.get<uint64_t>()));
    }
    const auto off = entry.find("data_offsets");
    if (off == entry.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned()) {
      throw Error(where + ": data_offsets must be [begin, end]");
    }
    const uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      throw Error(where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                  "] lie outside the " + std::to_string(data_size) + "-byte data section" +
                  (end > data_size ? " (truncated file?)" : ""));
    }
    const size_t want = checked_bytes(t.shape, di->size, where);
    if (want != end - begin) {
      throw Error(where + ": " + dname + " shape " + sh->dump() + " needs " + std::to_string(want) +
                  " bytes but data_offsets give " + std::to_string(end - begin));
    }
    t.begin = size_t(begin);
    t.nbytes = size_t(end - begin);
    t.data = base + f->data_offset_ + t.begin;
    f->tensors_.push_back(std::move(t));
  }
  std::sort(f->tensors_.begin(), f->tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.nbytes < b.nbytes;
  });
  size_t pos = 0;
  for (size_t i = 0; i < f->tensors_.size(); ++i) {
    const TensorInfo& t = f->tensors_[i];
    if (t.begin < pos) {
      throw Error(path + ": tensor '" + t.name + "' overlaps tensor '" + f->tensors_[i - 1].name + "' (bytes " +
                  std::to_string(t.begin) + ".." + std::to_string(pos) + " of the data section)");
    }
    if (t.begin > pos) {
      throw Error(path + ": " + std::to_string(t.begin - pos) + " unused bytes before tensor '" + t.name +
                  "' in the data section (corrupt file?)");
    }
    pos = t.begin + t.nbytes;
    f->index_[t.name] = i;
  }
  if (pos != data_size) {
    throw Error(path + ": the data section has " + std::to_string(data_size) + " bytes but its tensors end at " +
                std::to_string(pos));
  }
  return f;
}

const TensorInfo* File::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void Writer::add_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, std::span<const uint8_t> data) {
  add_tensor(name, dtype, std::move(shape), std::vector<uint8_t>(data.begin(), data.end()));
}

void Writer::add_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t>&& data) {
  QB_ASSERT(name != "__metadata__");
  QB_ASSERT(checked_bytes(shape, dtype_size(dtype), name) == data.size());
  for (const auto& t : tensors_) QB_ASSERT(t.name != name);
  tensors_.push_back({name, dtype, std::move(shape), std::move(data)});
}

size_t Writer::write(const std::string& path) const {
  json header = json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  size_t offset = 0;
  for (const auto& t : tensors_) {
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  OutputFile out(path);
  out.write(len, 8);
  out.write(text);
  for (const auto& t : tensors_) out.write(t.data.data(), t.data.size());
  out.commit();
  return 8 + text.size() + offset;
}

}  // namespace qbench::safetensors
