// How close decode runs to the memory bound: the machine's memory read bandwidth (a short
// streaming probe) and the weight bytes one decoded token reads. Decode of a model larger than
// the last-level cache streams every multiplied matrix once per token, so
//   weight GB/s = weight bytes per token x decode tokens/s
// and that divided by the probe's bandwidth is the fraction of the memory bound reached.
// Units: bytes; GB = 1e9 bytes.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/model/model.h"

namespace qbench::run {

// Weight bytes one decoded token reads, as stored (packed bytes, scales and zero points included):
// every layer's multiplied matrices (q, k, v, o, gate, up, down), the whole output head (the
// logits of every vocabulary entry; the token embedding matrix when tied), and one row of the
// token embedding (the lookup of the token; counted also when tied, as a separate read). Not
// counted: norms and biases (F32 vectors, well under 0.1% of the weights) and the KV cache (it
// grows with the position; at the short contexts of a speed run it is small beside the weights).
struct DecodeWeightBytes {
  size_t layers = 0;         // sum over layers of wq, wk, wv, wo, w_gate, w_up, w_down
  size_t output = 0;         // the output head
  size_t embedding_row = 0;  // one row of the token embedding
  size_t total() const { return layers + output + embedding_row; }
  nlohmann::json to_json() const;
};
DecodeWeightBytes decode_weight_bytes(const Model& model);

struct BandwidthOptions {
  size_t buffer_bytes = size_t(512) << 20;  // 512 MiB: 16x a 32 MiB L3, so passes stream from DRAM
  int threads = 0;                          // 0: one per core
  int min_passes = 3;
  int max_passes = 10;
  double pass_seconds = 0.5;  // no new pass starts after this long (min_passes always run)
};

// Read bandwidth of one process: the buffer is written once (first touch, in parallel, which
// also faults its pages in), then summed as 64-bit integers pass after pass, each thread of a
// TBB arena of `threads` reading a fixed contiguous slice; the best pass is the bandwidth
// (llama-bench, STREAM and the like report the best too: slower passes are interference).
// Takes well under a second for 512 MiB on a machine streaming > 5 GB/s.
struct ReadBandwidth {
  size_t buffer_bytes = 0;
  int threads = 0;
  std::vector<double> pass_bytes_per_second;  // each pass, in order
  double best_bytes_per_second = 0;           // max of the passes
  double median_bytes_per_second = 0;
  double seconds = 0;  // the whole probe, writing the buffer included
  uint64_t checksum = 0;  // the sum read (keeps the passes from being optimised away)
  nlohmann::json to_json() const;
};
// Throws qbench::Error when the buffer cannot be allocated.
ReadBandwidth measure_read_bandwidth(const BandwidthOptions& options);

// The decode figures derived from the two: {weight_bytes_per_token, weight_gb_per_s (at the
// median decode rate), fraction_of_read_bandwidth (null without a probe), what (the bytes counted)}.
nlohmann::json decode_bandwidth_json(const DecodeWeightBytes& bytes, double decode_tokens_per_second,
                                     const ReadBandwidth* probe);

}  // namespace qbench::run
