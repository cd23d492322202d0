#include "engine/core/utf8.h"

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"

namespace qbench {

std::optional<size_t> find_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c >> 5) == 0x6) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c >> 4) == 0xE) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c >> 3) == 0x1E) {
      len = 4;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] >> 6) != 0x2) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    const bool overlong = (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::nullopt;
}

std::string read_text_file(const std::string& path) {
  std::string text = read_file(path);
  if (text.empty()) throw Error(path + ": text file is empty");
  if (const size_t nul = text.find('\0'); nul != std::string::npos) {
    throw Error(path + ": not a text file (NUL byte at offset " + std::to_string(nul) + ")");
  }
  if (auto bad = find_invalid_utf8(text)) {
    throw Error(path + ": not valid UTF-8 (bad byte sequence at offset " + std::to_string(*bad) + ")");
  }
  return text;
}

}  // namespace qbench
