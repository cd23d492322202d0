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
#include "quantizers/int_rules.h"
#include "quantizers/registry.h"

namespace qbench::quant {
namespace {

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

double weighted_sq_error(const IntFormat& f, const float* x, int64_t n, IntParams p, const float* importance,
                         float* scratch) {
  if (!importance) return int_sq_error(f, x, n, p);
  int_fake_quant(f, x, n, p, scratch);
  double err = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = double(x[i]) - double(scratch[i]);
    err += double(importance[i]) * e * e;
  }
  return err;
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

PackedTensor quantize_rtn_weighted(const WeightView& w, const SchemeSpec& spec, const float* importance) {
  const std::string& g = spec.get("group");
  const IntFormat f = int_format_of_spec(spec);
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
      int_pack(f, x, w.cols, per_tensor ? shared : rtn_group_params(f, x, w.cols, mse, importance), dst);
      return;
    }
    for (int64_t c = 0; c < w.cols; c += f.group) {
      dst += int_pack(f, x + c, f.group, rtn_group_params(f, x + c, f.group, mse, importance ? importance + c : nullptr), dst);
    }
  });
  return out;
}

PackedTensor quantize_rtn(const WeightView& w, const SchemeSpec& spec) { return quantize_rtn_weighted(w, spec, nullptr); }

// With an importance matrix (qbench quantize --imatrix / --calib): clip=mse weighs each value's
// squared error by its input channel's mean x^2, as llama.cpp's quant_weights do.
PackedTensor quantize_rtn_calib(const WeightView& w, const SchemeSpec& spec, const CalibContext& ctx) {
  return quantize_rtn_weighted(w, spec, ctx.importance ? ctx.importance->data() : nullptr);
}

}  // namespace

IntParams rtn_group_params(const IntFormat& f, const float* x, int64_t n, bool mse, const float* importance) {
  const Extremes e = extremes(x, n);
  IntParams best = int_params_from_range(f, e.mn, e.mx, 1.0f);
  if (!mse) return best;
  std::vector<float> scratch(importance ? size_t(n) : 0);
  double best_err = weighted_sq_error(f, x, n, best, importance, scratch.data());
  for (int s = 1; s < kClipSteps; ++s) {
    const IntParams p = int_params_from_range(f, e.mn, e.mx, clip_ratio(s));
    const double err = weighted_sq_error(f, x, n, p, importance, scratch.data());
    if (err < best_err) {
      best_err = err;
      best = p;
    }
  }
  return best;
}

IntFormat int_format_of_spec(const SchemeSpec& spec) {
  const std::string& g = spec.get("group");
  IntFormat f;
  f.bits = spec.get_int("bits");
  f.sym = spec.get_bool("sym");
  f.group = (g == "channel" || g == "tensor") ? 0 : std::stoi(g);
  return f;
}

void rtn_fake_quant(const IntFormat& f, bool mse, const float* w, int64_t rows, int64_t cols, float* y) {
  tbb::parallel_for(int64_t(0), rows, [&](int64_t r) {
    const float* x = w + r * cols;
    float* out = y + r * cols;
    const int64_t g = f.per_row() ? cols : f.group;
    for (int64_t c = 0; c < cols; c += g) int_fake_quant(f, x + c, g, rtn_group_params(f, x + c, g, mse), out + c);
  });
}

void register_rtn(Registry& r) {
  Method rtn{
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
      CalibUse::Optional,
      quantize_rtn_calib,
  };
  rtn.uses_importance = [](const SchemeSpec& spec) { return spec.get("clip") == "mse"; };
  r.add(std::move(rtn));
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
