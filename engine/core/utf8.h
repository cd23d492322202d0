// UTF-8 helpers shared by the tokenizer and the text loaders.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qbench {

// Length in bytes of the UTF-8 sequence starting with byte `lead` (1 for invalid lead bytes,
// so that a scan always advances).
inline size_t utf8_len(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

// Byte offset of the first invalid UTF-8 sequence in `s`, or nullopt when all of it is valid
// (overlong forms, surrogates and code points above U+10FFFF count as invalid).
std::optional<size_t> find_invalid_utf8(std::string_view s);

// Reads a UTF-8 text file (perplexity text, calibration text). Throws qbench::Error naming the
// file when it is missing, not a regular file (FIFO, device), empty, contains a NUL byte, or is
// not valid UTF-8 (with the byte offset of the first bad sequence): a binary file is refused.
std::string read_text_file(const std::string& path);

}  // namespace qbench
