#include "datasets/text.h"

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/core/utf8.h"

namespace qbench {

std::string read_text_file(const std::string& path) {
  std::string text = read_file(path);
  if (text.empty()) throw Error(path + ": text file is empty");
  if (auto bad = find_invalid_utf8(text)) {
    throw Error(path + ": not valid UTF-8 (bad byte sequence at offset " + std::to_string(*bad) + ")");
  }
  return text;
}

}  // namespace qbench
