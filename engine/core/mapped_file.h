// Read-only memory map of a whole file (RAII). Model weights are read through it without a copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <functional>
#include <string>
#include <string_view>

namespace qbench {

// Opens `path` for reading and returns the descriptor, after checking that it is a regular file
// (without blocking: a FIFO given as input would otherwise wait forever for a writer).
// Throws qbench::Error naming the path and what it is (FIFO, device, directory) otherwise.
int open_regular_file(const std::string& path);

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
// Streams a regular file through `consume(bytes, n)` in chunks (open_regular_file's checks; a read
// error throws qbench::IoError naming the path and `what`, e.g. "read error while hashing").
void read_file_chunks(const std::string& path, const std::function<void(const char*, size_t)>& consume,
                      const char* what = "read error");

// A whole output file, written once. What `path` names decides how:
//  - a regular file, or nothing yet: a temporary file in the same folder, then fsync and rename
//    in commit(); readers see the old file or the complete new one, never a partial one. An
//    existing file keeps its permission bits;
//  - a symbolic link: resolved, and its final target replaced as above (the link stays a link);
//    a link to a missing file is refused;
//  - anything else but a directory (character or block device, FIFO): opened and written through,
//    without temporary or rename, so `--out /dev/null` leaves /dev/null a device and a FIFO
//    feeds its reader (opening a FIFO waits for a reader, as a shell redirection does);
//  - a directory: refused.
// Failing to open (no such folder, no permission, a directory) throws qbench::Error; failing to
// write, flush or rename (disk full, I/O error) throws qbench::IoError.
class OutputFile {
 public:
  explicit OutputFile(const std::string& path);
  ~OutputFile();  // without commit(): the temporary is removed, the target is untouched
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  // Flushes and, for a regular file, renames the temporary over the target.
  void commit();
  // True when writes go straight to `path` (a device or FIFO).
  bool writes_through() const { return through_; }

 private:
  std::string path_;    // as given (named in messages)
  std::string target_;  // the file replaced: `path_` with symbolic links resolved
  std::string tmp_;     // temporary beside target_ (empty when writing through)
  int fd_ = -1;
  bool through_ = false;
};

// Writes `contents` to `path` through an OutputFile (atomically for regular files).
void write_file_atomic(const std::string& path, std::string_view contents);

}  // namespace qbench
