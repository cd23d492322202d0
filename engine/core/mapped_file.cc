#include "engine/core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <vector>

#include "engine/core/error.h"

namespace qbench {

namespace {

const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// Errors that are the machine's, not the input's: disk full, quota, hardware, resources.
bool is_io_failure(int err) {
  return err == ENOSPC || err == EDQUOT || err == EIO || err == EFBIG || err == ENOMEM || err == EMFILE ||
         err == ENFILE;
}

[[noreturn]] void throw_open_error(const std::string& msg, int err) {
  if (is_io_failure(err)) throw IoError(msg + ": " + std::strerror(err));
  throw Error(msg + ": " + std::strerror(err));
}

}  // namespace

int open_regular_file(const std::string& path) {
  // O_NONBLOCK: opening a FIFO for reading must not wait for a writer; cleared again below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw_open_error(path + ": cannot open", errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw IoError(path + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file (it is " + std::string(file_kind(st.st_mode)) + ")");
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

MappedFile::MappedFile(const std::string& path) : path_(path) {
  const int fd = open_regular_file(path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw IoError(path + ": cannot stat: " + std::strerror(err));
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw IoError(path + ": cannot map: " + std::strerror(err));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void read_file_chunks(const std::string& path, const std::function<void(const char*, size_t)>& consume,
                      const char* what) {
  const int fd = open_regular_file(path);
  std::vector<char> buf(size_t(1) << 20);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      throw IoError(path + ": " + what + ": " + std::strerror(err));
    }
    consume(buf.data(), size_t(n));
  }
  ::close(fd);
}

std::string read_file(const std::string& path) {
  std::string out;
  read_file_chunks(path, [&](const char* p, size_t n) { out.append(p, n); });
  return out;
}

OutputFile::OutputFile(const std::string& path) : path_(path), target_(path) {
  if (path.empty()) throw Error("empty output path");
  struct stat lst {};
  if (::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
    char* real = ::realpath(path.c_str(), nullptr);
    if (real == nullptr) {
      const int err = errno;
      std::string link(4096, '\0');
      const ssize_t n = ::readlink(path.c_str(), link.data(), link.size());
      link.resize(n > 0 ? size_t(n) : 0);
      throw Error(path + ": is a symbolic link to '" + link + "', which cannot be resolved (" + std::strerror(err) +
                  "); create the target first or write to another path");
    }
    target_ = real;
    std::free(real);
  }
  struct stat st {};
  const bool exists = ::stat(target_.c_str(), &st) == 0;
  if (exists && S_ISDIR(st.st_mode)) throw Error(path + ": is a directory");
  if (exists && !S_ISREG(st.st_mode)) {
    // Devices and FIFOs: write through; renaming a temporary over them would replace the node.
    through_ = true;
    fd_ = ::open(target_.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) throw_open_error(path + ": cannot open for writing", errno);
    return;
  }
  tmp_ = target_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw_open_error(path + ": cannot create " + tmp_, errno);
  if (exists) (void)::fchmod(fd_, st.st_mode & 07777);  // keep the replaced file's permissions
}

OutputFile::~OutputFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
}

void OutputFile::write(const void* data, size_t n) {
  QB_ASSERT(fd_ >= 0);
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < n) {
    const ssize_t k = ::write(fd_, p + done, n - done);
    if (k < 0) {
      if (errno == EINTR) continue;
      throw IoError(path_ + ": write failed: " + std::strerror(errno));
    }
    done += size_t(k);
  }
}

void OutputFile::commit() {
  QB_ASSERT(fd_ >= 0);
  const int fd = fd_;
  fd_ = -1;
  if (through_) {
    if (::close(fd) != 0) throw IoError(path_ + ": write failed: " + std::strerror(errno));
    return;
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    throw IoError(path_ + ": cannot flush: " + std::strerror(err));
  }
  if (::close(fd) != 0) throw IoError(path_ + ": cannot flush: " + std::strerror(errno));
  if (::rename(tmp_.c_str(), target_.c_str()) != 0) {
    throw IoError(path_ + ": cannot rename temporary file: " + std::strerror(errno));
  }
  tmp_.clear();
}

void write_file_atomic(const std::string& path, std::string_view contents) {
  OutputFile f(path);
  f.write(contents);
  f.commit();
}

}  // namespace qbench
