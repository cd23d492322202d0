// The RTN rules of qbench's integer formats, shared by the algorithms that write into them
// (rtn.cc, gptq.cc, awq.cc): the per-group parameter choice, and dequant(quant(.)) of a matrix.
#pragma once

#include <cstdint>

#include "engine/formats/int_quants.h"
#include "quantizers/spec.h"

namespace qbench::quant {

inline constexpr int kClipSteps = 51;  // clip=mse ratios 1.00 down to 0.50, step 0.01
inline float clip_ratio(int step) { return 1.0f - 0.01f * float(step); }

// Parameters of one group (or row) of `n` values: the min/max rule, or with `mse` the clip ratio
// in 1.00..0.50 with the smallest squared error, weighted by `importance[i]` when given (an
// imatrix: mean x_i^2 of the input channel the value multiplies). Ties go to the larger ratio.
IntParams rtn_group_params(const IntFormat& f, const float* x, int64_t n, bool mse, const float* importance = nullptr);

// The integer format of an rtn-like spec (options bits, group, sym).
IntFormat int_format_of_spec(const SchemeSpec& spec);

// y = dequant(quant(w)) row by row with the RTN rule of `f` (group params by rtn_group_params);
// w, y row-major rows x cols (may alias).
void rtn_fake_quant(const IntFormat& f, bool mse, const float* w, int64_t rows, int64_t cols, float* y);

}  // namespace qbench::quant
