// GGUF (ggml) storage types as schemes: the block types q4_0 ... q6_K with ggml's reference
// quantizers (bit-exact with llama-quantize without an importance matrix), and the plain casts
// f32 / fp16 / bf16.
//
// With an importance matrix (qbench quantize --imatrix F or --calib F; CalibUse::Optional) the
// types that llama.cpp quantizes with one (q4_0, q4_1, q5_0, q5_1, q2_K .. q6_K) use their
// importance-weighted quantizer (TypeTraits::quantize_row_weighted, llama.cpp's
// quantize_row_*_impl with quant_weights); q8_0 and the casts ignore it, as llama.cpp does. The
// llama.cpp mixes (Q4_K_M, ...) resolve to these same methods per tensor, so they use it too.
//
// Fallbacks are llama-quantize's (llama-quant.cpp, tensor_type_fallback): when the row length is
// not a multiple of 256, q6_K -> q8_0, q5_K -> q5_1, q4_K -> q5_0, q3_K / q2_K -> q4_0, and
// f16 when even that block does not divide the row. The legacy types have no fallback there
// (llama-quantize stops), so here they are an error that suggests an f16 override.
#include <optional>
#include <string>

#include "engine/core/error.h"
#include "quantizers/packing.h"
#include "quantizers/registry.h"

namespace qbench::quant {
namespace {

std::optional<TensorType> llama_fallback(TensorType t) {
  switch (t) {
    case TensorType::Q2_K:
    case TensorType::Q3_K: return TensorType::Q4_0;
    case TensorType::Q4_K: return TensorType::Q5_0;
    case TensorType::Q5_K: return TensorType::Q5_1;
    case TensorType::Q6_K: return TensorType::Q8_0;
    case TensorType::IQ4_XS: return TensorType::IQ4_NL;
    default: return std::nullopt;
  }
}

// `importance`: the imatrix row of the tensor (w.cols values) or nullptr. It also reaches a
// fallback type when that has a weighted quantizer (llama-quantize passes it to the fallback too).
PackedTensor quantize_ggml_weighted(const WeightView& w, const SchemeSpec& spec, const float* importance) {
  const TypeTraits* t = &type_traits(*registry().method(spec).ggml_type);
  std::string note;
  if (w.cols % t->block_size != 0) {
    const auto fb = llama_fallback(t->type);
    if (!fb) {
      throw Error(std::string(w.name) + ": row length " + std::to_string(w.cols) + " is not a multiple of the " +
                  std::string(t->name) + " block size " + std::to_string(t->block_size) +
                  " and llama-quantize has no fallback for it; keep the tensor in f16 (e.g. --tensor-type '" +
                  std::string(w.name) + "=f16')");
    }
    note = std::string(t->name) + " -> ";
    t = &type_traits(*fb);
    if (w.cols % t->block_size != 0) {
      note += std::string(t->name) + " -> ";
      t = &type_traits(TensorType::F16);
    }
    note += std::string(t->name) + " (" + std::to_string(w.cols) + " columns)";
    if (importance && !t->quantize_row_weighted) note += ", imatrix unused";
  }
  PackedTensor p = pack_with_reference(w, *t, t->quantize_row_weighted ? importance : nullptr);
  p.note = note;
  return p;
}

PackedTensor quantize_ggml(const WeightView& w, const SchemeSpec& spec) { return quantize_ggml_weighted(w, spec, nullptr); }

// plan_model never hands a `keep` tensor to a quantizer: it keeps the source's bytes.
PackedTensor quantize_keep(const WeightView&, const SchemeSpec&) {
  QB_ASSERT(false && "keep is resolved by plan_model");
  return {};
}

PackedTensor quantize_ggml_calib(const WeightView& w, const SchemeSpec& spec, const CalibContext& ctx) {
  QB_ASSERT(!ctx.importance || int64_t(ctx.importance->size()) == w.cols);
  return quantize_ggml_weighted(w, spec, ctx.importance ? ctx.importance->data() : nullptr);
}

}  // namespace

void register_gguf_types(Registry& r) {
  struct Entry {
    TensorType type;
    const char* name;
    const char* summary;
  };
  const Entry entries[] = {
      {TensorType::F32, "f32", "copy as 32-bit float (no quantization)"},
      {TensorType::F16, "fp16", "IEEE half precision, round to nearest even (ggml f16)"},
      {TensorType::BF16, "bf16", "bfloat16, round to nearest even (ggml bf16)"},
      {TensorType::Q8_0, "q8_0", "ggml q8_0: blocks of 32, fp16 scale, 8.5 bits/weight"},
      {TensorType::Q5_1, "q5_1", "ggml q5_1: blocks of 32, fp16 scale and min, 6 bits/weight"},
      {TensorType::Q5_0, "q5_0", "ggml q5_0: blocks of 32, fp16 scale, 5.5 bits/weight"},
      {TensorType::Q4_1, "q4_1", "ggml q4_1: blocks of 32, fp16 scale and min, 5 bits/weight"},
      {TensorType::Q4_0, "q4_0", "ggml q4_0: blocks of 32, fp16 scale, 4.5 bits/weight"},
      {TensorType::Q6_K, "q6_K", "ggml k-quant q6_K: 256-value super-blocks, 6.5625 bits/weight (fallback q8_0)"},
      {TensorType::Q5_K, "q5_K", "ggml k-quant q5_K: 5.5 bits/weight (fallback q5_1)"},
      {TensorType::Q4_K, "q4_K", "ggml k-quant q4_K: 4.5 bits/weight (fallback q5_0)"},
      {TensorType::Q3_K, "q3_K", "ggml k-quant q3_K: 3.4375 bits/weight (fallback q4_0)"},
      {TensorType::Q2_K, "q2_K", "ggml k-quant q2_K: 2.625 bits/weight (fallback q4_0)"},
      {TensorType::IQ4_NL, "iq4_nl", "ggml iq4_nl: blocks of 32, fp16 scale, 16-value non-linear code book, 4.5 bits/weight"},
      {TensorType::IQ4_XS, "iq4_xs", "ggml iq4_xs: iq4_nl's code book, 6-bit scales per 32 in 256-value super-blocks, 4.25 bits/weight (fallback iq4_nl)"},
  };
  for (const Entry& e : entries) {
    Method m{e.name, e.summary, {}, "", "", quantize_ggml, e.type};
    if (type_traits(e.type).quantize_row_weighted) {
      m.summary += "; importance-weighted with --imatrix / --calib";
      m.calib = CalibUse::Optional;
      m.quantize_calib = quantize_ggml_calib;
    }
    r.add(std::move(m));
  }
  r.add(Alias{"f16", "fp16", "ggml's name for fp16"});
  // What llama-bench measures: the file as it is. The default of `qbench bench`.
  Method keep{"keep", "every tensor as stored in the model file (no re-quantization; bench's default)", {}, "", "",
              quantize_keep, std::nullopt};
  keep.whole_model = true;
  r.add(std::move(keep));
}

}  // namespace qbench::quant
