// Code-book formats: NF4 (bitsandbytes' NormalFloat-4, blocks of 64 with an absmax scale) and
// FP8 E4M3 with one scale per output channel (engine/formats/float_codes.h). Both use the
// format's reference rule: scale = absmax (NF4) or absmax / 448 (FP8), nearest code.
#include "engine/core/error.h"
#include "engine/formats/float_codes.h"
#include "quantizers/packing.h"
#include "quantizers/registry.h"

namespace qbench::quant {
namespace {

PackedTensor quantize_nf4(const WeightView& w, const SchemeSpec&) {
  check_row_multiple(w, kQKNf4, "nf4 block size");
  return pack_with_reference(w, type_traits(TensorType::NF4));
}

PackedTensor quantize_fp8(const WeightView& w, const SchemeSpec&) {
  return pack_with_reference(w, type_traits(TensorType::FP8_E4M3));
}

}  // namespace

void register_codebooks(Registry& r) {
  r.add(Method{"nf4", "bitsandbytes NormalFloat-4: 16 normal-quantile levels, blocks of 64, fp16 absmax (4.25 bits/weight)",
               {}, "", "", quantize_nf4, std::nullopt});
  r.add(Method{"fp8", "OCP FP8 E4M3 (max 448, no infinities), fp32 scale per output channel = absmax/448",
               {}, "", "", quantize_fp8, std::nullopt});
}

}  // namespace qbench::quant
