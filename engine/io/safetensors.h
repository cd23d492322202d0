// safetensors reading and writing (Hugging Face's weight format, huggingface/safetensors).
//
// File layout:
//   u64 N (little-endian) | N bytes of JSON header | data section
// The header is a JSON object: one entry per tensor,
//   "name": {"dtype": "BF16", "shape": [rows, cols], "data_offsets": [begin, end]}
// with offsets relative to the data section, plus an optional "__metadata__" object of string
// values. Shapes are row-major (the last dimension varies fastest), so a [rows, cols] matrix is
// exactly ggml's layout with ne[0] = cols.
//
// The reader memory-maps the file and validates the header before anything is used, as the
// reference implementation does: header length within the file (and at most 100 MB), a JSON
// object, known dtypes, non-negative shapes whose byte size equals the range, ranges inside the
// data section that neither overlap nor leave gaps, and a data section that ends where the
// last tensor does. Every failure is a qbench::Error naming the file and, where there is one,
// the tensor.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/core/mapped_file.h"

namespace qbench::safetensors {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2 };
const char* dtype_name(DType t);
size_t dtype_size(DType t);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // row-major: shape.back() is the row length
  size_t begin = 0;            // offset into the data section
  size_t nbytes = 0;
  const uint8_t* data = nullptr;  // into the mapping

  int64_t n_elements() const;
};

class File {
 public:
  // Maps and validates `path`. Throws qbench::Error ("<path>: <problem>") on malformed input.
  static std::unique_ptr<File> open(const std::string& path);

  const std::string& path() const { return map_->path(); }
  const std::shared_ptr<MappedFile>& mapping() const { return map_; }
  size_t data_offset() const { return data_offset_; }
  // Tensors in the order of their data offsets.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  File() = default;
  std::shared_ptr<MappedFile> map_;
  size_t data_offset_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Builds a safetensors file. Tensors are laid out in the order they are added; the header is
// padded with spaces to a multiple of 8 bytes, as the reference writer does.
class Writer {
 public:
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // `data` must hold exactly product(shape) * dtype_size(dtype) bytes; it is copied.
  void add_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, std::span<const uint8_t> data);
  // The same, taking ownership of `data` instead of copying it.
  void add_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, std::vector<uint8_t>&& data);
  // Writes atomically (engine/core/mapped_file.h OutputFile); returns the bytes written.
  size_t write(const std::string& path) const;

 private:
  struct Pending {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;
  };
  std::vector<Pending> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace qbench::safetensors
