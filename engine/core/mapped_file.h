// Read-only memory map of a whole file (RAII). Model weights are read through it without a copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace qbench {

class MappedFile {
 public:
  // Throws qbench::Error naming the path when the file cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole file into a string; throws qbench::Error naming the path on failure.
std::string read_file(const std::string& path);

// Writes `contents` to `path` atomically: a temporary file in the same folder, fsync, rename.
// Either the old file or the complete new one is there afterwards, never a partial one.
void write_file_atomic(const std::string& path, std::string_view contents);

}  // namespace qbench
