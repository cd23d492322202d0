// Plain text inputs (perplexity corpora, calibration text).
#pragma once

#include <string>

namespace qbench {

// Reads a UTF-8 text file. Throws qbench::Error naming the file when it is missing, empty, or
// not valid UTF-8 (with the byte offset of the first bad sequence).
std::string read_text_file(const std::string& path);

}  // namespace qbench
