// Pieces of qbench run that need no model file: sha256, configs, McNemar, report rendering, shapes,
// the weight bytes a decoded token reads and the bandwidth probe's bookkeeping.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "engine/core/error.h"
#include "harness/run/bandwidth.h"
#include "harness/run/compare.h"
#include "harness/run/config.h"
#include "harness/run/report.h"
#include "harness/run/results.h"
#include "harness/run/shapes.h"
#include "harness/sha256.h"
#include "quantizers/calibration.h"
#include "quantizers/quantize_model.h"
#include "quantizers/registry.h"
#include "tests/harness/test_run_util.h"

namespace qbench {
namespace {

TEST(Sha256, KnownVectors) {
  // FIPS 180-4 examples and the NIST one-million-'a' vector.
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // 55, 56 and 64 bytes: the padding boundaries.
  EXPECT_EQ(sha256_hex(std::string(55, 'a')), "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  EXPECT_EQ(sha256_hex(std::string(56, 'a')), "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  EXPECT_EQ(sha256_hex(std::string(64, 'a')), "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST(Sha256, IncrementalEqualsOneShot) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data += char('a' + i % 26);
  for (size_t step : {1u, 7u, 63u, 64u, 65u, 333u}) {
    Sha256 h;
    for (size_t p = 0; p < data.size(); p += step) h.update(std::string_view(data).substr(p, step));
    EXPECT_EQ(h.hex_digest(), sha256_hex(data)) << "step " << step;
  }
  const std::string dir = test::temp_dir("sha-file");
  std::ofstream(dir + "/f") << data;
  EXPECT_EQ(sha256_file(dir + "/f"), sha256_hex(data));
  EXPECT_THROW(sha256_file(dir + "/absent"), Error);
}

TEST(RunConfig, DefaultFileIsTheBuiltInDefault) {
  const auto c = run::load_config(QBENCH_SOURCE_DIR "/experiments/default.json");
  EXPECT_EQ(c.to_json(), run::ExperimentConfig{}.to_json());
  EXPECT_EQ(c.schemes, (std::vector<std::string>{"fp16", "int8", "rtn:int4,group=128", "gptq:int4,group=128", "q4_K", "nf4"}));
  // Round trip through JSON.
  EXPECT_EQ(run::parse_config(c.to_json(), "x").to_json(), c.to_json());
  // Every declared field is listed and written.
  const auto fields = run::experiment_fields();
  EXPECT_EQ(fields.size(), c.to_json().size());
  for (const auto& f : fields) EXPECT_TRUE(c.to_json().contains(f.name)) << f.name;
}

TEST(RunConfig, ShippedExperimentsParseAndAllSchemesCoversTheRegistry) {
  for (const char* name : {"default", "seed-table", "all-schemes", "qat", "qat-budget", "hqq"}) {
    EXPECT_NO_THROW(run::load_config(std::string(QBENCH_SOURCE_DIR "/experiments/") + name + ".json")) << name;
  }
  const auto all = run::load_config(QBENCH_SOURCE_DIR "/experiments/all-schemes.json");
  std::set<std::string> methods;
  for (const auto& s : all.schemes) methods.insert(quant::make_recipe(s).scheme.method);
  // `keep` quantizes nothing: on the F32 default model it would repeat the f32 row.
  for (const auto& m : quant::registry().methods()) {
    if (m.name == "keep") continue;
    EXPECT_TRUE(methods.count(m.name)) << "all-schemes lacks " << m.name;
  }
  const auto seed = run::load_config(QBENCH_SOURCE_DIR "/experiments/seed-table.json");
  EXPECT_EQ(seed.schemes, (std::vector<std::string>{"fp16", "int8", "rtn:int4,group=128"}));
}

void expect_config_error(const nlohmann::json& j, const std::string& needle) {
  try {
    run::parse_config(j, "exp.json");
    ADD_FAILURE() << "no error for " << j.dump();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("exp.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(RunConfig, CanonicalSchemes) {
  EXPECT_EQ(run::scheme_canonical("int4"), "rtn:int4,group=128,sym=true,clip=none");
  EXPECT_EQ(run::scheme_canonical("rtn:int4,group=128"), "rtn:int4,group=128,sym=true,clip=none");
  EXPECT_EQ(run::scheme_canonical("q4_K"), "Q4_K_M");  // a GGUF type name is llama-quantize's file type
  EXPECT_EQ(run::scheme_canonical("f16"), "fp16");
  EXPECT_THROW(run::scheme_canonical("int9"), Error);
}

TEST(RunConfig, SharedFolderInPaths) {
  setenv("QBENCH_SHARED", "/data/shared", 1);
  EXPECT_EQ(run::expand_path("$QBENCH_SHARED/models/m.gguf", "model"), "/data/shared/models/m.gguf");
  EXPECT_EQ(run::expand_path("models/m.gguf", "model"), "models/m.gguf");
  unsetenv("QBENCH_SHARED");
  try {
    run::expand_path("$QBENCH_SHARED/models/m.gguf", "model");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("field 'model'"), std::string::npos) << e.what();
  }
}

TEST(RunConfig, ErrorsNameFileFieldAndValue) {
  expect_config_error({{"limt", 3}}, "unknown field 'limt'");
  expect_config_error({{"limit", "3"}}, "field 'limit': expected an integer, got \"3\"");
  expect_config_error({{"limit", -1}}, "field 'limit'");
  expect_config_error({{"schemes", "fp16"}}, "field 'schemes': expected a list of strings");
  expect_config_error({{"schemes", {"fp16", 3}}}, "field 'schemes'");
  expect_config_error({{"schemes", {"int9"}}}, "field 'schemes'");
  expect_config_error({{"schemes", {"fp16", "f16"}}}, "listed twice");
  expect_config_error({{"schemes", nlohmann::json::array()}}, "at least one scheme");
  expect_config_error({{"baseline", "q4_0"}}, "field 'baseline'");
  expect_config_error({{"version", 2}}, "field 'version'");
  expect_config_error({{"kl", true}, {"perplexity", false}}, "field 'kl'");
  expect_config_error({{"speed_reps", 0}}, "field 'speed_reps'");
  expect_config_error({{"speed_shape", "gpt-5"}}, "field 'speed_shape': unknown shape 'gpt-5' (known: tinyllama-1.1b, ");
  expect_config_error({{"speed_shape", 3}}, "field 'speed_shape': expected a string");
  expect_config_error({{"speed_bandwidth_mib", -1}}, "field 'speed_bandwidth_mib'");
  expect_config_error({{"perplexity", "yes"}}, "expected a boolean");
  expect_config_error(nlohmann::json::array(), "JSON object");
  const std::string dir = test::temp_dir("cfg");
  std::ofstream(dir + "/bad.json") << "{\"limit\": ";
  EXPECT_THROW(run::load_config(dir + "/bad.json"), Error);
}

TEST(RunCompare, McNemarMidP) {
  EXPECT_DOUBLE_EQ(run::mcnemar_mid_p(0, 0), 1.0);
  EXPECT_DOUBLE_EQ(run::mcnemar_mid_p(5, 0), 0.5 / 32.0);            // all 5 discordant items lost
  EXPECT_DOUBLE_EQ(run::mcnemar_mid_p(0, 5), 31.0 / 32.0 + 0.5 / 32.0);
  EXPECT_NEAR(run::mcnemar_mid_p(3, 3), 0.5, 1e-12);                 // symmetric: no evidence
  EXPECT_LT(run::mcnemar_mid_p(40, 10), 1e-4);
}

TEST(RunResults, QualityPercentFollowsTheMetricsDirection) {
  EXPECT_DOUBLE_EQ(*run::quality_pct(0.45, 0.5, true), 90.0);   // accuracy
  EXPECT_DOUBLE_EQ(*run::quality_pct(12.5, 10.0, false), 80.0);  // perplexity up 25%
  EXPECT_DOUBLE_EQ(*run::quality_pct(-12.5, -10.0, true), 80.0); // log-likelihood down
  EXPECT_DOUBLE_EQ(*run::quality_pct(0.0, 0.5, true), 0.0);     // accuracy fell to zero
  EXPECT_FALSE(run::quality_pct(0.3, 0.0, true));
  EXPECT_FALSE(run::quality_pct(-1.0, 2.0, true));
  EXPECT_EQ(run::primary_metric("multiple_choice"), "acc");
  EXPECT_EQ(run::primary_metric("rolling_loglik"), "byte_perplexity");
}

TEST(RunConfig, SpeedShapeIsAKnownShapeForEveryScheme) {
  const auto c = run::parse_config({{"speed_shape", "tiny"}, {"schemes", {"fp16", "gptq:int4,group=32", "q4_K"}}}, "exp.json");
  EXPECT_EQ(c.speed_shape, "tiny");
  EXPECT_EQ(run::ExperimentConfig{}.speed_bandwidth_mib, 512);
  EXPECT_NO_THROW(run::parse_config({{"speed_bandwidth_mib", 0}}, "exp.json"));
}

TEST(RunShapes, PublishedParameterCounts) {
  // Published sizes: TinyLlama 1.1B, Llama-3.2-1B 1.24B (tied), Qwen2.5-0.5B 0.49B (tied),
  // llama-160m 0.162B (the Open LLM / hallucinations leaderboards' "params": 0.162).
  EXPECT_NEAR(double(run::shape_parameters(run::find_shape("llama-160m"))) / 1e9, 0.162, 0.001);
  EXPECT_EQ(run::shape_parameters(run::find_shape("llama-160m")), 2 * 32000 * 768 + 768 + 12 * (4 * 768 * 768 + 3 * 768 * 3072 + 2 * 768));
  EXPECT_NEAR(double(run::shape_parameters(run::find_shape("tinyllama-1.1b"))) / 1e9, 1.100, 0.001);
  EXPECT_NEAR(double(run::shape_parameters(run::find_shape("llama-3.2-1b"))) / 1e9, 1.236, 0.001);
  EXPECT_NEAR(double(run::shape_parameters(run::find_shape("qwen2.5-0.5b"))) / 1e9, 0.494, 0.001);
  EXPECT_EQ(run::find_shape("qwen2.5-0.5b").config.rope_type, RopeType::Neox);
  EXPECT_TRUE(run::find_shape("qwen2.5-0.5b").qkv_bias);
  EXPECT_THROW(run::find_shape("gpt-5"), Error);
  const auto& tiny = run::find_shape("tiny");
  const Model m = run::build_random_model(tiny, 3);
  EXPECT_EQ(m.n_params(), run::shape_parameters(tiny));
  const Model q = run::build_random_model(run::find_shape("tiny"), 3);
  EXPECT_EQ(std::memcmp(m.layers[1].w_up.data, q.layers[1].w_up.data, m.layers[1].w_up.bytes()), 0);  // deterministic
  EXPECT_NE(m.layers[1].w_up.data, m.layers[0].w_up.data);
  // Shared layers: one F32 draw, but every layer packed into its own bytes.
  const Model shared = run::build_random_model(tiny, 3, /*share_layer_weights=*/true);
  EXPECT_EQ(shared.n_params(), m.n_params());
  EXPECT_EQ(shared.layers[1].w_up.data, shared.layers[0].w_up.data);
  const Model packed = quant::quantize_model(shared, quant::make_recipe("q8_0"));
  EXPECT_NE(packed.layers[1].w_up.data, packed.layers[0].w_up.data);  // distinct packed copies
  EXPECT_EQ(packed.layers[1].w_up.type, TensorType::Q8_0);
}

TEST(Compare, PairSplitsWhereBothSidesNameRuns) {
  const nlohmann::json base = {{"runs", {{{"scheme", "fp16"}, {"scheme_canonical", "fp16"}},
                                         {{"scheme", "gptq:int4,group=128"}, {"scheme_canonical", "gptq:int4,group=128,x=1"}}}}};
  const nlohmann::json cand = {{"runs", {{{"scheme", "rtn:int4,group=128"}, {"scheme_canonical", "rtn:int4,group=128,sym=true"}}}}};
  EXPECT_EQ(run::split_pair("gptq:int4,group=128=rtn:int4,group=128", base, cand),
            (std::pair<std::string, std::string>{"gptq:int4,group=128", "rtn:int4,group=128"}));
  EXPECT_EQ(run::split_pair("fp16=rtn:int4,group=128,sym=true", base, cand),
            (std::pair<std::string, std::string>{"fp16", "rtn:int4,group=128,sym=true"}));
  EXPECT_EQ(run::split_pair("a=b", base, cand), (std::pair<std::string, std::string>{"a", "b"}));  // reported later
  EXPECT_THROW(run::split_pair("fp16", base, cand), Error);
  EXPECT_THROW(run::split_pair("=fp16", base, cand), Error);
}

// Weight bytes per decoded token against a hand count. The tiny shape (n_embd 256, n_ff 512,
// 4 heads, 2 KV heads: K/V rows 128, vocabulary 512, 2 layers, untied) in llama.cpp's Q8_0 mix,
// every matrix q8_0 (34 bytes per 32 values): a row of 256 is 272 bytes, of 512 544 bytes.
TEST(RunBandwidth, DecodeWeightBytesByHand) {
  const Model q = quant::quantize_model(run::build_random_model(run::find_shape("tiny"), 1, true), quant::make_recipe("q8_0"));
  ASSERT_EQ(q.tok_embd.type, TensorType::Q8_0);
  ASSERT_EQ(q.output.type, TensorType::Q8_0);
  const size_t per_layer = 256 * 272     // wq
                           + 128 * 272   // wk
                           + 128 * 272   // wv
                           + 256 * 272   // wo
                           + 512 * 272   // w_gate
                           + 512 * 272   // w_up
                           + 256 * 544;  // w_down
  const run::DecodeWeightBytes b = run::decode_weight_bytes(q);
  EXPECT_EQ(b.layers, 2 * per_layer);
  EXPECT_EQ(b.layers, 1253376u);
  EXPECT_EQ(b.output, 512u * 272);
  EXPECT_EQ(b.embedding_row, 272u);
  EXPECT_EQ(b.total(), 1253376u + 139264 + 272);
  // Tied output (F32 file: n_embd 32, K/V rows 16, n_ff 48, vocabulary 300): the head is the
  // embedding matrix, read whole for the logits and once more as a row for the lookup.
  test::TinySpec spec;
  spec.tied = true;
  const std::string dir = test::temp_dir("decode-bytes");
  const Model t = load_model(test::write_tiny_model(dir + "/tied.gguf", spec));
  ASSERT_TRUE(t.tied_output);
  const run::DecodeWeightBytes tb = run::decode_weight_bytes(t);
  EXPECT_EQ(tb.layers, 2u * 4 * (32 * 32 + 16 * 32 + 16 * 32 + 32 * 32 + 3 * 48 * 32));
  EXPECT_EQ(tb.output, 4u * 300 * 32);
  EXPECT_EQ(tb.embedding_row, 4u * 32);
  const nlohmann::json j = run::decode_bandwidth_json(b, 10.0, nullptr);
  EXPECT_EQ(j["weight_bytes_per_token"], b.total());
  EXPECT_DOUBLE_EQ(j["weight_gb_per_s"].get<double>(), double(b.total()) * 10.0 / 1e9);
  EXPECT_TRUE(j["fraction_of_read_bandwidth"].is_null());
}

// The probe's bookkeeping (not its speed): every pass reads the whole buffer of 0, 1, 2, ...
TEST(RunBandwidth, ProbeReadsTheWholeBufferEveryPass) {
  run::BandwidthOptions o;
  o.buffer_bytes = size_t(3) << 20;  // 3 pieces of 1 MiB
  o.threads = 2;
  o.min_passes = 2;
  o.max_passes = 2;
  const run::ReadBandwidth r = run::measure_read_bandwidth(o);
  ASSERT_EQ(r.pass_bytes_per_second.size(), 2u);
  const uint64_t n = o.buffer_bytes / 8;
  EXPECT_EQ(r.checksum, 2 * (n * (n - 1) / 2));
  EXPECT_EQ(r.buffer_bytes, o.buffer_bytes);
  EXPECT_EQ(r.threads, 2);
  EXPECT_GT(r.best_bytes_per_second, 0.0);
  EXPECT_GE(r.best_bytes_per_second, r.median_bytes_per_second);
  const nlohmann::json d = run::decode_bandwidth_json(run::DecodeWeightBytes{1000, 0, 0}, 2.0, &r);
  EXPECT_DOUBLE_EQ(d["fraction_of_read_bandwidth"].get<double>(), 2000.0 / r.best_bytes_per_second);
}

TEST(RunShapes, CalibratedSchemesAreMeasuredAsTheSameFormatWithoutCalibration) {
  EXPECT_EQ(run::uncalibrated_equivalent("gptq:int4,group=128"), "rtn:int4,group=128,sym=true");
  EXPECT_EQ(run::uncalibrated_equivalent("awq:int3,group=32,sym=false"), "rtn:int3,group=32,sym=false");
  EXPECT_EQ(run::uncalibrated_equivalent("smoothquant"), "w8a8");
  // QAT trains into rtn's formats: its speed is theirs.
  EXPECT_EQ(run::uncalibrated_equivalent("qat:int2,group=32,init=gptq,steps=5"), "rtn:int2,group=32,sym=true");
  EXPECT_EQ(run::uncalibrated_equivalent("qat:int4,group=32,target=q4_0"), "q4_0:");
  for (const char* same : {"fp16", "int8", "q4_K", "rtn:int4,group=128", "nf4", "Q4_K_M"}) {
    EXPECT_EQ(run::uncalibrated_equivalent(same), same);
  }
  EXPECT_EQ(run::speed_shape_label("tiny", "fp16", "fp16"), "speed measured at tiny shape, random weights");
  EXPECT_EQ(run::speed_shape_label("tiny", "gptq:x", "rtn:y"),
            "speed measured at tiny shape, random weights (gptq:x as rtn:y, the same packed format without calibration or "
            "training)");
  EXPECT_THROW(run::quantized_random_model(run::find_shape("tiny"), "gptq:int4,group=32", nullptr), Error);
  // Every method that needs calibration text has an equivalent, and it writes the same formats
  // (tensor by tensor, with the same bytes) as the method with calibration, on a tiny model.
  test::TinySpec spec;
  spec.n_embd = 64;
  spec.n_ff = 128;
  const std::string dir = test::temp_dir("calib-equivalent");
  const Model m = load_model(test::write_tiny_model(dir + "/m.gguf", spec));
  std::vector<int32_t> tokens(600);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t(3 + (i * 7919) % (spec.n_vocab - 3));
  quant::Calibration calib;
  calib.windows = quant::make_calib_windows(tokens, quant::CalibConfig{"", 4, 32, 0}, "tokens", 1);
  int checked = 0;
  for (const auto& method : quant::registry().methods()) {
    if (!method.needs_calibration_text()) continue;
    const std::string scheme = method.name == "smoothquant" ? "smoothquant" : method.name + ":int4,group=32";
    SCOPED_TRACE(scheme);
    const std::string equivalent = run::uncalibrated_equivalent(scheme);
    quant::QuantizeReport with, without;
    quant::quantize_model(m, quant::make_recipe(scheme), &with, &calib);
    quant::quantize_model(m, quant::make_recipe(equivalent), &without);
    ASSERT_EQ(with.tensors.size(), without.tensors.size());
    for (size_t i = 0; i < with.tensors.size(); ++i) {
      EXPECT_EQ(with.tensors[i].name, without.tensors[i].name);
      EXPECT_EQ(with.tensors[i].format, without.tensors[i].format) << with.tensors[i].name;
      EXPECT_EQ(with.tensors[i].bytes, without.tensors[i].bytes) << with.tensors[i].name;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 3);  // gptq, awq, smoothquant
}

}  // namespace
}  // namespace qbench
