// GGUF (versions 2 and 3) reading and writing.
//
// File layout (little-endian), as in ggml's docs/gguf.md:
//   "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//   n_kv   x { string key | u32 value_type | value }
//   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//   padding to `general.alignment` (default 32)
//   data section: each tensor at data_start + offset, offsets aligned to the alignment.
// A string is u64 length + bytes (no terminator); an array is u32 element type | u64 count |
// elements. ne[0] is the row length (the fastest-varying dimension).
//
// The reader memory-maps the file and validates everything it is told before using it: every
// length, count and offset is checked against the file size, so a truncated or corrupt file
// gives a qbench::Error naming the file and the problem, never a read past the end.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "engine/core/mapped_file.h"
#include "engine/formats/types.h"

namespace qbench::gguf {

enum class ValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
const char* value_type_name(ValueType t);

struct Value;
struct Array {
  ValueType elem_type = ValueType::UINT8;
  std::vector<Value> items;
};

// One metadata value. Integers of every width are held as int64/uint64 with their declared
// type kept in `type`, so writing a file back preserves the types exactly.
struct Value {
  ValueType type = ValueType::UINT32;
  std::variant<uint64_t, int64_t, double, bool, std::string, Array> v;

  static Value u32(uint32_t x) { return {ValueType::UINT32, uint64_t(x)}; }
  static Value i32(int32_t x) { return {ValueType::INT32, int64_t(x)}; }
  static Value u64(uint64_t x) { return {ValueType::UINT64, x}; }
  static Value f32(float x) { return {ValueType::FLOAT32, double(x)}; }
  static Value boolean(bool x) { return {ValueType::BOOL, x}; }
  static Value str(std::string x) { return {ValueType::STRING, std::move(x)}; }
  static Value array(ValueType elem, std::vector<Value> items) {
    return {ValueType::ARRAY, Array{elem, std::move(items)}};
  }

  // Typed views; nullopt when the value is not of a compatible kind or out of range.
  std::optional<int64_t> as_int() const;
  std::optional<double> as_float() const;  // integers convert too
  const std::string* as_string() const { return std::get_if<std::string>(&v); }
  const bool* as_bool() const { return std::get_if<bool>(&v); }
  const Array* as_array() const { return std::get_if<Array>(&v); }
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // dims[0] = row length
  TensorType type = TensorType::F32;
  const TypeTraits* traits = nullptr;  // never null after a successful open
  uint64_t offset = 0;                 // relative to the data section
  const uint8_t* data = nullptr;       // into the mapping
  size_t nbytes = 0;

  int64_t n_elements() const;
  int64_t n_rows() const { return n_elements() / dims[0]; }
};

class File {
 public:
  // Maps and parses `path`. Throws qbench::Error ("<path>: <problem>") on any malformed input.
  static std::unique_ptr<File> open(const std::string& path);

  const std::string& path() const { return map_->path(); }
  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  size_t data_offset() const { return data_offset_; }
  size_t file_size() const { return map_->size(); }
  const std::shared_ptr<MappedFile>& mapping() const { return map_; }

  const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
  const Value* find(const std::string& key) const;
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(const std::string& name) const;

  // Typed look-ups. The `require_*` forms throw "<path>: missing metadata key 'k'" or
  // "<path>: metadata key 'k' has type T, expected U"; the others return nullopt when absent.
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<double> get_float(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;
  std::optional<bool> get_bool(const std::string& key) const;
  int64_t require_int(const std::string& key) const;
  std::string require_string(const std::string& key) const;
  const Array& require_array(const std::string& key, ValueType elem) const;

 private:
  File() = default;
  std::shared_ptr<MappedFile> map_;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::vector<std::pair<std::string, Value>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Builds a GGUF file (version 3). Tensors are written in the order they are added.
class Writer {
 public:
  void set(const std::string& key, Value value);  // replaces an existing key in place
  void remove(const std::string& key);
  void remove_tensor(const std::string& name);
  // `data` must hold exactly the bytes the type and dims imply; it is copied.
  void add_tensor(const std::string& name, std::vector<int64_t> dims, TensorType type,
                  std::span<const uint8_t> data);
  // Writes through an OutputFile (atomic for a regular file; devices and FIFOs written through)
  // and returns the bytes written. Throws qbench::Error / qbench::IoError on failure.
  size_t write(const std::string& path) const;
  size_t alignment() const { return alignment_; }

 private:
  struct PendingTensor {
    std::string name;
    std::vector<int64_t> dims;
    TensorType type;
    std::vector<uint8_t> data;
  };
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<PendingTensor> tensors_;
  size_t alignment_ = 32;
};

}  // namespace qbench::gguf
