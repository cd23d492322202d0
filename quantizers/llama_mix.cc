#include "quantizers/llama_mix.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

#include "engine/core/error.h"

namespace qbench::quant {
namespace {

using T = TensorType;
using F = LlamaFtype;

constexpr std::array kFtypes = {
    FtypeInfo{F::Q4_0, "Q4_0", T::Q4_0, 2, "q4_0 everywhere, output q6_K"},
    FtypeInfo{F::Q4_1, "Q4_1", T::Q4_1, 3, "q4_1 everywhere, output q6_K"},
    FtypeInfo{F::Q5_0, "Q5_0", T::Q5_0, 8, "q5_0 everywhere, output q6_K"},
    FtypeInfo{F::Q5_1, "Q5_1", T::Q5_1, 9, "q5_1 everywhere, output q6_K"},
    FtypeInfo{F::Q8_0, "Q8_0", T::Q8_0, 7, "q8_0 everywhere"},
    FtypeInfo{F::Q2_K, "Q2_K", T::Q2_K, 10, "q2_K; attn_v q3_K (q4_K with GQA >= 4), ffn_down and attn_output q3_K, output q6_K"},
    FtypeInfo{F::Q3_K_S, "Q3_K_S", T::Q3_K, 11, "q3_K everywhere, output q6_K"},
    FtypeInfo{F::Q3_K_M, "Q3_K_M", T::Q3_K, 12, "q3_K; attn_v q5_K (first 2) / q4_K, ffn_down q5_K (first 1/16) / q4_K, attn_output q4_K, output q6_K"},
    FtypeInfo{F::Q3_K_L, "Q3_K_L", T::Q3_K, 13, "q3_K; attn_v, ffn_down, attn_output q5_K, output q6_K"},
    FtypeInfo{F::Q4_K_S, "Q4_K_S", T::Q4_K, 14, "q4_K; attn_v (first 4) and ffn_down (first 1/8) q5_K, output q6_K"},
    FtypeInfo{F::Q4_K_M, "Q4_K_M", T::Q4_K, 15, "q4_K; attn_v and ffn_down q6_K in the use_more_bits layers, output q6_K"},
    FtypeInfo{F::Q5_K_S, "Q5_K_S", T::Q5_K, 16, "q5_K everywhere, output q6_K"},
    FtypeInfo{F::Q5_K_M, "Q5_K_M", T::Q5_K, 17, "q5_K; attn_v and ffn_down q6_K in the use_more_bits layers, output q6_K"},
    FtypeInfo{F::Q6_K, "Q6_K", T::Q6_K, 18, "q6_K everywhere"},
};

std::string upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return char(std::toupper(c)); });
  return out;
}

bool contains(std::string_view s, std::string_view what) { return s.find(what) != std::string_view::npos; }

// llama.cpp: the first and last eighth of the layers, and every third layer in between.
bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

}  // namespace

std::span<const FtypeInfo> all_ftypes() { return kFtypes; }

const FtypeInfo& ftype_info(LlamaFtype f) {
  for (const auto& i : kFtypes) {
    if (i.ftype == f) return i;
  }
  QB_ASSERT(false);
  return kFtypes[0];
}

std::optional<LlamaFtype> find_ftype(std::string_view name) {
  std::string u = upper(name);
  if (u == "Q3_K") u = "Q3_K_M";
  if (u == "Q4_K") u = "Q4_K_M";
  if (u == "Q5_K") u = "Q5_K_M";
  for (const auto& i : kFtypes) {
    if (i.name == u) return i.ftype;
  }
  return std::nullopt;
}

TensorCategory tensor_category(std::string_view name) {
  if (name == "output.weight") return TensorCategory::Output;
  if (name == "token_embd.weight") return TensorCategory::TokenEmbd;
  if (contains(name, "attn_v.weight")) return TensorCategory::AttnV;
  if (contains(name, "attn_k.weight")) return TensorCategory::AttnK;
  if (contains(name, "attn_q.weight")) return TensorCategory::AttnQ;
  if (contains(name, "attn_output.weight")) return TensorCategory::AttnOutput;
  if (contains(name, "ffn_up")) return TensorCategory::FfnUp;
  if (contains(name, "ffn_gate")) return TensorCategory::FfnGate;
  if (contains(name, "ffn_down")) return TensorCategory::FfnDown;
  return TensorCategory::Other;
}

TensorType llama_mix_type(LlamaFtype f, std::string_view name, int64_t cols, MixState& st) {
  const TensorCategory cat = tensor_category(name);
  TensorType t = ftype_info(f).base;
  if (cat == TensorCategory::Output || (st.tied_embeddings && cat == TensorCategory::TokenEmbd)) {
    if (cols % type_traits(t).block_size != 0) return T::Q8_0;
    return t != T::Q8_0 ? T::Q6_K : t;
  }
  if (cat == TensorCategory::TokenEmbd) return t;
  if (cat == TensorCategory::AttnV) {
    if (f == F::Q2_K) {
      t = st.n_gqa >= 4 ? T::Q4_K : T::Q3_K;
    } else if (f == F::Q3_K_M) {
      t = st.i_attention_wv < 2 ? T::Q5_K : T::Q4_K;
    } else if (f == F::Q3_K_L) {
      t = T::Q5_K;
    } else if ((f == F::Q4_K_M || f == F::Q5_K_M) && use_more_bits(st.i_attention_wv, st.n_attention_wv)) {
      t = T::Q6_K;
    } else if (f == F::Q4_K_S && st.i_attention_wv < 4) {
      t = T::Q5_K;
    }
    ++st.i_attention_wv;
  } else if (cat == TensorCategory::FfnDown) {
    const int i = st.i_ffn_down, n = st.n_ffn_down;
    if (f == F::Q2_K) {
      t = T::Q3_K;
    } else if (f == F::Q3_K_M) {
      t = i < n / 16 ? T::Q5_K : T::Q4_K;  // arch != falcon: Q4_K beyond the first 1/16
    } else if (f == F::Q3_K_L) {
      t = T::Q5_K;
    } else if (f == F::Q4_K_M) {
      if (use_more_bits(i, n)) t = T::Q6_K;
    } else if (f == F::Q5_K_M && use_more_bits(i, n)) {
      t = T::Q6_K;
    } else if (f == F::Q4_K_S && i < n / 8) {
      t = T::Q5_K;
    }
    ++st.i_ffn_down;
  } else if (cat == TensorCategory::AttnOutput) {
    if (f == F::Q2_K) {
      t = T::Q3_K;
    } else if (f == F::Q3_K_M) {
      t = T::Q4_K;
    } else if (f == F::Q3_K_L) {
      t = T::Q5_K;
    }
  }
  return t;
}

}  // namespace qbench::quant
