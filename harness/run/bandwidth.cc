#include "harness/run/bandwidth.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <new>
#include <thread>

#include "engine/core/error.h"

namespace qbench::run {
namespace {

// 64-bit integer sum with four independent accumulators (integer addition is associative, so the
// compiler vectorises it with the baseline ISA's 16-byte loads; one core of a current x86 issues
// them far faster than DRAM delivers).
uint64_t sum_words(const uint64_t* p, size_t n) {
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    a0 += p[i];
    a1 += p[i + 1];
    a2 += p[i + 2];
    a3 += p[i + 3];
  }
  for (; i < n; ++i) a0 += p[i];
  return a0 + a1 + a2 + a3;
}

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

nlohmann::json DecodeWeightBytes::to_json() const {
  return {{"layers", layers}, {"output", output}, {"embedding_row", embedding_row}, {"total", total()}};
}

DecodeWeightBytes decode_weight_bytes(const Model& model) {
  DecodeWeightBytes b;
  for (const auto& [name, w] : model.linear_weights()) {
    if (w != &model.output) b.layers += w->bytes();
  }
  b.output = model.output.bytes();
  b.embedding_row = model.tok_embd.row_bytes();
  return b;
}

nlohmann::json ReadBandwidth::to_json() const {
  return {{"best_gb_per_s", best_bytes_per_second / 1e9}, {"median_gb_per_s", median_bytes_per_second / 1e9},
          {"passes_gb_per_s", [&] {
             nlohmann::json a = nlohmann::json::array();
             for (double v : pass_bytes_per_second) a.push_back(v / 1e9);
             return a;
           }()},
          {"buffer_bytes", buffer_bytes}, {"threads", threads}, {"seconds", seconds},
          {"method", "sum of a buffer of 64-bit integers, contiguous slice per thread, best pass"}};
}

ReadBandwidth measure_read_bandwidth(const BandwidthOptions& o) {
  QB_ASSERT(o.buffer_bytes >= sizeof(uint64_t) && o.min_passes >= 1 && o.max_passes >= o.min_passes);
  const auto t_start = std::chrono::steady_clock::now();
  const size_t n = o.buffer_bytes / sizeof(uint64_t);
  // Uninitialised: the parallel fill below is the first touch, so pages are spread over the threads.
  std::unique_ptr<uint64_t[]> buf(new (std::nothrow) uint64_t[n]);
  if (!buf) throw Error("bandwidth probe: cannot allocate " + std::to_string(o.buffer_bytes >> 20) + " MiB");
  ReadBandwidth r;
  r.buffer_bytes = n * sizeof(uint64_t);
  r.threads = o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  // Pieces of 1 MiB; the static partitioner hands each thread one contiguous run of them.
  constexpr size_t kPiece = (size_t(1) << 20) / sizeof(uint64_t);
  const size_t n_pieces = (n + kPiece - 1) / kPiece;
  std::vector<uint64_t> piece_sums(n_pieces);
  uint64_t* const data = buf.get();
  auto for_pieces = [&](auto&& fn) {
    tbb::parallel_for(
        tbb::blocked_range<size_t>(0, n_pieces),
        [&](const tbb::blocked_range<size_t>& range) {
          for (size_t k = range.begin(); k < range.end(); ++k) fn(k, k * kPiece, std::min(n, (k + 1) * kPiece));
        },
        tbb::static_partitioner());
  };
  tbb::task_arena arena(r.threads);
  arena.execute([&] {
    for_pieces([&](size_t, size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) data[i] = i;
    });
    using clock = std::chrono::steady_clock;
    const auto t_passes = clock::now();
    for (int pass = 0; pass < o.max_passes; ++pass) {
      if (pass >= o.min_passes && std::chrono::duration<double>(clock::now() - t_passes).count() > o.pass_seconds) break;
      const auto t0 = clock::now();
      for_pieces([&](size_t k, size_t begin, size_t end) { piece_sums[k] = sum_words(data + begin, end - begin); });
      const double s = std::chrono::duration<double>(clock::now() - t0).count();
      r.pass_bytes_per_second.push_back(double(r.buffer_bytes) / std::max(s, 1e-9));
      for (uint64_t v : piece_sums) r.checksum += v;
    }
  });
  r.best_bytes_per_second = *std::max_element(r.pass_bytes_per_second.begin(), r.pass_bytes_per_second.end());
  r.median_bytes_per_second = median_of(r.pass_bytes_per_second);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return r;
}

nlohmann::json decode_bandwidth_json(const DecodeWeightBytes& bytes, double decode_tokens_per_second,
                                     const ReadBandwidth* probe) {
  const double rate = double(bytes.total()) * decode_tokens_per_second;
  return {{"weight_bytes_per_token", bytes.total()},
          {"weight_bytes", bytes.to_json()},
          {"weight_gb_per_s", rate / 1e9},
          {"read_bandwidth_gb_per_s", probe ? nlohmann::json(probe->best_bytes_per_second / 1e9) : nlohmann::json(nullptr)},
          {"fraction_of_read_bandwidth",
           probe && probe->best_bytes_per_second > 0 ? nlohmann::json(rate / probe->best_bytes_per_second)
                                                     : nlohmann::json(nullptr)},
          {"what", "packed bytes of every layer matrix and the output head plus one token-embedding row, per token, "
                   "times the median decode tokens/s; norms, biases and the KV cache not counted"}};
}

}  // namespace qbench::run
