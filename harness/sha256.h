// SHA-256 (FIPS 180-4), used for content-addressed result caching: model files, texts and
// cache keys. Incremental: update() any number of times, then hex_digest().
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace qbench {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::array<uint8_t, 32> digest();  // finalizes; the object must not be updated afterwards
  std::string hex_digest();

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buf_len_ = 0;
  uint64_t total_bytes_ = 0;
  bool finished_ = false;
};

std::string sha256_hex(std::string_view data);
// Hash of a file's contents (read in 1 MiB pieces); throws qbench::Error naming the file.
std::string sha256_file(const std::string& path);
// A model's identity: sha256_file for a file; for a Hugging Face folder, the hash over its
// *.json and *.safetensors files (name and content hash of each, in name order).
std::string sha256_model(const std::string& path);

}  // namespace qbench
