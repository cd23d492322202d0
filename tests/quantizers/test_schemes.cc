// Scheme specs, the registry, and per-scheme properties of the quantizers.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/core/error.h"
#include "engine/formats/types.h"
#include "quantizers/quantize_model.h"
#include "quantizers/registry.h"

namespace qbench::quant {
namespace {

TEST(SchemeSpec, ParsesAndPrintsCanonically) {
  EXPECT_EQ(parse_scheme("rtn:int4,group=128,sym=false,clip=mse").to_string(), "rtn:int4,group=128,sym=false,clip=mse");
  EXPECT_EQ(parse_scheme("rtn:int3").to_string(), "rtn:int3,group=128,sym=true,clip=none");
  EXPECT_EQ(parse_scheme("int8").to_string(), "rtn:int8,group=channel,sym=true,clip=none");
  EXPECT_EQ(parse_scheme("int4, group=32").to_string(), "rtn:int4,group=32,sym=true,clip=none");
  EXPECT_EQ(parse_scheme("RTN:INT5,SYM=FALSE").to_string(), "rtn:int5,group=128,sym=false,clip=none");
  EXPECT_EQ(parse_scheme("fp16").to_string(), "fp16");
  EXPECT_EQ(parse_scheme("f16").to_string(), "fp16");
  EXPECT_EQ(parse_scheme("bf16").to_string(), "bf16");
  EXPECT_EQ(parse_scheme("Q4_K").to_string(), "q4_K");
  EXPECT_EQ(parse_scheme("nf4").to_string(), "nf4");
  EXPECT_EQ(parse_scheme("fp8").to_string(), "fp8");
  // Canonical text parses back to the same spec.
  for (const char* s : {"rtn:int2,group=tensor,sym=false,clip=mse", "q6_K", "int8"}) {
    const SchemeSpec a = parse_scheme(s);
    EXPECT_EQ(parse_scheme(a.to_string()), a) << s;
    EXPECT_EQ(parse_scheme_json(a.to_json()), a) << s;
  }
}

// W8A8 and SmoothQuant: alpha is a decimal option, printed canonically, also in JSON.
TEST(SchemeSpec, SmoothQuantAlpha) {
  EXPECT_EQ(parse_scheme("w8a8").to_string(), "w8a8");
  EXPECT_EQ(parse_scheme("smoothquant").to_string(), "smoothquant,alpha=0.5");
  EXPECT_EQ(parse_scheme("SmoothQuant, alpha=0.850").to_string(), "smoothquant,alpha=0.85");
  EXPECT_EQ(parse_scheme("smoothquant,alpha=1").get_double("alpha"), 1.0);
  EXPECT_EQ(parse_scheme("smoothquant,alpha=0").to_string(), "smoothquant,alpha=0");
  const SchemeSpec a = parse_scheme("smoothquant,alpha=0.75");
  EXPECT_EQ(a.to_json()["alpha"], 0.75);
  EXPECT_EQ(parse_scheme_json(a.to_json()), a);
  EXPECT_EQ(parse_scheme(a.to_string()), a);
  EXPECT_EQ(parse_scheme_json(nlohmann::json::parse(R"({"method": "smoothquant", "alpha": 0.8})")).get("alpha"), "0.8");
  EXPECT_EQ(registry().find("smoothquant")->calib, CalibUse::Required);
  EXPECT_EQ(registry().find("w8a8")->calib, CalibUse::None);
}

TEST(SchemeSpec, JsonForm) {
  const auto j = nlohmann::json::parse(R"({"method": "rtn", "bits": 4, "group": 128, "sym": false, "clip": "mse"})");
  EXPECT_EQ(parse_scheme_json(j), parse_scheme("rtn:int4,group=128,sym=false,clip=mse"));
  EXPECT_EQ(parse_scheme("rtn:int6,group=64").to_json()["group"], 64);
  EXPECT_THROW(parse_scheme_json(nlohmann::json::parse(R"({"bits": 4})")), Error);
  EXPECT_THROW(parse_scheme_json(nlohmann::json::parse(R"({"method": "rtn", "bits": 1.5})")), Error);
}

void expect_error(const std::string& spec, const std::string& fragment) {
  try {
    parse_scheme(spec);
    ADD_FAILURE() << spec << " parsed";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(SchemeSpec, Errors) {
  expect_error("foo", "unknown scheme 'foo'");
  expect_error("rtn:int9", "bits must be an integer in 2..8, got '9'");
  expect_error("rtn:int1", "bits must be an integer in 2..8");
  expect_error("rtn:int4,group=48", "group must be one of 32, 64, 128, channel, tensor, got '48'");
  expect_error("rtn:int4,grp=32", "unknown option 'grp'");
  expect_error("q4_0,group=32", "unknown option 'group' (it takes none)");
  expect_error("rtn:int4,sym", "expected KEY=VALUE");
  expect_error("nf4:int4", "takes no ':int4'");
  expect_error("", "empty scheme");
  expect_error("smoothquant,alpha=1.5", "alpha must be a number in 0..1, got '1.5'");
  expect_error("smoothquant,alpha=half", "alpha must be a number in 0..1, got 'half'");
  expect_error("smoothquant,alpha=nan", "alpha must be a number in 0..1");
  expect_error("w8a8,alpha=0.5", "unknown option 'alpha' (it takes none)");
}

// A key said twice, or contradicting an alias's name, is an error, never last-wins.
TEST(SchemeSpec, ConflictingKeysAreAnError) {
  expect_error("rtn:int4,bits=8", "option 'bits' given twice ('4' and '8')");
  expect_error("rtn:int4,group=64,group=32", "option 'group' given twice ('64' and '32')");
  expect_error("rtn:int4,GROUP=64,group=64", "option 'group' given twice");
  expect_error("int4,bits=8", "scheme 'int4' sets bits=4; 'bits=8' contradicts it");
  expect_error("int8,bits=4", "scheme 'int8' sets bits=8");
  // Options an alias leaves open may still be chosen.
  EXPECT_EQ(parse_scheme("int4,group=32").to_string(), "rtn:int4,group=32,sym=true,clip=none");
  EXPECT_EQ(parse_scheme("int8,group=128").to_string(), "rtn:int8,group=128,sym=true,clip=none");
  EXPECT_THROW(parse_scheme_json(nlohmann::json::parse(R"({"method": "rtn:int4", "bits": 8})")), Error);
  EXPECT_THROW(parse_scheme_json(nlohmann::json::parse(R"({"method": "rtn", "Group": 64, "group": 32})")), Error);
}

TEST(Registry, DuplicateNamesAreAnError) {
  Registry r;
  register_builtins(r);
  EXPECT_THROW(register_rtn(r), Error);
  EXPECT_THROW(r.add(Alias{"q4_0", "q8_0", ""}), Error);
  EXPECT_GE(registry().methods().size(), 16u);
}

// ---------------------------------------------------------------------------------------------
// Properties of every scheme

std::vector<float> gaussian(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> x(size_t(n), 0.0f);
  for (float& v : x) v = d(rng);
  return x;
}

struct RoundTrip {
  PackedTensor packed;
  std::vector<float> out;
  double rel_rms = 0, max_abs_err = 0;
};

RoundTrip round_trip(const std::string& spec, const std::vector<float>& x, int64_t rows, int64_t cols) {
  RoundTrip r;
  r.packed = quantize_tensor(WeightView{"w", rows, cols, x.data()}, parse_scheme(spec));
  const TypeTraits& t = type_traits(r.packed.type);
  r.out.resize(x.size());
  for (int64_t i = 0; i < rows; ++i) {
    t.dequantize_row(r.packed.bytes.data() + size_t(i) * row_bytes(t, cols), r.out.data() + i * cols, cols);
  }
  double e = 0, s = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    e += double(x[i] - r.out[i]) * (x[i] - r.out[i]);
    s += double(x[i]) * x[i];
    r.max_abs_err = std::max(r.max_abs_err, double(std::fabs(x[i] - r.out[i])));
  }
  r.rel_rms = s > 0 ? std::sqrt(e / s) : std::sqrt(e);
  return r;
}

// Every zero-shot method of the registry with its default options, every alias, and variants of
// the options that change the code path (so a new method is covered without editing this list).
std::vector<std::string> property_schemes() {
  std::vector<std::string> specs;
  auto add = [&](const std::string& s) {
    const std::string canonical = parse_scheme(s).to_string();
    for (const std::string& t : specs) {
      if (parse_scheme(t).to_string() == canonical) return;
    }
    specs.push_back(s);
  };
  for (const Method& m : registry().methods()) {
    if (m.quantize != nullptr && !m.needs_calibration_text() && !m.whole_model) add(m.name);
  }
  for (const Alias& a : registry().aliases()) {
    if (!registry().method(parse_scheme(a.name)).needs_calibration_text()) add(a.name);
  }
  for (const char* s : {"rtn:int2", "rtn:int3,group=32", "rtn:int4,sym=false", "rtn:int4,group=64,clip=mse",
                        "rtn:int5,group=channel", "rtn:int6,group=tensor", "rtn:int7,group=32,sym=false",
                        "rtn:int8,group=tensor,sym=false,clip=mse", "hqq:int2,group=32", "hqq:int3,group=128",
                        "hqq:int8,group=channel"}) {
    add(s);
  }
  return specs;
}
const std::vector<std::string> kSchemes = property_schemes();

class SchemeProperties : public ::testing::TestWithParam<std::string> {};

// Round-trip error within the bound the bits imply: for RTN with scale d, every value is within
// d/2 of its reconstruction (plus fp16 rounding of d), i.e. |err| <= max|w| / (2 qmax) * (1+2^-10)
// for the symmetric rule; checked exactly for RTN, by the format's Gaussian tolerance otherwise.
TEST_P(SchemeProperties, ErrorWithinBound) {
  const std::string spec = GetParam();
  const int64_t rows = 8, cols = 256;
  const auto x = gaussian(rows * cols, 3);
  const RoundTrip r = round_trip(spec, x, rows, cols);
  const TypeTraits& t = type_traits(r.packed.type);
  EXPECT_LE(r.rel_rms, std::max(t.test_tolerance, 1e-9) * 1.15) << t.name;
  const SchemeSpec s = parse_scheme(spec);
  if (s.method == "rtn" && s.get("clip") == "none") {
    float amax = 0;
    for (float v : x) amax = std::max(amax, std::fabs(v));
    const int bits = s.get_int("bits");
    const double step = s.get_bool("sym") ? amax / ((1 << (bits - 1)) - 1) : 2 * amax / ((1 << bits) - 1);
    EXPECT_LE(r.max_abs_err, step / 2 * (1 + 1.0 / 512) + 1e-7) << "half a step of the coarsest scale";
  }
}

TEST_P(SchemeProperties, DegenerateRows) {
  const std::string spec = GetParam();
  const int64_t rows = 2, cols = 256;
  // All zero: exact.
  EXPECT_EQ(round_trip(spec, std::vector<float>(rows * cols, 0.0f), rows, cols).max_abs_err, 0.0);
  // Constant: within the fp16 rounding of a scale (bf16: its own 2^-8).
  for (float c : {0.37f, -2.5f}) {
    const RoundTrip r = round_trip(spec, std::vector<float>(rows * cols, c), rows, cols);
    EXPECT_LE(r.max_abs_err, std::fabs(c) * (spec == "bf16" ? 1.0 / 256 : 2e-3) + 1e-7) << c;
  }
  // Subnormal: finite, never larger than the input.
  for (float scale : {1e-39f, 1e-44f}) {
    const auto x = gaussian(rows * cols, 4, scale);
    const RoundTrip r = round_trip(spec, x, rows, cols);
    float amax = 0, omax = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_TRUE(std::isfinite(r.out[i]));
      amax = std::max(amax, std::fabs(x[i]));
      omax = std::max(omax, std::fabs(r.out[i]));
    }
    EXPECT_LE(omax, 2 * amax + 1e-37f);
  }
}

TEST_P(SchemeProperties, NonFiniteAndHugeInputs) {
  const std::string spec = GetParam();
  const int64_t rows = 2, cols = 256;
  auto x = gaussian(rows * cols, 5);
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    x[300] = bad;
    try {
      quantize_tensor(WeightView{"blk.7.attn_q.weight", rows, cols, x.data()}, parse_scheme(spec));
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("blk.7.attn_q.weight: weight at row 1, column 44"), std::string::npos)
          << e.what();
    }
  }
  // Huge values: rejected with the tensor's name, or stored finitely.
  x = gaussian(rows * cols, 6, 1e30f);
  try {
    const RoundTrip r = round_trip(spec, x, rows, cols);
    for (float v : r.out) ASSERT_TRUE(std::isfinite(v));
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("w: ", 0), 0u) << e.what();
  }
}

