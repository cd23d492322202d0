// Builds small random Llama GGUF files for tests (no shared files needed).
#pragma once

#include <cstdint>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/io/gguf.h"
#include "engine/tokenizer/tokenizer.h"

namespace qbench::test {

struct TinySpec {
  int64_t n_vocab = 300;  // 3 specials + 256 bytes + 41 letters/merges
  int64_t n_embd = 32;
  int64_t n_ff = 48;
  int64_t n_layer = 2;
  int64_t n_head = 4;
  int64_t n_head_kv = 2;
  int64_t n_ctx = 64;
  bool tied = false;
  uint32_t seed = 1;
};

// A byte-fallback vocabulary: <unk>, <s>, </s>, <0x00>..<0xFF>, then single letters and a few
// merges with descending scores, padded to n_vocab.
inline Tokenizer tiny_tokenizer(int64_t n_vocab) {
  std::vector<std::string> p;
  const char* extra[] = {"\xE2\x96\x81", "e", "t", "a", "o", "n", "h", "s", "\xE2\x96\x81" "t", "he",
                         "\xE2\x96\x81" "the", "\xE2\x96\x81" "a", "in", "an", "\xE2\x96\x81" "an", "\xE2\x96\x81" "and"};
  for (const char* e : extra) {
    if (int64_t(p.size()) + 259 < n_vocab) p.push_back(e);
  }
  while (int64_t(p.size()) + 259 < n_vocab) p.push_back("<pad" + std::to_string(p.size() + 259) + ">");
  std::vector<float> sc(p.size());
  for (size_t i = 0; i < p.size(); ++i) sc[i] = -float(i);
  return Tokenizer::byte_fallback(p, sc);
}

inline std::vector<uint8_t> random_f32_bytes(int64_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<uint8_t> out(size_t(n) * 4);
  for (int64_t i = 0; i < n; ++i) {
    const float v = dist(rng);
    std::memcpy(out.data() + 4 * i, &v, 4);
  }
  return out;
}

inline std::vector<uint8_t> ones_f32_bytes(int64_t n) {
  std::vector<uint8_t> out(size_t(n) * 4);
  const float one = 1.0f;
  for (int64_t i = 0; i < n; ++i) std::memcpy(out.data() + 4 * i, &one, 4);
  return out;
}

// A gguf::Writer holding a complete tiny model; tests may edit it before writing.
inline gguf::Writer tiny_model_writer(const TinySpec& s = {}) {
  gguf::Writer w;
  w.set("general.architecture", gguf::Value::str("llama"));
  w.set("general.name", gguf::Value::str("tiny-test"));
  w.set("llama.context_length", gguf::Value::u32(uint32_t(s.n_ctx)));
  w.set("llama.embedding_length", gguf::Value::u32(uint32_t(s.n_embd)));
  w.set("llama.feed_forward_length", gguf::Value::u32(uint32_t(s.n_ff)));
  w.set("llama.block_count", gguf::Value::u32(uint32_t(s.n_layer)));
  w.set("llama.attention.head_count", gguf::Value::u32(uint32_t(s.n_head)));
  w.set("llama.attention.head_count_kv", gguf::Value::u32(uint32_t(s.n_head_kv)));
  w.set("llama.rope.dimension_count", gguf::Value::u32(uint32_t(s.n_embd / s.n_head)));
  w.set("llama.attention.layer_norm_rms_epsilon", gguf::Value::f32(1e-5f));
  tiny_tokenizer(s.n_vocab).write_gguf(w);
  std::mt19937 rng(s.seed);
  const int64_t d = s.n_embd, dkv = d / s.n_head * s.n_head_kv;
  auto mat = [&](const std::string& name, int64_t rows, int64_t cols) {
    w.add_tensor(name, {cols, rows}, TensorType::F32, random_f32_bytes(rows * cols, rng, 0.2f));
  };
  mat("token_embd.weight", s.n_vocab, d);
  w.add_tensor("output_norm.weight", {d}, TensorType::F32, ones_f32_bytes(d));
  if (!s.tied) mat("output.weight", s.n_vocab, d);
  for (int64_t l = 0; l < s.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    w.add_tensor(p + "attn_norm.weight", {d}, TensorType::F32, ones_f32_bytes(d));
    mat(p + "attn_q.weight", d, d);
    mat(p + "attn_k.weight", dkv, d);
    mat(p + "attn_v.weight", dkv, d);
    mat(p + "attn_output.weight", d, d);
    w.add_tensor(p + "ffn_norm.weight", {d}, TensorType::F32, ones_f32_bytes(d));
    mat(p + "ffn_gate.weight", s.n_ff, d);
    mat(p + "ffn_down.weight", d, s.n_ff);
    mat(p + "ffn_up.weight", s.n_ff, d);
  }
  return w;
}

inline std::string write_tiny_model(const std::string& path, const TinySpec& s = {}) {
  tiny_model_writer(s).write(path);
  return path;
}

}  // namespace qbench::test

namespace qbench::test {

// A model whose logits at a position depend only on the token there: logits = table[token]
// (a bigram model). All attention and MLP weights are zero, the embedding of token t is
// 100 * e_t (one-hot; large so that RMSNorm's epsilon is negligible), so RMSNorm gives
// sqrt(n_embd) * e_t, and output row v holds table[t][v] / sqrt(n_embd) at column t.
// Log-likelihoods are then hand-computable.
inline std::string write_bigram_model(const std::string& path, const std::vector<std::vector<float>>& table) {
  const int64_t V = int64_t(table.size());
  TinySpec s;
  s.n_vocab = V;
  s.n_embd = 320;  // >= V, divisible by 4 heads
  s.n_ff = 64;
  s.n_layer = 1;
  s.n_head = 4;
  s.n_head_kv = 4;
  gguf::Writer w = tiny_model_writer(s);
  const int64_t d = s.n_embd;
  auto put = [&](const std::string& name, int64_t rows, int64_t cols, const std::vector<float>& v) {
    w.remove_tensor(name);
    std::vector<uint8_t> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    w.add_tensor(name, {cols, rows}, TensorType::F32, b);
  };
  std::vector<float> emb(size_t(V * d), 0.0f), out(size_t(V * d), 0.0f);
  for (int64_t t = 0; t < V; ++t) emb[size_t(t * d + t)] = 100.0f;
  const float inv = 1.0f / std::sqrt(float(d));
  for (int64_t v = 0; v < V; ++v) {
    for (int64_t t = 0; t < V; ++t) out[size_t(v * d + t)] = table[size_t(t)][size_t(v)] * inv;
  }
  put("token_embd.weight", V, d, emb);
  put("output.weight", V, d, out);
  const std::string p = "blk.0.";
  for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output"}) {
    put(p + n + ".weight", d, d, std::vector<float>(size_t(d * d), 0.0f));
  }
  put(p + "ffn_gate.weight", s.n_ff, d, std::vector<float>(size_t(s.n_ff * d), 0.0f));
  put(p + "ffn_up.weight", s.n_ff, d, std::vector<float>(size_t(s.n_ff * d), 0.0f));
  put(p + "ffn_down.weight", d, s.n_ff, std::vector<float>(size_t(s.n_ff * d), 0.0f));
  w.write(path);
  return path;
}

}  // namespace qbench::test
