// Calibration-based PTQ: statistics, GPTQ, AWQ, the importance matrix, and their fallbacks.
#include <gtest/gtest.h>

#include <atomic>

#include <cctype>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/kernels/matmul.h"
#include "engine/model/forward.h"
#include "quantizers/calibration.h"
#include "quantizers/quantize_model.h"
#include "quantizers/registry.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

namespace qbench::quant {
namespace {

// Synthetic layer: inputs x = A z (correlated channels) with a few outlier channels x10.
struct Layer {
  int64_t rows, cols, n;
  std::vector<float> w, x;  // w rows x cols, x n x cols
  InputStats stats;
};

Layer make_layer(int64_t rows, int64_t cols, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  Layer L{rows, cols, n, std::vector<float>(size_t(rows * cols)), std::vector<float>(size_t(n * cols)), {}};
  for (auto& v : L.w) v = 0.1f * g(rng);
  const int64_t k = 8;  // latent factors
  std::vector<float> a(size_t(k * cols));
  for (auto& v : a) v = g(rng);
  for (int64_t t = 0; t < n; ++t) {
    float z[8];
    for (float& v : z) v = g(rng);
    for (int64_t j = 0; j < cols; ++j) {
      float s = 0.3f * g(rng);
      for (int64_t i = 0; i < k; ++i) s += a[size_t(i * cols + j)] * z[i];
      if (j % 37 == 5) s *= 10.0f;  // outlier channels
      L.x[size_t(t * cols + j)] = s;
    }
  }
  L.stats.init(cols, true);
  L.stats.add(L.x.data(), n);
  return L;
}

std::vector<float> dequantize(const PackedTensor& p, int64_t rows, int64_t cols) {
  const TypeTraits& t = type_traits(p.type);
  std::vector<float> out(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) t.dequantize_row(p.bytes.data() + size_t(r) * row_bytes(t, cols), out.data() + r * cols, cols);
  return out;
}

// ||W X - Ŵ X||² over the layer's tokens, from the activations themselves (not the Hessian).
double output_error(const Layer& L, const std::vector<float>& wq) {
  double err = 0;
  for (int64_t t = 0; t < L.n; ++t) {
    for (int64_t r = 0; r < L.rows; ++r) {
      double e = 0;
      for (int64_t j = 0; j < L.cols; ++j) e += double(wq[size_t(r * L.cols + j)] - L.w[size_t(r * L.cols + j)]) * L.x[size_t(t * L.cols + j)];
      err += e * e;
    }
  }
  return err;
}

PackedTensor run(const std::string& scheme, const Layer& L, const InputStats* stats) {
  const SchemeSpec spec = parse_scheme(scheme);
  const WeightView v{"w", L.rows, L.cols, L.w.data()};
  const Method& m = registry().method(spec);
  if (stats) return m.quantize_calib(v, spec, CalibContext{stats, nullptr});
  return quantize_tensor(v, spec);
}

TEST(Gptq, BeatsRtnOnCorrelatedInputs) {
  const Layer L = make_layer(64, 256, 1024, 7);
  for (const std::string fmt : {"int4,group=32", "int4,group=channel", "int3,group=32"}) {
    SCOPED_TRACE(fmt);
    const double rtn = output_error(L, dequantize(run("rtn:" + fmt, L, nullptr), L.rows, L.cols));
    const double gptq = output_error(L, dequantize(run("gptq:" + fmt, L, &L.stats), L.rows, L.cols));
    const double gptq_ao =
        output_error(L, dequantize(run("gptq:" + fmt + ",act_order=true", L, &L.stats), L.rows, L.cols));
    EXPECT_LT(gptq, 0.8 * rtn) << "rtn " << rtn;
    EXPECT_LT(gptq_ao, 0.8 * rtn) << "rtn " << rtn;
  }
}

TEST(Gptq, DiagonalHessianEqualsRtn) {
  const Layer L = make_layer(16, 128, 4, 3);
  InputStats diag;
  diag.init(L.cols, true);
  diag.n_tokens = 10;
  for (int64_t j = 0; j < L.cols; ++j) diag.hessian[size_t(j * L.cols + j)] = 1.0 + 0.1 * double(j % 5);
  for (const std::string fmt : {"int4,group=32", "int4,group=channel", "int3,group=128,sym=false"}) {
    SCOPED_TRACE(fmt);
    for (const char* order : {"false", "true"}) {
      EXPECT_EQ(run("gptq:" + fmt + ",act_order=" + order, L, &diag).bytes, run("rtn:" + fmt, L, nullptr).bytes);
    }
  }
}

TEST(Gptq, DegenerateInputsFallBackWithoutNans) {
  const Layer L = make_layer(16, 64, 4, 5);
  auto finite = [&](const PackedTensor& p) {
    for (float v : dequantize(p, L.rows, L.cols)) {
      if (!std::isfinite(v)) return false;
    }
    return true;
  };
  // All-zero inputs: plain RTN, with a note.
  InputStats zero;
  zero.init(L.cols, true);
  zero.add(std::vector<float>(size_t(8 * L.cols), 0.0f).data(), 8);
  PackedTensor p = run("gptq:int4,group=32", L, &zero);
  EXPECT_EQ(p.bytes, run("rtn:int4,group=32", L, nullptr).bytes);
  EXPECT_NE(p.note.find("all inputs are zero"), std::string::npos) << p.note;
  // Singular Hessian (4 tokens, 64 channels) without damping: damping is raised, never NaN.
  p = run("gptq:int4,group=32,damp=0", L, &L.stats);
  EXPECT_TRUE(finite(p));
  EXPECT_NE(p.note.find("damping raised"), std::string::npos) << p.note;
  // Dead inputs (some channels always zero): their weight columns become 0, as the reference.
  std::vector<float> x = L.x;
  for (int64_t t = 0; t < L.n; ++t) x[size_t(t * L.cols + 3)] = 0.0f;
  InputStats dead;
  dead.init(L.cols, true);
  dead.add(x.data(), L.n);
  p = run("gptq:int4,group=32", L, &dead);
  EXPECT_TRUE(finite(p));
  EXPECT_NE(p.note.find("1 dead inputs"), std::string::npos) << p.note;
  const auto wq = dequantize(p, L.rows, L.cols);
  for (int64_t r = 0; r < L.rows; ++r) EXPECT_EQ(wq[size_t(r * L.cols + 3)], 0.0f);
  // No calibration tokens at all.
  InputStats none;
  none.init(L.cols, true);
  EXPECT_NE(run("gptq:int4,group=32", L, &none).note.find("no calibration tokens"), std::string::npos);
}

TEST(Calibration, TooShortTextIsAnError) {
  const std::vector<int32_t> tokens(100, 5);
  CalibConfig c;
  c.ctx = 128;
  try {
    make_calib_windows(tokens, c, "short.txt", 1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("short.txt: calibration text has 100 tokens"), std::string::npos) << e.what();
  }
  c.ctx = 50;
  c.samples = 3;
  const CalibWindows w = make_calib_windows(tokens, c, "short.txt", 1);
  ASSERT_EQ(w.windows.size(), 3u);
  EXPECT_EQ(w.windows[0].size(), 50u);
  EXPECT_EQ(w.windows[0][0], 1);  // BOS first
}

// --calib-samples is bounded by the distinct windows the text has: 10^9 samples of a short text
// is refused at once instead of drawing (and later running) a billion windows.
TEST(Calibration, MoreSamplesThanDistinctWindowsIsAnError) {
  const std::vector<int32_t> tokens(100, 5);
  CalibConfig c;
  c.ctx = 50;
  c.samples = 51;  // 100 - 50 + 1 start positions
  EXPECT_EQ(make_calib_windows(tokens, c, "short.txt", 1).windows.size(), 51u);
  for (int64_t samples : {int64_t(52), int64_t(1000000000)}) {
    c.samples = samples;
    try {
      make_calib_windows(tokens, c, "short.txt", 1);
      FAIL() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("short.txt: 100 tokens give 51 distinct windows of 50 tokens; --calib-samples"),
                std::string::npos) << e.what();
    }
  }
  c.samples = 1;
  c.ctx = std::numeric_limits<int64_t>::max();  // ctx + 1 would overflow
  EXPECT_THROW(make_calib_windows(tokens, c, "short.txt", 1), Error);
}

// Calibration text is read with --text's checks: empty or binary files are refused.
TEST(Calibration, EmptyOrBinaryTextIsRefused) {
  const std::string dir = test::temp_dir("calib-text");
  const Model m = load_model(test::write_tiny_model(dir + "/m.gguf"));
  std::ofstream(dir + "/empty.txt").close();
  std::ofstream(dir + "/bin.txt", std::ios::binary) << std::string("GGUF\3\0\0\0\xff\xfe", 10);
  for (const std::string name : {"empty.txt", "bin.txt"}) {
    CalibConfig c;
    c.text_path = dir + "/" + name;
    c.ctx = 8;
    c.samples = 1;
    try {
      make_calib_windows(m, c);
      ADD_FAILURE() << name << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
}

// A tiny model (no GQA, so AWQ folds attn_v -> attn_output too) with outlier input channels:
// a few norm weights are large.
struct TinyCalib {
  Model m;
  Calibration calib;
};
TinyCalib tiny_with_outliers(const std::string& dir, bool zero_layer0_attn, int n_head_kv = 4, int64_t n_embd = 64) {
  test::TinySpec s;
  s.n_embd = n_embd;
  s.n_ff = 2 * n_embd;
  s.n_head = 4;
  s.n_head_kv = n_head_kv;
  gguf::Writer w = test::tiny_model_writer(s);
  for (int l = 0; l < 2; ++l) {
    std::vector<float> norm(size_t(n_embd), 1.0f);
    for (int64_t j = 0; j < n_embd; j += 13) norm[size_t(j)] = 12.0f;
    if (zero_layer0_attn && l == 0) norm.assign(size_t(n_embd), 0.0f);
    std::vector<uint8_t> b(norm.size() * 4);
    std::memcpy(b.data(), norm.data(), b.size());
    for (const char* n : {"attn_norm.weight", "ffn_norm.weight"}) {
      const std::string name = "blk." + std::to_string(l) + "." + n;
      w.remove_tensor(name);
      w.add_tensor(name, {n_embd}, TensorType::F32, b);
    }
  }
  const std::string path = dir + "/tiny.gguf";
  w.write(path);
  TinyCalib t{load_model(path), {}};
  std::mt19937 rng(11);
  std::vector<int32_t> tokens(4000);
  for (auto& v : tokens) v = int32_t(3 + rng() % (s.n_vocab - 3));
  CalibConfig c;
  c.samples = 16;
  c.ctx = 64;
  t.calib.windows = make_calib_windows(tokens, c, "random tokens", 1);
  return t;
}

// Mean squared logit difference against the FP model over fresh tokens.
double logit_mse(const Model& ref, const Model& q) {
  std::mt19937 rng(99);
  std::vector<int32_t> tokens(128);
  for (auto& v : tokens) v = int32_t(3 + rng() % (ref.config.n_vocab - 3));
  Forward a(ref, 128), b(q, 128);
  std::vector<float> la, lb;
  a.eval(tokens, la, 0);
  b.eval(tokens, lb, 0);
  double e = 0;
  for (size_t i = 0; i < la.size(); ++i) {
    EXPECT_TRUE(std::isfinite(lb[i]));
    e += double(la[i] - lb[i]) * double(la[i] - lb[i]);
  }
  return e / double(la.size());
}

TEST(Awq, FoldingIsExactInFp) {
  const std::string dir = test::temp_dir("calib_awq_fold");
  const TinyCalib t = tiny_with_outliers(dir, false);
  const CalibStats stats = collect_stats(t.m, t.calib.windows, {true, -1});
  Model work = f32_working_copy(t.m);
  const SchemeSpec spec = parse_scheme("awq:int3,group=32,clip=false");
  PrepareNotes notes;
  registry().find("awq")->prepare(work, [&](const std::string&) { return &spec; }, stats, notes);
  bool scaled = false;
  for (const auto& n : notes.decisions) scaled = scaled || (n.find("alpha") != std::string::npos && n.find("alpha 0.000") == std::string::npos);
  EXPECT_TRUE(scaled) << "no site chose a non-trivial scale";
  EXPECT_NE(t.m.layers[0].attn_norm, work.layers[0].attn_norm);
  EXPECT_LT(logit_mse(t.m, work), 1e-8);
}

TEST(Awq, GptqAndAwqBeatRtnOnTinyModel) {
  const std::string dir = test::temp_dir("calib_tiny");
  const TinyCalib t = tiny_with_outliers(dir, false);
  const double rtn = logit_mse(t.m, quantize_model(t.m, make_recipe("rtn:int3,group=32")));
  const double awq = logit_mse(t.m, quantize_model(t.m, make_recipe("awq:int3,group=32"), nullptr, &t.calib));
  const double gptq = logit_mse(t.m, quantize_model(t.m, make_recipe("gptq:int3,group=32"), nullptr, &t.calib));
  EXPECT_LT(awq, rtn);
  EXPECT_LT(gptq, rtn);
}

TEST(Calibration, SchemesNeedCalibrationText) {
  const std::string dir = test::temp_dir("calib_need");
  const TinyCalib t = tiny_with_outliers(dir, false);
  for (const char* s : {"gptq:int4,group=32", "awq:int4,group=32", "smoothquant"}) {
    try {
      quantize_model(t.m, make_recipe(s));
      FAIL() << s;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("needs calibration text: --calib FILE"), std::string::npos) << e.what();
    }
  }
}

TEST(Calibration, AllZeroLayerInputsGiveFiniteModels) {
  const std::string dir = test::temp_dir("calib_zero");
  const TinyCalib t = tiny_with_outliers(dir, true);  // layer 0's attention inputs are all zero
  for (const char* s : {"gptq:int4,group=32", "awq:int4,group=32", "smoothquant"}) {
    SCOPED_TRACE(s);
    QuantizeReport rep;
    const Model q = quantize_model(t.m, make_recipe(s), &rep, &t.calib);
    logit_mse(t.m, q);  // asserts finite logits
    bool noted = false;
    for (const auto& tr : rep.tensors) noted = noted || tr.note.find("all inputs are zero") != std::string::npos;
    if (std::string(s).starts_with("gptq")) {
      EXPECT_TRUE(noted);
      // The fallback reaches the report's list (what qbench run records with the run).
      bool listed = false;
      for (const auto& f : rep.fallbacks) listed = listed || (f.rfind("blk.0.", 0) == 0 && f.find("all inputs are zero") != std::string::npos);
      EXPECT_TRUE(listed) << rep.to_json()["fallbacks"].dump();
    }
  }
}

// Ctrl-C during a long calibrated quantization: the flag stops it at the next tensor or layer
// with Cancelled, instead of finishing the work to throw it away.
TEST(Calibration, CancelStopsQuantizationPromptly) {
  const std::string dir = test::temp_dir("calib_cancel");
  const TinyCalib t = tiny_with_outliers(dir, false);
  std::atomic<bool> cancel{true};
  for (const char* s : {"gptq:int4,group=32", "awq:int4,group=32", "rtn:int4,group=32"}) {
    SCOPED_TRACE(s);
    QuantizeReport rep;
    EXPECT_THROW(quantize_model(t.m, make_recipe(s), &rep, &t.calib, &cancel), Cancelled);
    EXPECT_TRUE(rep.tensors.empty());
  }
  cancel = false;
  EXPECT_NO_THROW(quantize_model(t.m, make_recipe("gptq:int4,group=32"), nullptr, &t.calib, &cancel));
}

// SmoothQuant's folding (x / s into attn_norm, ffn_norm, the rows of attn_v and of ffn_up; W diag(s)
// into every linear) leaves the FP model's logits unchanged up to float rounding.
TEST(SmoothQuant, FoldingIsExactInFp) {
  const std::string dir = test::temp_dir("calib_sq_fold");
  const TinyCalib t = tiny_with_outliers(dir, false);
  const CalibStats stats = collect_stats(t.m, t.calib.windows, {true, -1});
  for (const char* scheme : {"smoothquant", "smoothquant,alpha=0.85", "smoothquant,alpha=0", "smoothquant,alpha=1"}) {
    SCOPED_TRACE(scheme);
    Model work = f32_working_copy(t.m);
    const SchemeSpec spec = parse_scheme(scheme);
    PrepareNotes notes;
    registry().find("smoothquant")->prepare(work, [&](const std::string&) { return &spec; }, stats, notes);
    // Four smoothed inputs per layer (no GQA: attn_output through attn_v's rows).
    ASSERT_EQ(notes.decisions.size(), 2u * 4u);
    for (const auto& n : notes.decisions) EXPECT_NE(n.find(": alpha "), std::string::npos) << n;
    EXPECT_NE(t.m.layers[0].attn_norm, work.layers[0].attn_norm);
    EXPECT_NE(t.m.layers[1].ffn_norm, work.layers[1].ffn_norm);
    EXPECT_LT(logit_mse(t.m, work), 1e-8);
  }
  // The outlier channels of attn_norm (weight 12) are divided by larger scales than the rest.
  Model work = f32_working_copy(t.m);
  const SchemeSpec spec = parse_scheme("smoothquant");
  PrepareNotes notes;
  registry().find("smoothquant")->prepare(work, [&](const std::string&) { return &spec; }, stats, notes);
  const auto& before = t.m.layers[1].attn_norm;
  const auto& after = work.layers[1].attn_norm;
  double outlier_ratio = 0, normal_ratio = 0;
  for (size_t j = 0; j < before.size(); ++j) {
    (j % 13 == 0 ? outlier_ratio : normal_ratio) += double(after[j]) / before[j] / (j % 13 == 0 ? 5.0 : 59.0);
  }
  EXPECT_LT(outlier_ratio, 0.5 * normal_ratio);
}

// With GQA, one attn_v row feeds the same column of several heads: attn_output's input is
// smoothed with one scale per v row, shared by those columns, still exactly in FP.
TEST(SmoothQuant, GqaSharesAttnOutputScalesPerVRow) {
  const std::string dir = test::temp_dir("calib_sq_gqa");
  const TinyCalib t = tiny_with_outliers(dir, false, 2);
  const CalibStats stats = collect_stats(t.m, t.calib.windows, {true, -1});
  Model work = f32_working_copy(t.m);
  const SchemeSpec spec = parse_scheme("smoothquant");
  PrepareNotes notes;
  registry().find("smoothquant")->prepare(work, [&](const std::string&) { return &spec; }, stats, notes);
  int shared = 0;
  for (const auto& n : notes.decisions) shared += n.find("attn_output: alpha 0.5") != std::string::npos && n.find("shared by 2 heads") != std::string::npos;
  EXPECT_EQ(shared, 2);
  EXPECT_LT(logit_mse(t.m, work), 1e-8);
  // Column j of attn_output (head j / 16, dim j % 16) and the column of the other head reading the
  // same v row were scaled alike: their ratio to the original weights is equal.
  const Matrix& wo0 = t.m.layers[1].wo;
  ASSERT_EQ(wo0.type, TensorType::F32);
  const float* a = reinterpret_cast<const float*>(wo0.data);
  const float* b = reinterpret_cast<const float*>(work.layers[1].wo.data);
  for (int64_t d = 0; d < 16; ++d) {
    EXPECT_FLOAT_EQ(b[d] / a[d], b[16 + d] / a[16 + d]) << d;  // heads 0 and 1 share kv head 0
  }
  QuantizeReport rep;
  const Model q = quantize_model(t.m, make_recipe("smoothquant"), &rep, &t.calib);
  EXPECT_EQ(q.layers[0].wo.type, TensorType::W8A8_INT8);
  logit_mse(t.m, q);  // finite
}

// The point of SmoothQuant: with outlier input channels, per-token int8 activations lose the
// small channels; migrating the outliers into the weights gives logits closer to the FP model
// than plain W8A8 (both on the integer W8A8 kernels).
TEST(SmoothQuant, BeatsPlainW8A8OnOutliers) {
  const std::string dir = test::temp_dir("calib_sq_tiny");
  const TinyCalib t = tiny_with_outliers(dir, false);
  QuantizeReport rep;
  const Model plain = quantize_model(t.m, make_recipe("w8a8"), &rep);
  for (const auto& tr : rep.tensors) {
    if (tr.name != "token_embd.weight") {
      EXPECT_EQ(tr.format, "w8a8_int8") << tr.name;
    }
  }
  EXPECT_EQ(plain.layers[0].wq.type, TensorType::W8A8_INT8);
  EXPECT_EQ(std::string(matmul_path_name(plain.layers[0].wq, 1, plain.matmul)), std::string(active_isa()));
  const Model smooth = quantize_model(t.m, make_recipe("smoothquant"), &rep, &t.calib);
  const double e_plain = logit_mse(t.m, plain), e_smooth = logit_mse(t.m, smooth);
  std::printf("[          ] logit MSE vs FP: w8a8 %.3g, smoothquant %.3g\n", e_plain, e_smooth);
  EXPECT_LT(e_smooth, 0.7 * e_plain);
}

TEST(Imatrix, RoundTripAndWeightedClip) {
  const std::string dir = test::temp_dir("calib_imatrix");
  const TinyCalib t = tiny_with_outliers(dir, false);
  const Imatrix im = make_imatrix(t.m, collect_stats(t.m, t.calib.windows, {false, -1}), t.calib.windows);
  ASSERT_EQ(im.tensors.size(), t.m.linear_weights().size());
  write_imatrix(im, dir + "/x.imatrix");
  const Imatrix back = read_imatrix(dir + "/x.imatrix");
  EXPECT_EQ(back.tensors, im.tensors);
  write_file_atomic(dir + "/bad.imatrix", R"({"format":"qbench-imatrix","version":1,"tensors":{"a":[1,-2]}})");
  EXPECT_THROW(read_imatrix(dir + "/bad.imatrix"), Error);

  // clip=mse with equal importance everywhere is the unweighted search, byte for byte.
  const Layer L = make_layer(8, 64, 4, 1);
  const SchemeSpec spec = parse_scheme("rtn:int3,group=32,clip=mse");
  const WeightView v{"w", L.rows, L.cols, L.w.data()};
  const std::vector<float> ones(size_t(L.cols), 1.0f);
  EXPECT_EQ(registry().method(spec).quantize_calib(v, spec, CalibContext{nullptr, &ones}).bytes, quantize_tensor(v, spec).bytes);
  // Unequal importance changes the choice and lowers the weighted error of the output.
  std::vector<float> imp(size_t(L.cols), 0.01f);
  for (int64_t j = 0; j < L.cols; j += 7) imp[size_t(j)] = 100.0f;
  auto weighted = [&](const PackedTensor& p) {
    const auto wq = dequantize(p, L.rows, L.cols);
    double e = 0;
    for (int64_t i = 0; i < L.rows * L.cols; ++i) e += imp[size_t(i % L.cols)] * std::pow(double(wq[size_t(i)] - L.w[size_t(i)]), 2);
    return e;
  };
  EXPECT_LT(weighted(registry().method(spec).quantize_calib(v, spec, CalibContext{nullptr, &imp})),
            weighted(quantize_tensor(v, spec)));
}

// RTN uses an importance matrix only for its clip search: with --calib and clip=none nothing is
// collected (no calibration time, no imatrix in the report) and the bytes are plain RTN's.
TEST(Imatrix, RtnWithoutClipSearchDoesNotCollectOne) {
  const std::string dir = test::temp_dir("calib_rtn_noimp");
  const TinyCalib t = tiny_with_outliers(dir, false);
  QuantizeReport plain, with_text, mse;
  const Model a = quantize_model(t.m, make_recipe("rtn:int4,group=32"), &plain);
  const Model b = quantize_model(t.m, make_recipe("rtn:int4,group=32"), &with_text, &t.calib);
  EXPECT_TRUE(with_text.imatrix.empty());
  EXPECT_EQ(with_text.calib_seconds, 0.0);
  EXPECT_EQ(b.output.bytes(), a.output.bytes());
  EXPECT_EQ(std::memcmp(b.output.data, a.output.data, a.output.bytes()), 0);
  quantize_model(t.m, make_recipe("rtn:int4,group=32,clip=mse"), &mse, &t.calib);
  EXPECT_FALSE(mse.imatrix.empty());
  EXPECT_GT(mse.calib_seconds, 0.0);
}

// The GGUF block types llama.cpp quantizes with an imatrix take one (CalibUse::Optional); q8_0 and
// the casts do not. With one, their bytes change and the importance-weighted error drops.
TEST(Imatrix, GgufTypesTakeIt) {
  for (const char* name : {"q4_0", "q4_1", "q5_0", "q5_1", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"}) {
    const Method* m = registry().find(name);
    ASSERT_NE(m, nullptr) << name;
    EXPECT_EQ(m->calib, CalibUse::Optional) << name;
    EXPECT_NE(m->quantize_calib, nullptr) << name;
  }
  for (const char* name : {"q8_0", "fp16", "bf16", "f32"}) EXPECT_EQ(registry().find(name)->calib, CalibUse::None) << name;

  const Layer L = make_layer(16, 512, 4, 3);
  std::vector<float> imp(size_t(L.cols), 1.0f);
  for (int64_t j = 5; j < L.cols; j += 16) imp[size_t(j)] = 100.0f;
  auto weighted = [&](const PackedTensor& p, int64_t cols) {
    const auto wq = dequantize(p, L.rows, cols);
    double e = 0;
    for (int64_t r = 0; r < L.rows; ++r) {
      for (int64_t j = 0; j < cols; ++j) {
        const size_t i = size_t(r * cols + j);
        e += imp[size_t(j)] * std::pow(double(wq[i] - L.w[size_t(r * L.cols + j)]), 2);
      }
    }
    return e;
  };
  for (const char* name : {"q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q4_0", "q5_1"}) {
    SCOPED_TRACE(name);
    const SchemeSpec spec = parse_scheme(name);
    const WeightView v{"w", L.rows, L.cols, L.w.data()};
    const PackedTensor with = registry().method(spec).quantize_calib(v, spec, CalibContext{nullptr, &imp});
    const PackedTensor without = quantize_tensor(v, spec);
    EXPECT_EQ(with.type, without.type);
    EXPECT_NE(with.bytes, without.bytes);
    EXPECT_LT(weighted(with, L.cols), weighted(without, L.cols));
  }
  // llama-quantize's fallbacks for rows that are not a multiple of 256 keep the importance when the
  // fallback type has a weighted quantizer (q4_K -> q5_0), and say when it does not (q6_K -> q8_0).
  std::vector<float> w96(size_t(L.rows * 96));
  for (int64_t r = 0; r < L.rows; ++r) std::copy_n(L.w.begin() + r * L.cols, 96, w96.begin() + r * 96);
  const std::vector<float> imp96(imp.begin(), imp.begin() + 96);
  const WeightView v96{"w96", L.rows, 96, w96.data()};
  const SchemeSpec q4k = parse_scheme("q4_K"), q6k = parse_scheme("q6_K");
  const PackedTensor fb = registry().method(q4k).quantize_calib(v96, q4k, CalibContext{nullptr, &imp96});
  EXPECT_EQ(fb.type, TensorType::Q5_0);
  EXPECT_NE(fb.bytes, quantize_tensor(v96, q4k).bytes);
  const PackedTensor fb8 = registry().method(q6k).quantize_calib(v96, q6k, CalibContext{nullptr, &imp96});
  EXPECT_EQ(fb8.type, TensorType::Q8_0);
  EXPECT_EQ(fb8.bytes, quantize_tensor(v96, q6k).bytes);
  EXPECT_NE(fb8.note.find("imatrix unused"), std::string::npos) << fb8.note;
}

// Pure k-quant types and llama.cpp's mixes (which resolve to the same per-type methods) compute
// the imatrix from --calib, use it for every linear and say so; the model stays finite and, on a
// model whose inputs have outlier channels, closer to the FP one.
TEST(Imatrix, KQuantsAndMixesUseItOnTinyModel) {
  const std::string dir = test::temp_dir("calib_kquant");
  const TinyCalib t = tiny_with_outliers(dir, false, 4, 256);
  for (const char* name : {"q3_K", "q2_K", "Q4_K_M", "Q3_K_S"}) {
    SCOPED_TRACE(name);
    Recipe recipe = make_recipe(name);
    recipe.pure = std::islower(static_cast<unsigned char>(name[0])) != 0;  // q3_K, q2_K: --pure
    QuantizeReport rep, plain_rep;
    const Model q = quantize_model(t.m, recipe, &rep, &t.calib);
    const Model plain = quantize_model(t.m, recipe, &plain_rep);
    EXPECT_EQ(rep.imatrix, t.calib.windows.description);
    EXPECT_TRUE(plain_rep.imatrix.empty());
    int with_imatrix = 0;
    for (const TensorReport& tr : rep.tensors) {
      const bool linear = tr.name != "token_embd.weight" && tr.scheme != "keep";
      EXPECT_EQ(tr.note.find("imatrix") != std::string::npos, linear) << tr.name << ": " << tr.note;
      with_imatrix += linear;
    }
    EXPECT_EQ(with_imatrix, 2 * 7 + 1);  // 2 layers x 7 linears + output
    const double e = logit_mse(t.m, q), e_plain = logit_mse(t.m, plain);
    std::printf("[          ] %-7s logit MSE %.5g without, %.5g with the imatrix\n", name, e_plain, e);
    EXPECT_LT(e, e_plain);
  }
}

}  // namespace
}  // namespace qbench::quant
