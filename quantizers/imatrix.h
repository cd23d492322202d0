// Importance matrices (llama.cpp's imatrix): per linear weight, the mean of x_j^2 over the
// calibration tokens for every input column j. The quantizers read `tensors` (the means) by GGUF
// tensor name; a tensor without an entry is quantized without one, as llama-quantize does.
//
// Three file forms, told apart by their content (read_imatrix):
//   - llama.cpp's GGUF imatrix (llama-imatrix's default since 2025): general.type "imatrix",
//     imatrix.datasets (array of strings), imatrix.chunk_count, imatrix.chunk_size (u32), and per
//     entry two F32 tensors "<name>.in_sum2" (Σ x_j^2, [cols]) and "<name>.counts" ([1], the
//     tokens summed). The mean is in_sum2 / counts in float, an entry with count 0 is all 1, as
//     llama-quantize computes them. Entries with several counts (one per MoE expert) are refused.
//   - llama.cpp's legacy binary .dat: int32 n_entries, then per entry int32 name length, the name,
//     int32 ncall, int32 nval, nval floats (the mean times ncall); optionally int32 chunk count,
//     int32 length and the dataset name. The mean is value / ncall in float (ncall > 0).
//   - qbench's JSON (docs/schemes.md): {"format": "qbench-imatrix", "version": 1, "source": "...",
//     "n_tokens": N, "tensors": {"blk.0.attn_q.weight": [c0, c1, ...], ...}}.
// write_imatrix writes GGUF for a path ending in ".gguf" and JSON otherwise. The GGUF keeps each
// entry's sum and count where they are known (from a GGUF file read, or from qbench imatrix), so
// llama-imatrix can merge it with others; reading it back gives the float quotient, as
// llama-quantize does.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace qbench::quant {

struct Imatrix {
  std::string source;    // what it was computed on (the datasets, joined with ", ")
  int64_t n_tokens = 0;  // the largest token count of an entry (0: unknown)
  std::map<std::string, std::vector<float>> tensors;  // mean x_j^2 per input column
  // Per entry, when known: Σ x_j^2 and the tokens summed (llama.cpp's in_sum2 and counts).
  std::map<std::string, std::vector<float>> sums;
  std::map<std::string, float> counts;
  int64_t chunk_count = 0;  // windows (llama.cpp's chunks) and tokens per window, 0 when unknown
  int64_t chunk_size = 0;
  std::string format;  // what it was read from: "json", "gguf" or "dat" (empty: made here)

  nlohmann::json to_json() const;
};

// Throws qbench::Error naming the file (and the entry) on a malformed file, a value that is not a
// finite non-negative number, or a file that is none of the three forms.
Imatrix read_imatrix(const std::string& path);
// Atomic; GGUF for "*.gguf", qbench's JSON otherwise.
void write_imatrix(const Imatrix& im, const std::string& path);

}  // namespace qbench::quant
