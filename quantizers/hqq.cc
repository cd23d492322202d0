// HQQ, half-quadratic quantization (Badri & Shaji 2023): calibration-free; per group it chooses
// the zero point and the scale that minimise an l_p norm (p < 1) of the weight error instead of
// the squared error, so a few large errors (the outliers a min/max range is stretched by) cost
// less than many small ones. The l_p problem is solved by half-quadratic splitting: with an extra
// variable e standing for the error,
//   min_{z,d,e} ||e||_p^p + beta/2 ||e - (w - d (q - z))||^2,   q = clamp(round(w / d + z)),
// alternating (1) q for the current (d, z); (2) e = shrink_p(w - d (q - z)), the generalised
// soft threshold sign(r) max(|r| - |r|^(p-1) / beta, 0); (3) the least-squares (d, z) of
// w - e ~ d (q - z) with q fixed: z = mean(q - (w - e) / d) (HQQ's update), then
// d = sum (w - e)(q - z) / sum (q - z)^2; and beta *= kappa. Defaults are the paper's
// (p 0.7, beta 10, kappa 1.01, 20 iterations).
//
// Into qbench's asymmetric integer formats (engine/formats/int_quants.h: x = d (u - z) with an
// fp16 d and an integer zero point z in 0 .. 2^N - 1), so every iterate is projected onto what
// the format stores (fp16 d, z rounded and clamped) and scored by the l_p error of exactly those
// stored values; the start is RTN's min/max rule, and the best projected iterate is kept, so
// HQQ's stored l_p error is never above RTN's. HQQ's reference code keeps a float zero point and
// stops at the first iteration whose error grows; here the iterations run to the end (a rounded
// zero point makes the error step, not descend smoothly).
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/half.h"
#include "engine/formats/int_quants.h"
#include "quantizers/int_rules.h"
#include "quantizers/registry.h"

