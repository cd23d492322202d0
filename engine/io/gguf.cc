#include "engine/io/gguf.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "engine/core/error.h"

namespace qbench::gguf {
namespace {

constexpr uint32_t kMaxDims = 4;             // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 4;          // arrays of arrays are legal; bound the recursion
constexpr uint64_t kMaxStringBytes = 1u << 30;

// Bounds-checked little-endian cursor over the mapped header.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* p, size_t n) : path_(path), p_(p), n_(n) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(path_ + ": " + what + " (at byte " + std::to_string(pos_) + ")");
  }
  void need(uint64_t bytes, const char* what) const {
    if (bytes > n_ - pos_) {
      fail(std::string("file is truncated: ") + what + " needs " + std::to_string(bytes) +
           " bytes, " + std::to_string(n_ - pos_) + " remain");
    }
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    const uint64_t len = read<uint64_t>(what);
    if (len > kMaxStringBytes) fail(std::string(what) + " has implausible length " + std::to_string(len));
    need(len, what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), size_t(len));
    pos_ += size_t(len);
    return s;
  }
  size_t pos() const { return pos_; }
  size_t remaining() const { return n_ - pos_; }

 private:
  const std::string& path_;
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
};

// Smallest encoded size of one value of a type, used to reject absurd counts before allocating.
uint64_t min_encoded_size(ValueType t) {
  switch (t) {
    case ValueType::UINT8: case ValueType::INT8: case ValueType::BOOL: return 1;
    case ValueType::UINT16: case ValueType::INT16: return 2;
    case ValueType::UINT32: case ValueType::INT32: case ValueType::FLOAT32: return 4;
    case ValueType::UINT64: case ValueType::INT64: case ValueType::FLOAT64: case ValueType::STRING: return 8;
    case ValueType::ARRAY: return 12;
  }
  return 1;
}

bool valid_value_type(uint32_t t) { return t <= uint32_t(ValueType::FLOAT64); }

Value read_value(Cursor& c, ValueType type, int depth) {
  Value out;
  out.type = type;
  switch (type) {
    case ValueType::UINT8: out.v = uint64_t(c.read<uint8_t>("uint8 value")); break;
    case ValueType::INT8: out.v = int64_t(c.read<int8_t>("int8 value")); break;
    case ValueType::UINT16: out.v = uint64_t(c.read<uint16_t>("uint16 value")); break;
    case ValueType::INT16: out.v = int64_t(c.read<int16_t>("int16 value")); break;
    case ValueType::UINT32: out.v = uint64_t(c.read<uint32_t>("uint32 value")); break;
    case ValueType::INT32: out.v = int64_t(c.read<int32_t>("int32 value")); break;
    case ValueType::UINT64: out.v = c.read<uint64_t>("uint64 value"); break;
    case ValueType::INT64: out.v = c.read<int64_t>("int64 value"); break;
    case ValueType::FLOAT32: out.v = double(c.read<float>("float32 value")); break;
    case ValueType::FLOAT64: out.v = c.read<double>("float64 value"); break;
    case ValueType::BOOL: {
      const uint8_t b = c.read<uint8_t>("bool value");
      if (b > 1) c.fail("bool value is " + std::to_string(b) + ", not 0 or 1");
      out.v = b != 0;
      break;
    }
    case ValueType::STRING: out.v = c.read_string("string value"); break;
    case ValueType::ARRAY: {
      if (depth >= kMaxArrayNesting) c.fail("arrays nested too deeply");
      const uint32_t et = c.read<uint32_t>("array element type");
      if (!valid_value_type(et)) c.fail("array has unknown element type " + std::to_string(et));
      const uint64_t n = c.read<uint64_t>("array length");
      const ValueType elem = ValueType(et);
      if (n > c.remaining() / min_encoded_size(elem)) {
        c.fail("file is truncated or corrupt: an array of " + std::to_string(n) + " " +
               value_type_name(elem) + " values does not fit");
      }
      Array arr;
      arr.elem_type = elem;
      arr.items.reserve(size_t(n));
      for (uint64_t i = 0; i < n; ++i) arr.items.push_back(read_value(c, elem, depth + 1));
      out.v = std::move(arr);
      break;
    }
  }
  return out;
}

