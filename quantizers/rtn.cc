// RTN: round-to-nearest into qbench's integer formats (engine/formats/int_quants.h).
//
// Scales: symmetric d = max|w| / (2^(N-1) - 1), the textbook rule (codes -qmax..qmax);
// asymmetric d = (max - min) / (2^N - 1) over [min(w, 0), max(w, 0)] with an integer zero point
// z = round(-min / d), so that 0.0 is exact. Scales are rounded to fp16 before the codes are
// chosen, so the codes are the nearest ones for the scale actually stored.
//
// clip=mse: for each group (or row, or the whole tensor) try the range shrunk by
// r = 1.00, 0.99, ..., 0.50 (51 ratios, step 0.01) and keep the ratio with the smallest squared
// weight error, ties to the larger ratio. r = 1.00 is exactly the unclipped rule and is tried
// first, so clip=mse never has a larger error than clip=none.
#include <tbb/parallel_for.h>

#include <algorithm>
#include <string>

#include "engine/core/error.h"
#include "engine/formats/int_quants.h"
#include "quantizers/registry.h"

namespace qbench::quant {
namespace {

constexpr int kClipSteps = 51;  // ratios 1.00 down to 0.50
float clip_ratio(int step) { return 1.0f - 0.01f * float(step); }

struct Extremes {
  float mn = 0.0f, mx = 0.0f;
};
Extremes extremes(const float* x, int64_t n) {
  Extremes e;
  for (int64_t i = 0; i < n; ++i) {
    e.mn = std::min(e.mn, x[i]);
    e.mx = std::max(e.mx, x[i]);
  }
  return e;
}

// Parameters for one group of values: the min/max rule, or the MSE-best clipped variant.
IntParams group_params(const IntFormat& f, const float* x, int64_t n, bool mse) {
  const Extremes e = extremes(x, n);
  IntParams best = int_params_from_range(f, e.mn, e.mx, 1.0f);
  if (!mse) return best;
  double best_err = int_sq_error(f, x, n, best);
  for (int s = 1; s < kClipSteps; ++s) {
    const IntParams p = int_params_from_range(f, e.mn, e.mx, clip_ratio(s));
    const double err = int_sq_error(f, x, n, p);
    if (err < best_err) {
      best_err = err;
      best = p;
    }
  }
  return best;
}

// One scale for the whole tensor (the same header written into every row of the row format).
IntParams tensor_params(const IntFormat& f, const WeightView& w, bool mse) {
  const Extremes e = extremes(w.data, w.rows * w.cols);
  IntParams best = int_params_from_range(f, e.mn, e.mx, 1.0f);
  if (!mse) return best;
  auto error_of = [&](IntParams p) {
    std::vector<double> per_row(size_t(w.rows));
    tbb::parallel_for(int64_t(0), w.rows, [&](int64_t r) {
      per_row[size_t(r)] = int_sq_error(f, w.data + r * w.cols, w.cols, p);
    });
    double sum = 0;
    for (double v : per_row) sum += v;  // fixed order: deterministic for any thread count
    return sum;
  };
  double best_err = error_of(best);
  for (int s = 1; s < kClipSteps; ++s) {
    const IntParams p = int_params_from_range(f, e.mn, e.mx, clip_ratio(s));
    const double err = error_of(p);
    if (err < best_err) {
      best_err = err;
      best = p;
    }
  }
  return best;
}

PackedTensor quantize_rtn(const WeightView& w, const SchemeSpec& spec) {
  const std::string& g = spec.get("group");
  IntFormat f;
  f.bits = spec.get_int("bits");
  f.sym = spec.get_bool("sym");
  f.group = (g == "channel" || g == "tensor") ? 0 : std::stoi(g);
  const bool per_tensor = g == "tensor";
  const bool mse = spec.get("clip") == "mse";
  const TypeTraits& t = type_traits(int_format_type(f));
  if (f.per_row()) {
    check_row_multiple(w, t.block_size, "rtn int" + std::to_string(f.bits) + " per-" + g + " packing unit of");
  } else {
    check_row_multiple(w, f.group, "rtn group size");
  }
  check_range(w, t.max_abs_input, t.name);
  PackedTensor out;
  out.type = t.type;
  const size_t rb = row_bytes(t, w.cols);
  out.bytes.resize(size_t(w.rows) * rb);
  const IntParams shared = per_tensor ? tensor_params(f, w, mse) : IntParams{};
  tbb::parallel_for(int64_t(0), w.rows, [&](int64_t r) {
    const float* x = w.data + r * w.cols;
    uint8_t* dst = out.bytes.data() + size_t(r) * rb;
    if (f.per_row()) {
      int_pack(f, x, w.cols, per_tensor ? shared : group_params(f, x, w.cols, mse), dst);
      return;
    }
    for (int64_t c = 0; c < w.cols; c += f.group) dst += int_pack(f, x + c, f.group, group_params(f, x + c, f.group, mse), dst);
  });
  return out;
}

}  // namespace

void register_rtn(Registry& r) {
  r.add(Method{
      "rtn",
      "round to nearest into N-bit integers with an fp16 scale per group / row / tensor (textbook min-max rule)",
      {
          {"bits", "4", "bits per code", {}, 2, 8},
          {"group", "128", "values per scale along the row: 32, 64, 128, channel (one per output row), tensor",
           {"32", "64", "128", "channel", "tensor"}},
          {"sym", "true", "true: d = max|w|/(2^(N-1)-1); false: min/max range with a uint8 zero point", {"true", "false"}},
          {"clip", "none", "mse: shrink the range by the ratio in 1.00..0.50 (step 0.01) that minimises the weight MSE",
           {"none", "mse"}},
      },
      "bits",
      "int",
      quantize_rtn,
      std::nullopt,
  });
  for (int b = 2; b <= 8; ++b) {
    const std::string n = "int" + std::to_string(b);
    if (b == 8) {
      r.add(Alias{n, "rtn:int8,group=channel", "rtn:int8,group=channel: 8-bit symmetric, one scale per output channel"});
    } else {
      r.add(Alias{n, "rtn:" + n, "rtn:" + n + " (groups of 128 by default)"});
    }
  }
}

}  // namespace qbench::quant
