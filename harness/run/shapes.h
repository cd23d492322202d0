// Random-weight models with the published dimensions of real architectures, built in memory
// (no file) so that `qbench bench --shape NAME` measures speed at realistic sizes. Weights are
// uniform with standard deviation 0.02 (values do not change the speed of any kernel); there is
// no tokenizer. Sources of the dimensions: each model's config.json on Hugging Face
// (TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T, meta-llama/Llama-3.2-1B, Qwen/Qwen2.5-0.5B).
#pragma once

#include <string>
#include <vector>

#include "engine/model/model.h"

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

}  // namespace qbench::run