bool mul_overflows(int64_t a, int64_t b, int64_t* out) { return __builtin_mul_overflow(a, b, out); }

}  // namespace

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::UINT8: return "uint8";
    case ValueType::INT8: return "int8";
    case ValueType::UINT16: return "uint16";
    case ValueType::INT16: return "int16";
    case ValueType::UINT32: return "uint32";
    case ValueType::INT32: return "int32";
    case ValueType::FLOAT32: return "float32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::UINT64: return "uint64";
    case ValueType::INT64: return "int64";
    case ValueType::FLOAT64: return "float64";
  }
  return "unknown";
}

std::optional<int64_t> Value::as_int() const {
  if (const auto* u = std::get_if<uint64_t>(&v)) {
    if (*u > uint64_t(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return int64_t(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  return std::nullopt;
}

std::optional<double> Value::as_float() const {
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (auto i = as_int()) return double(*i);
  return std::nullopt;
}

int64_t TensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

std::unique_ptr<File> File::open(const std::string& path) {
  std::unique_ptr<File> f(new File());
  f->map_ = std::make_shared<MappedFile>(path);
  const uint8_t* base = f->map_->data();
  const size_t size = f->map_->size();
  Cursor c(path, base, size);

  if (size < 4) throw Error(path + ": not a GGUF file: only " + std::to_string(size) + " bytes");
  if (std::memcmp(base, "GGUF", 4) != 0) {
    std::string magic;
    for (int i = 0; i < 4; ++i) {
      const char ch = char(base[i]);
      magic += (ch >= 32 && ch < 127) ? std::string(1, ch) : "\\x" + std::to_string(uint8_t(ch));
    }
    throw Error(path + ": not a GGUF file: magic is '" + magic + "', expected 'GGUF'");
  }
  c.read<uint32_t>("magic");
  f->version_ = c.read<uint32_t>("version");
  if (f->version_ != 2 && f->version_ != 3) {
    const uint32_t v = f->version_;
    const bool swapped = v != 0 && (v & 0xFFFF) == 0;
    throw Error(path + ": unsupported GGUF version " + std::to_string(v) +
                (swapped ? " (a big-endian file?)" : "") + "; qbench reads versions 2 and 3");
  }
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each key/value takes at least 13 bytes and each tensor info at least 28.
  if (n_kv > c.remaining() / 13) c.fail("file is truncated or corrupt: metadata count " + std::to_string(n_kv) + " does not fit");
  if (n_tensors > c.remaining() / 28) c.fail("file is truncated or corrupt: tensor count " + std::to_string(n_tensors) + " does not fit");

  f->kv_.reserve(size_t(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string("metadata key");
    const uint32_t t = c.read<uint32_t>("metadata value type");
    if (!valid_value_type(t)) c.fail("metadata key '" + key + "' has unknown value type " + std::to_string(t));
    Value v = read_value(c, ValueType(t), 0);
    if (f->kv_index_.count(key)) c.fail("duplicate metadata key '" + key + "'");
    f->kv_index_[key] = f->kv_.size();
    f->kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const Value* a = f->find("general.alignment")) {
    const auto al = a->as_int();
    if (!al || *al <= 0 || (*al & (*al - 1)) != 0 || *al > (1 << 20)) {
      throw Error(path + ": general.alignment must be a power of two, got " +
                  (al ? std::to_string(*al) : std::string("a non-integer")));
    }
    f->alignment_ = size_t(*al);
  }

  f->tensors_.reserve(size_t(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    t.name = c.read_string("tensor name");
    const uint32_t n_dims = c.read<uint32_t>("tensor dimension count");
    if (n_dims == 0 || n_dims > kMaxDims) {
      c.fail("tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
    }
    int64_t n_el = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>("tensor dimension");
      if (ne == 0 || ne > uint64_t(std::numeric_limits<int64_t>::max()) || mul_overflows(n_el, int64_t(ne), &n_el)) {
        c.fail("tensor '" + t.name + "' has invalid dimension " + std::to_string(ne));
      }
      t.dims.push_back(int64_t(ne));
    }
    const uint32_t type_id = c.read<uint32_t>("tensor type");
    t.traits = find_type_traits(type_id);
    if (t.traits == nullptr) c.fail("tensor '" + t.name + "' has unknown type id " + std::to_string(type_id));
    t.type = t.traits->type;
    t.offset = c.read<uint64_t>("tensor offset");
    if (t.dims[0] % t.traits->block_size != 0) {
      c.fail("tensor '" + t.name + "' row length " + std::to_string(t.dims[0]) +
             " is not a multiple of the " + std::string(t.traits->name) + " block size " +
             std::to_string(t.traits->block_size));
    }
    // row_bytes() includes the per-row header of qbench's per-row formats.
    int64_t nbytes = 0;
    if (t.dims[0] > (int64_t(1) << 40) ||
        mul_overflows(n_el / t.dims[0], int64_t(row_bytes(*t.traits, t.dims[0])), &nbytes)) {
      c.fail("tensor '" + t.name + "' is too large");
    }
    t.nbytes = size_t(nbytes);
    if (f->tensor_index_.count(t.name)) c.fail("duplicate tensor name '" + t.name + "'");
    f->tensor_index_[t.name] = f->tensors_.size();
    f->tensors_.push_back(std::move(t));
  }

  const size_t header_end = c.pos();
  f->data_offset_ = (header_end + f->alignment_ - 1) / f->alignment_ * f->alignment_;
  if (n_tensors > 0 && f->data_offset_ > size) {
    throw Error(path + ": file is truncated: data section would start at byte " +
                std::to_string(f->data_offset_) + " of " + std::to_string(size));
  }
  for (auto& t : f->tensors_) {
    if (t.offset % f->alignment_ != 0) {
      throw Error(path + ": tensor '" + t.name + "' offset " + std::to_string(t.offset) +
                  " is not a multiple of the alignment " + std::to_string(f->alignment_));
    }
    const uint64_t begin = uint64_t(f->data_offset_) + t.offset;
    if (t.offset > size || begin > size || t.nbytes > size - begin) {
      throw Error(path + ": tensor '" + t.name + "' data [" + std::to_string(begin) + ", " +
                  std::to_string(begin + t.nbytes) + ") lies outside the file (" +
                  std::to_string(size) + " bytes); the file may be truncated");
    }
    t.data = base + begin;
  }
  return f;
}

const Value* File::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const TensorInfo* File::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::optional<int64_t> File::get_int(const std::string& key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  auto i = v->as_int();
  if (!i) {
    throw Error(path() + ": metadata key '" + key + "' has type " + value_type_name(v->type) +
                ", expected an integer");
  }
  return i;
}

std::optional<double> File::get_float(const std::string& key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  auto d = v->as_float();
  if (!d) {
    throw Error(path() + ": metadata key '" + key + "' has type " + value_type_name(v->type) +
                ", expected a number");
  }
  return d;
}

std::optional<std::string> File::get_string(const std::string& key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->as_string() == nullptr) {
    throw Error(path() + ": metadata key '" + key + "' has type " + value_type_name(v->type) +
                ", expected a string");
  }
  return *v->as_string();
}

std::optional<bool> File::get_bool(const std::string& key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->as_bool() == nullptr) {
    throw Error(path() + ": metadata key '" + key + "' has type " + value_type_name(v->type) +
                ", expected a bool");
  }
  return *v->as_bool();
}

int64_t File::require_int(const std::string& key) const {
  auto v = get_int(key);
  if (!v) throw Error(path() + ": missing metadata key '" + key + "'");
  return *v;
}

std::string File::require_string(const std::string& key) const {
  auto v = get_string(key);
  if (!v) throw Error(path() + ": missing metadata key '" + key + "'");
  return *v;
}

const Array& File::require_array(const std::string& key, ValueType elem) const {
  const Value* v = find(key);
  if (v == nullptr) throw Error(path() + ": missing metadata key '" + key + "'");
  const Array* a = v->as_array();
  if (a == nullptr || a->elem_type != elem) {
    throw Error(path() + ": metadata key '" + key + "' is not an array of " + value_type_name(elem));
  }
  return *a;
}

// ---------------------------------------------------------------------------------------------
// Writer

void Writer::set(const std::string& key, Value value) {
  if (key == "general.alignment") {
    auto a = value.as_int();
    QB_ASSERT(a && *a > 0 && (*a & (*a - 1)) == 0);
    alignment_ = size_t(*a);
  }
  for (auto& [k, v] : kv_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  kv_.emplace_back(key, std::move(value));
}

void Writer::remove(const std::string& key) {
  std::erase_if(kv_, [&](const auto& kv) { return kv.first == key; });
}

void Writer::remove_tensor(const std::string& name) {
  std::erase_if(tensors_, [&](const PendingTensor& t) { return t.name == name; });
}

void Writer::add_tensor(const std::string& name, std::vector<int64_t> dims, TensorType type,
                        std::span<const uint8_t> data) {
  const TypeTraits& tr = type_traits(type);
  QB_ASSERT(!dims.empty() && dims.size() <= kMaxDims && dims[0] % tr.block_size == 0);
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  QB_ASSERT(data.size() == size_t(n / dims[0]) * row_bytes(tr, dims[0]));
  for (const auto& t : tensors_) QB_ASSERT(t.name != name);
  tensors_.push_back({name, std::move(dims), type, std::vector<uint8_t>(data.begin(), data.end())});
}

namespace {

// Buffers small writes (keys, dims) and passes tensor data through to the output file.
class ByteSink {
 public:
  explicit ByteSink(OutputFile& f) : f_(f) {}
  ~ByteSink() = default;
  void bytes(const void* p, size_t n) {
    written_ += n;
    if (buf_.size() + n > kBuffer) flush();
    if (n >= kBuffer) {
      f_.write(p, n);
    } else {
      buf_.append(static_cast<const char*>(p), n);
    }
  }
  template <typename T>
  void pod(T v) { bytes(&v, sizeof v); }
  void str(const std::string& s) {
    pod<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void pad_to(size_t alignment) {
    static const uint8_t zeros[64] = {};
    size_t pad = (alignment - written_ % alignment) % alignment;
    while (pad > 0) {
      const size_t k = pad < sizeof zeros ? pad : sizeof zeros;
      bytes(zeros, k);
      pad -= k;
    }
  }
  void flush() {
    f_.write(buf_);
    buf_.clear();
  }
  size_t written() const { return written_; }

 private:
  static constexpr size_t kBuffer = size_t(1) << 20;
  OutputFile& f_;
  std::string buf_;
  size_t written_ = 0;
};

void write_value(ByteSink& s, const Value& v) {
  switch (v.type) {
    case ValueType::UINT8: s.pod<uint8_t>(uint8_t(std::get<uint64_t>(v.v))); break;
    case ValueType::INT8: s.pod<int8_t>(int8_t(std::get<int64_t>(v.v))); break;
    case ValueType::UINT16: s.pod<uint16_t>(uint16_t(std::get<uint64_t>(v.v))); break;
    case ValueType::INT16: s.pod<int16_t>(int16_t(std::get<int64_t>(v.v))); break;
    case ValueType::UINT32: s.pod<uint32_t>(uint32_t(std::get<uint64_t>(v.v))); break;
    case ValueType::INT32: s.pod<int32_t>(int32_t(std::get<int64_t>(v.v))); break;
    case ValueType::UINT64: s.pod<uint64_t>(std::get<uint64_t>(v.v)); break;
    case ValueType::INT64: s.pod<int64_t>(std::get<int64_t>(v.v)); break;
    case ValueType::FLOAT32: s.pod<float>(float(std::get<double>(v.v))); break;
    case ValueType::FLOAT64: s.pod<double>(std::get<double>(v.v)); break;
    case ValueType::BOOL: s.pod<uint8_t>(std::get<bool>(v.v) ? 1 : 0); break;
    case ValueType::STRING: s.str(std::get<std::string>(v.v)); break;
    case ValueType::ARRAY: {
      const Array& a = std::get<Array>(v.v);
      s.pod<uint32_t>(uint32_t(a.elem_type));
      s.pod<uint64_t>(a.items.size());
      for (const Value& item : a.items) {
        QB_ASSERT(item.type == a.elem_type);
        write_value(s, item);
      }
      break;
    }
  }
}

}  // namespace

size_t Writer::write(const std::string& path) const {
  OutputFile f(path);  // atomic for regular files; devices and FIFOs are written through
  ByteSink s(f);
  s.bytes("GGUF", 4);
  s.pod<uint32_t>(3);
  s.pod<uint64_t>(tensors_.size());
  s.pod<uint64_t>(kv_.size());
  for (const auto& [k, v] : kv_) {
    s.str(k);
    s.pod<uint32_t>(uint32_t(v.type));
    write_value(s, v);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    s.str(t.name);
    s.pod<uint32_t>(uint32_t(t.dims.size()));
    for (int64_t d : t.dims) s.pod<uint64_t>(uint64_t(d));
    s.pod<uint32_t>(uint32_t(t.type));
    s.pod<uint64_t>(offset);
    offset += (t.data.size() + alignment_ - 1) / alignment_ * alignment_;
  }
  s.pad_to(alignment_);
  for (const auto& t : tensors_) {
    s.bytes(t.data.data(), t.data.size());
    s.pad_to(alignment_);
  }
  s.flush();
  f.commit();
  return s.written();
}

}  // namespace qbench::gguf
