// Helpers shared by the generator translation units (not part of the public interface).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "datasets/example.h"
#include "engine/core/rng.h"

namespace qbench::gen {

inline Example make_item(const std::string& task, uint64_t seed, int64_t index) {
  Example e;
  e.task = task;
  e.id = task + "-" + std::to_string(seed) + "-" + std::to_string(index);
  return e;
}

// Runs `one(rng, item)` `count` times on the stream of (seed, task); `one` fills context,
// target, answer, choices, meta.
template <typename Fn>
std::vector<Example> generate_items(const std::string& task, int64_t count, uint64_t seed, Fn one) {
  std::vector<Example> out;
  if (count <= 0) return out;
  out.reserve(static_cast<size_t>(count));
  Rng rng(seed, task);
  for (int64_t i = 0; i < count; ++i) {
    Example e = make_item(task, seed, i);
    one(rng, e);
    out.push_back(std::move(e));
  }
  return out;
}

inline int num_digits(int64_t n) {
  int d = 1;
  while (n >= 10) {
    n /= 10;
    ++d;
  }
  return d;
}

}  // namespace qbench::gen
