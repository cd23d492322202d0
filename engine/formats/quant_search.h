// Scale searches shared by the block quantizers (legacy_quants.cc, k_quants.cc). Internal to
// engine/formats; not part of the public interface.
//
// They follow ggml-quants.c's searches of the same names: greedy, comparing float sums, so the
// order of operations and the strictness of every comparison are part of the result (compiled
// with -ffp-contract=off, see quant_util.h). All weights are non-negative; a weight of zero
// removes the value from the fit.
#pragma once

#include <cstdint>

namespace qbench::quant_detail {

// Symmetric fit x_i ~ scale * l_i, l_i in [-nmax, nmax-1], stored as L[i] = l_i + nmax: the
// rounding of 19 trial scales around -nmax / (signed max-magnitude value) whose weighted
// least-squares scale explains most of sum w x^2 wins (ggml's make_qx_quants, rmse_type 1).
// Weights `qw[i]`, or x_i^2 when qw is nullptr. Returns the scale (0 for an all-zero group).
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, const float* qw);

// Asymmetric fit x_i ~ scale * L_i - the_min, L_i in [0, nmax], minimising sum w_i |error|^p
// (p = 2, or 1 when use_mad): the min/max rounding, then nstep+1 trial inverse scales
// (rmin + rdelta*is + nmax) / (max - min), each refitted by weighted least squares for scale and
// min (the min clamped to <= 0), keeping the smallest weighted error (ggml's make_qkx2_quants;
// with importance-derived weights and use_mad false it is what make_qkx3_quants computes).
// Returns the scale; *the_min >= 0 is subtracted. Laux is scratch of n values.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad);

// Fit of non-negative values (sub-block scales or mins) as scale * L_i, L_i in [0, nmax]: the best
// of 9 trial scales by weighted squared error, then up to 5 rounds of coordinate descent on the
// weighted least-squares scale (ggml's make_qp_quants). Returns the scale (0 when max < 1e-15).
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights);

}  // namespace qbench::quant_detail