TEST_P(SchemeProperties, Deterministic) {
  const std::string spec = GetParam();
  const auto x = gaussian(64 * 128, 8);
  EXPECT_EQ(round_trip(spec, x, 64, 128).packed.bytes, round_trip(spec, x, 64, 128).packed.bytes);
}

INSTANTIATE_TEST_SUITE_P(Quantizers, SchemeProperties, ::testing::ValuesIn(kSchemes), [](const auto& info) {
  std::string n = info.param;
  for (char& c : n) c = std::isalnum((unsigned char)c) ? c : '_';
  return n;
});

// Symmetric RTN and the casts are idempotent: requantizing dequantized values changes nothing
// (the scale comes back from the extreme code exactly, every value sits on a code).
TEST(SchemeIdempotence, SymmetricRtnAndCasts) {
  for (const char* spec : {"rtn:int4", "rtn:int3,group=32", "int8", "rtn:int6,group=tensor", "fp16", "bf16", "q8_0", "q4_0"}) {
    const auto x = gaussian(4 * 256, 9);
    const RoundTrip once = round_trip(spec, x, 4, 256);
    const RoundTrip twice = round_trip(spec, once.out, 4, 256);
    EXPECT_EQ(once.out, twice.out) << spec;
  }
}

TEST(SchemeClipMse, NeverWorseThanNoClipping) {
  for (const char* base : {"rtn:int2", "rtn:int3,group=32", "rtn:int4,sym=false", "rtn:int4,group=channel",
                           "rtn:int3,group=tensor,sym=false"}) {
    int better = 0;
    for (uint32_t seed = 0; seed < 4; ++seed) {
      // Heavy tails (Student-t like) make clipping pay off.
      auto x = gaussian(16 * 256, 20 + seed);
      std::mt19937 rng(seed);
      for (float& v : x) v = v / std::sqrt(0.3f + std::uniform_real_distribution<float>(0, 1)(rng));
      const double none = round_trip(base, x, 16, 256).rel_rms;
      const double mse = round_trip(std::string(base) + ",clip=mse", x, 16, 256).rel_rms;
      EXPECT_LE(mse, none) << base;
      better += mse < none;
    }
    EXPECT_GT(better, 0) << base << ": clipping never helped";
  }
}

