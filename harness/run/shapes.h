// Random-weight models with the published dimensions of real architectures, built in memory
// (no file) so that `qbench bench --shape NAME` measures speed at realistic sizes. Weights are
// uniform with standard deviation 0.02 (values do not change the speed of any kernel); there is
// no tokenizer. Sources of the dimensions: each model's config.json on Hugging Face
// (TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T, meta-llama/Llama-3.2-1B, Qwen/Qwen2.5-0.5B,
// JackFram/llama-160m).
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "engine/model/model.h"
#include "quantizers/quantize_model.h"

namespace qbench::run {

struct ModelShape {
  std::string name;
  ModelConfig config;
  bool tied_output = false;
  bool qkv_bias = false;  // qwen2: q/k/v projections carry biases
  std::string source;     // where the dimensions come from
};

const std::vector<ModelShape>& model_shapes();
// Throws qbench::Error naming the unknown shape and listing the known ones.
const ModelShape& find_shape(const std::string& name);
// Parameters of the shape (embeddings, the output unless tied, every layer's weights, norms and
// biases), computed from the dimensions without building anything.
int64_t shape_parameters(const ModelShape& shape);
// F32 random weights (deterministic for a seed; tensors filled in parallel). With
// `share_layer_weights` every layer's matrices view the same random draw, so the F32 model takes
// one layer's bytes instead of n_layer: for callers that quantize at once (qbench bench), where
// each layer still gets its own packed copy and the kernels read as many distinct bytes as with
// independent layers. Not for schemes that keep F32 matrices as they are.
Model build_random_model(const ModelShape& shape, uint64_t seed = 1, bool share_layer_weights = false);

// Random weights of `shape` (seed 1) quantized by `scheme`, as `qbench bench --shape` and the speed
// units of an experiment with `speed_shape` measure them: the layers share one F32 draw until each
// is packed into its own copy (unless the scheme keeps F32 matrices), and the F32 bytes not kept
// by the variant are released before this returns. `scheme` must not need calibration text (see
// uncalibrated_equivalent). Fills `report` when given.
Model quantized_random_model(const ModelShape& shape, const std::string& scheme, quant::QuantizeReport* report,
                             const std::atomic<bool>* cancel = nullptr);

// The scheme that writes the same packed formats as `scheme` without calibration text, for
// measuring speed where there is no text (random weights of a shape): `scheme` itself when it
// needs none (GGUF types with an optional importance matrix included); gptq and awq ->
// rtn:intN,group=G,sym=S with the same bits, group and symmetry; smoothquant -> w8a8. Kernel
// time depends on the format and the shapes, not on the values, so the speed is the scheme's.
// Throws qbench::Error naming the scheme for a calibration-based method without such an
// equivalent (one added to the registry without an entry here; a test walks the registry).
std::string uncalibrated_equivalent(const std::string& scheme);

// What a speed number measured at a shape is, for results and tables: "speed measured at
// tinyllama-1.1b shape, random weights", plus " (gptq:... as rtn:..., the same packed format
// without calibration)" when the scheme measured is another (canonical spellings).
std::string speed_shape_label(const std::string& shape, const std::string& scheme, const std::string& measured);

}  // namespace qbench::run