namespace qbench::quant {
namespace {

struct HqqOptions {
  int iters = 20;
  double p = 0.7, beta = 10.0, kappa = 1.01;
};

double lp_error(const IntFormat& f, const float* x, int64_t n, IntParams p, double lp, float* scratch) {
  int_fake_quant(f, x, n, p, scratch);
  double err = 0.0;
  for (int64_t i = 0; i < n; ++i) err += std::pow(std::fabs(double(x[i]) - double(scratch[i])), lp);
  return err;
}

// The stored form of a float (d, z): fp16 d, z rounded into 0 .. 2^N - 1. nullopt when d is not
// a positive finite fp16 number.
std::optional<IntParams> project(const IntFormat& f, double d, double z) {
  if (!(d > 0) || !std::isfinite(d)) return std::nullopt;
  const uint16_t h = fp32_to_fp16(float(d));
  const float back = fp16_to_fp32(h);
  if (!(back > 0) || !std::isfinite(back)) return std::nullopt;
  IntParams p;
  p.d = h;
  p.zero = uint8_t(std::clamp(std::lround(z), 0L, long(f.levels() - 1)));
  return p;
}

IntParams hqq_group_params(const IntFormat& f, const float* x, int64_t n, const HqqOptions& o) {
  IntParams best = int_params_minmax(f, x, n);
  const double d0 = fp16_to_fp32(best.d);
  if (!(d0 > 0)) return best;  // an all-zero group: nothing to improve
  std::vector<float> scratch(static_cast<size_t>(n));
  std::vector<double> target(static_cast<size_t>(n));
  std::vector<int> q(static_cast<size_t>(n));
  double best_err = lp_error(f, x, n, best, o.p, scratch.data());
  double d = d0, z = best.zero, beta = o.beta;
  const double qmax = f.levels() - 1;
  for (int it = 0; it < o.iters; ++it) {
    // (1) codes for the current float (d, z); (2) the shrunk error; the target w - e.
    for (int64_t i = 0; i < n; ++i) {
      const double u = std::clamp(std::nearbyint(double(x[i]) / d + z), 0.0, qmax);
      q[size_t(i)] = int(u);
      const double r = double(x[i]) - d * (u - z);
      const double a = std::fabs(r);
      const double shrunk = a > 0 ? std::max(a - std::pow(a, o.p - 1.0) / beta, 0.0) : 0.0;
      target[size_t(i)] = double(x[i]) - std::copysign(shrunk, r);
    }
    // (3) zero point (HQQ's closed form), then the scale for it.
    double zsum = 0.0;
    for (int64_t i = 0; i < n; ++i) zsum += q[size_t(i)] - target[size_t(i)] / d;
    z = zsum / double(n);
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double c = q[size_t(i)] - z;
      num += target[size_t(i)] * c;
      den += c * c;
    }
    if (den > 0 && num > 0) d = num / den;
    beta *= o.kappa;
    if (const auto p = project(f, d, z)) {
      const double err = lp_error(f, x, n, *p, o.p, scratch.data());
      if (err < best_err) {
        best_err = err;
        best = *p;
      }
    }
  }
  return best;
}

HqqOptions options_of(const SchemeSpec& spec) {
  HqqOptions o;
  o.iters = spec.get_int("iters");
  o.p = spec.get_double("lp");
  o.beta = spec.get_double("beta");
  o.kappa = spec.get_double("kappa");
  if (!(o.p > 0)) throw Error("hqq: lp must be in (0, 1], got " + spec.get("lp"));
  if (!(o.beta > 0)) throw Error("hqq: beta must be positive, got " + spec.get("beta"));
  return o;
}

PackedTensor quantize_hqq(const WeightView& w, const SchemeSpec& spec) {
  const std::string& g = spec.get("group");
  IntFormat f;
  f.bits = spec.get_int("bits");
  f.sym = false;
  f.group = g == "channel" ? 0 : std::stoi(g);
  const TypeTraits& t = type_traits(int_format_type(f));
  if (f.per_row()) {
    check_row_multiple(w, t.block_size, "hqq int" + std::to_string(f.bits) + " per-channel packing unit of");
  } else {
    check_row_multiple(w, f.group, "hqq group size");
  }
  check_range(w, t.max_abs_input, t.name);
  const HqqOptions o = options_of(spec);
  PackedTensor out;
  out.type = t.type;
  const size_t rb = row_bytes(t, w.cols);
  out.bytes.resize(size_t(w.rows) * rb);
  tbb::parallel_for(int64_t(0), w.rows, [&](int64_t r) {
    const float* x = w.data + r * w.cols;
    uint8_t* dst = out.bytes.data() + size_t(r) * rb;
    const int64_t gsize = f.per_row() ? w.cols : f.group;
    for (int64_t c = 0; c < w.cols; c += gsize) dst += int_pack(f, x + c, gsize, hqq_group_params(f, x + c, gsize, o), dst);
  });
  return out;
}

}  // namespace

void register_hqq(Registry& r) {
  r.add(Method{
      "hqq",
      "HQQ (Badri & Shaji 2023): zero point and scale per group minimising the l_p (p<1) weight error by half-quadratic "
      "splitting; calibration-free; asymmetric integer formats",
      {
          {"bits", "4", "bits per code", {}, 2, 8},
          {"group", "64", "values per scale and zero point along the row: 32, 64, 128, channel", {"32", "64", "128", "channel"}},
          {"iters", "20", "solver iterations", {}, 1, 1000},
          {"lp", "0.7", "p of the l_p norm of the error minimised (0 < p <= 1; the paper's 0.7)", {}, 0, 1, true},
          {"beta", "10", "initial weight of the quadratic coupling (the paper's 10)", {}, 0, 1000000, true},
          {"kappa", "1.01", "factor on beta per iteration (the paper's 1.01)", {}, 1, 100, true},
      },
      "bits",
      "int",
      quantize_hqq,
      std::nullopt,
  });
}

}  // namespace qbench::quant