TEST(SchemeShapes, GroupMustDivideTheRow) {
  const auto x = gaussian(2 * 96, 1);
  try {
    quantize_tensor(WeightView{"blk.0.ffn_down.weight", 2, 96, x.data()}, parse_scheme("rtn:int4,group=64"));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "blk.0.ffn_down.weight: rtn group size 64 does not divide the row length 96");
  }
  EXPECT_NO_THROW(quantize_tensor(WeightView{"w", 2, 96, x.data()}, parse_scheme("rtn:int4,group=32")));
  EXPECT_THROW(quantize_tensor(WeightView{"w", 2, 96, x.data()}, parse_scheme("nf4")), Error);
}

TEST(SchemeShapes, LlamaQuantizeFallbacks) {
  const auto x = gaussian(2 * 64, 1);
  const WeightView w{"output.weight", 2, 64, x.data()};
  EXPECT_EQ(quantize_tensor(w, parse_scheme("q6_K")).type, TensorType::Q8_0);
  EXPECT_EQ(quantize_tensor(w, parse_scheme("q5_K")).type, TensorType::Q5_1);
  EXPECT_EQ(quantize_tensor(w, parse_scheme("q4_K")).type, TensorType::Q5_0);
  EXPECT_EQ(quantize_tensor(w, parse_scheme("q3_K")).type, TensorType::Q4_0);
  EXPECT_EQ(quantize_tensor(w, parse_scheme("q2_K")).note, "q2_K -> q4_0 (64 columns)");
  const auto y = gaussian(2 * 80, 1);
  const PackedTensor p = quantize_tensor(WeightView{"w", 2, 80, y.data()}, parse_scheme("q6_K"));
  EXPECT_EQ(p.type, TensorType::F16);
  EXPECT_EQ(p.note, "q6_K -> q8_0 -> f16 (80 columns)");
  EXPECT_THROW(quantize_tensor(WeightView{"w", 2, 80, y.data()}, parse_scheme("q4_0")), Error);
}

TEST(SchemeFormats, BitsPerWeightIncludeScales) {
  auto bpw = [](const char* spec, int64_t cols) {
    const auto x = gaussian(4 * cols, 1);
    const PackedTensor p = quantize_tensor(WeightView{"w", 4, cols, x.data()}, parse_scheme(spec));
    return 8.0 * double(p.bytes.size()) / double(4 * cols);
  };
  EXPECT_DOUBLE_EQ(bpw("rtn:int4,group=128", 256), 4.0 + 16.0 / 128);
  EXPECT_DOUBLE_EQ(bpw("rtn:int4,group=128,sym=false", 256), 4.0 + 24.0 / 128);
  EXPECT_DOUBLE_EQ(bpw("rtn:int3,group=32", 256), 3.0 + 16.0 / 32);
  EXPECT_DOUBLE_EQ(bpw("int8", 256), 8.0 + 16.0 / 256);
  EXPECT_DOUBLE_EQ(bpw("rtn:int4,group=tensor", 256), 4.0 + 16.0 / 256);  // scale repeated per row
  EXPECT_DOUBLE_EQ(bpw("nf4", 256), 4.25);
  EXPECT_DOUBLE_EQ(bpw("fp8", 256), 8.0 + 32.0 / 256);
  EXPECT_DOUBLE_EQ(bpw("q4_K", 256), 4.5);
}

}  // namespace
}  // namespace qbench::quant
