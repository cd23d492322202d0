#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <ostream>
#include <string>
#include <utility>

#include "datasets/text.h"
#include "engine/core/error.h"
#include "engine/kernels/quant_dot.h"
#include "tasks/perplexity.h"
#include "engine/model/hf_writer.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

namespace qbench {
namespace {

TEST(NllStats, LlamaCppFormulas) {
  NllStats s;
  for (double v : {1.0, 2.0, 3.0, 4.0}) s.add(v);
  EXPECT_DOUBLE_EQ(s.mean(), 2.5);
  EXPECT_DOUBLE_EQ(s.ppl(), std::exp(2.5));
  // population variance 1.25, divided by count - 1 = 3
  EXPECT_DOUBLE_EQ(s.ppl_stderr(), std::exp(2.5) * std::sqrt(1.25 / 3.0));
  NllStats a, b;
  a.add(1.0);
  a.add(2.0);
  b.add(3.0);
  b.add(4.0);
  a.merge(b);
  EXPECT_DOUBLE_EQ(a.sum, s.sum);
  EXPECT_DOUBLE_EQ(a.sum2, s.sum2);
  EXPECT_EQ(a.count, s.count);
}

// Oracle: llama.cpp's own llama-perplexity (../shared/tools/llama.cpp, commit 84f7129) on the same
// files with exact F32 attention (its default, flash attention with an F16 KV cache, differs in
// the 5th digit):
//   llama-perplexity -m models/stories260K.gguf
//     -f datasets/tinystories/tinystories_validation_head.txt -c 256 -fa off -ctk f32 -ctv f32
// prints "[1]4.0444,...,[12]3.4927,...,[1535]4.8752," and "Final estimate: PPL = 4.8752 +/- 0.02346"
// (the same for -t 1 and -t 2). qbench must agree to every printed digit: within half a unit
// of the last one. Chunk and token counts are llama.cpp's protocol (PROTOCOLS.md): 393,019
// tokens, 1535 chunks, 194,945 scored.
struct LlamaPrinted {
  double value, half_unit;
};
constexpr LlamaPrinted kLlamaPpl{4.8752, 0.5e-4};
constexpr LlamaPrinted kLlamaPplStderr{0.02346, 0.5e-5};
constexpr LlamaPrinted kLlamaPplAfter1Chunk{4.0444, 0.5e-4};
constexpr LlamaPrinted kLlamaPplAfter12Chunks{3.4927, 0.5e-4};

// The whole text through the GGUF file; the llama2c and Hugging Face forms of the same model are
// checked below against this one: with the same tokens and the same weights the arithmetic is
// the same, so the same bits on the first chunks and the same tokens for the whole text mean the
// same final value (scoring 393K tokens again per form took 70 s of the suite).
Model load_stories260k_form(const std::string& form, const std::string& gguf, const std::string& bin,
                           const std::string& tok) {
  if (form == "llama2c") return load_model(bin, tok);
  // The GGUF written as a Hugging Face folder (safetensors, config.json, tokenizer.json with
  // the 512-token SentencePiece vocabulary).
  const std::string hf = test::temp_dir("ppl-hf") + "/stories260K";
  write_hf_folder(load_model(gguf), hf, {safetensors::DType::F32, 0});
  return load_model(hf);
}

TEST(Perplexity, Stories260KOnTinyStoriesAtCtx256MatchesLlamaPerplexity) {
  QBENCH_SHARED_FILE(gguf, "models/stories260K.gguf");
  QBENCH_SHARED_FILE(text_path, "datasets/tinystories/tinystories_validation_head.txt");
  PerplexityOptions opt;
  opt.n_ctx = 256;
  const Model m = load_model(gguf);
  const PerplexityResult r = llama_perplexity(m, m.tokenizer.encode(read_text_file(text_path), true), opt);
  EXPECT_EQ(r.n_text_tokens, 393019);
  EXPECT_EQ(r.n_chunks, 1535);
  EXPECT_EQ(r.stats.count, 194945);
  EXPECT_NEAR(r.ppl, kLlamaPpl.value, kLlamaPpl.half_unit);
  EXPECT_NEAR(r.ppl_stderr, kLlamaPplStderr.value, kLlamaPplStderr.half_unit);
}

class Stories260KFormTest : public ::testing::TestWithParam<const char*> {};

TEST_P(Stories260KFormTest, SameTokensAndSameBitsAsTheGguf) {
  QBENCH_SHARED_FILE(gguf, "models/stories260K.gguf");
  QBENCH_SHARED_FILE(bin, "models/stories260K.bin");
  QBENCH_SHARED_FILE(tok, "models/tok512.bin");
  QBENCH_SHARED_FILE(text_path, "datasets/tinystories/tinystories_validation_head.txt");
  const std::string text = read_text_file(text_path);
  const Model ref = load_model(gguf), m = load_stories260k_form(GetParam(), gguf, bin, tok);
  const auto tokens = m.tokenizer.encode(text, true);
  EXPECT_EQ(tokens, ref.tokenizer.encode(text, true));
  PerplexityOptions opt;
  opt.n_ctx = 256;
  opt.max_chunks = 12;
  const PerplexityResult r = llama_perplexity(m, tokens, opt), want = llama_perplexity(ref, tokens, opt);
  EXPECT_EQ(r.stats.count, 12 * 127);
  EXPECT_EQ(r.stats.sum, want.stats.sum);
  EXPECT_EQ(r.stats.sum2, want.stats.sum2);
  EXPECT_NEAR(r.ppl, kLlamaPplAfter12Chunks.value, kLlamaPplAfter12Chunks.half_unit);
}

INSTANTIATE_TEST_SUITE_P(Stories260K, Stories260KFormTest, ::testing::Values("llama2c", "hf"),
                         [](const auto& info) { return std::string(info.param); });

// The running values llama-perplexity prints after the first chunks (cheap enough for the
// sanitizer build, which skips nothing).
TEST(Perplexity, Stories260KFirstChunksMatchLlamaPerplexity) {
  QBENCH_SHARED_FILE(gguf, "models/stories260K.gguf");
  QBENCH_SHARED_FILE(text_path, "datasets/tinystories/tinystories_validation_head.txt");
  const Model m = load_model(gguf);
  const auto tokens = m.tokenizer.encode(read_text_file(text_path), true);
  PerplexityOptions opt;
  opt.n_ctx = 256;
  for (const auto& [chunks, want] : {std::pair{1, kLlamaPplAfter1Chunk}, std::pair{12, kLlamaPplAfter12Chunks}}) {
    opt.max_chunks = chunks;
    const PerplexityResult r = llama_perplexity(m, tokens, opt);
    EXPECT_EQ(r.stats.count, chunks * 127);
    EXPECT_NEAR(r.ppl, want.value, want.half_unit) << chunks << " chunks";
  }
}

// llama.cpp's own quantized files, 12 chunks of 256 on the same text:
//   llama-perplexity -m FILE -f datasets/tinystories/tinystories_validation_head.txt -c 256
//     --chunks 12 -fa off -ctk f32 -ctv f32 -t 2
// prints "Final estimate: PPL = <llama>" (the same with -t 1; for the stories260K files also with
// --no-repack, which for Q4_0 changes every chunk's value and meets again at 12 chunks by chance;
// for Q8_0 also with -b 256 -ub 1).
//   stories260K-*: models/stories260K-llamacpp-quantized (llama-quantize 84f7129, ffn_down kept F16,
//     output.weight Q8_0);
//   kquant-test-*: models/kquant-test (random weights, n_embd 256, llama-quantize --pure).
// Without quantized activations (F16, F32) qbench prints llama.cpp's digits on every path. With
// them (every other file) it cannot in general, and pins its own values instead, per path. Why
// (docs/kernels.md, "Agreement with llama.cpp"): both quantize the same activations to the same
// bytes (ggml's x86 rule, tests/engine/test_quant_dot.cc) and multiply them in integers, but the
// float work around them (attention, softmax, RoPE, norms, each kernel's order of adding block
// products; llama.cpp also rounds the activations of its F16 matrices to fp16) differs in the
// last bits; now and then such a difference moves a value across a rounding boundary of the
// 8-bit activation grid, that token's next activations change by ~1e-3 and cross many more
// boundaries, so from then on the chunk sees another draw of activation-quantization noise.
// The 12-chunk value then moves by up to ~0.15% (stories260K, 1524 scored tokens) or ~0.06%
// (kquant-test), with either sign, as much as between qbench's own paths (same activation
// bytes, another order of float additions) or between llama.cpp with -fa off and -fa on (f32 KV
// cache: only the attention's order changes). So the llama.cpp value is checked within a bound
// twice that spread, and qbench's own value on each path to its 4th decimal: any change of a
// kernel's float order, or of any activation byte, moves these (update them, saying why).
struct QuantizedFileCase {
  const char* rel;       // under $QBENCH_SHARED/models
  LlamaPrinted llama;    // llama-perplexity's "Final estimate"
  double qbench_avx512;  // qbench's 12-chunk value on each kernel path (0: not run)
  double qbench_avx2;
  double qbench_scalar;
  double max_rel_diff;  // |qbench / llama - 1| allowed on every path; 0: the printed digits
};

constexpr QuantizedFileCase kQuantizedFiles[] = {
    {"stories260K-llamacpp-quantized/stories260K-F16.gguf", {3.4925, 0.5e-4}, 3.4925, 3.4925, 3.4925, 0},
    {"stories260K-llamacpp-quantized/stories260K-Q8_0.gguf", {3.5003, 0.5e-4}, 3.4966, 3.4947, 3.4982, 2.5e-3},
    {"stories260K-llamacpp-quantized/stories260K-Q4_0.gguf", {3.7510, 0.5e-4}, 3.7482, 3.7518, 3.7473, 2.5e-3},
    {"stories260K-llamacpp-quantized/stories260K-Q4_1.gguf", {3.6772, 0.5e-4}, 3.6772, 3.6783, 3.6796, 2.5e-3},
    {"stories260K-llamacpp-quantized/stories260K-Q5_0.gguf", {3.5213, 0.5e-4}, 3.5209, 3.5204, 3.5214, 2.5e-3},
    {"stories260K-llamacpp-quantized/stories260K-Q5_1.gguf", {3.4900, 0.5e-4}, 3.4880, 3.4890, 3.4896, 2.5e-3},
    // The scalar path takes ~15 s per kquant-test file (256-wide rows): not run.
    {"kquant-test/kquant-test-F32.gguf", {622.1967, 0.5e-4}, 622.1967, 622.1967, 0, 0},
    {"kquant-test/kquant-test-Q8_0.gguf", {622.7174, 0.5e-4}, 622.5886, 622.6334, 0, 1e-3},
    {"kquant-test/kquant-test-Q4_0.gguf", {659.2506, 0.5e-4}, 659.2969, 659.3326, 0, 1e-3},
    {"kquant-test/kquant-test-Q4_1.gguf", {628.1098, 0.5e-4}, 628.1536, 628.1761, 0, 1e-3},
    {"kquant-test/kquant-test-Q5_0.gguf", {618.9176, 0.5e-4}, 619.0141, 618.9947, 0, 1e-3},
    {"kquant-test/kquant-test-Q5_1.gguf", {616.4228, 0.5e-4}, 616.3393, 616.3572, 0, 1e-3},
    {"kquant-test/kquant-test-Q2_K.gguf", {655.7329, 0.5e-4}, 655.8424, 655.8082, 0, 1e-3},
    {"kquant-test/kquant-test-Q3_K.gguf", {613.0517, 0.5e-4}, 612.8053, 612.8242, 0, 1e-3},
    {"kquant-test/kquant-test-Q4_K.gguf", {628.4815, 0.5e-4}, 628.3513, 628.2978, 0, 1e-3},
    {"kquant-test/kquant-test-Q5_K.gguf", {620.9648, 0.5e-4}, 620.9388, 621.0037, 0, 1e-3},
    {"kquant-test/kquant-test-Q6_K.gguf", {619.3841, 0.5e-4}, 619.4097, 619.4408, 0, 1e-3},
};

// ctest lists the file instead of the parameter's bytes.
void PrintTo(const QuantizedFileCase& c, std::ostream* os) { *os << c.rel; }

class PerplexityLlamaCppFileTest : public ::testing::TestWithParam<QuantizedFileCase> {};

TEST_P(PerplexityLlamaCppFileTest, AgreesWithLlamaPerplexityAt12Chunks) {
  const QuantizedFileCase& c = GetParam();
  QBENCH_SHARED_FILE(path, std::string("models/") + c.rel);
  QBENCH_SHARED_FILE(text_path, "datasets/tinystories/tinystories_validation_head.txt");
  Model m = load_model(path);
  const auto tokens = m.require_tokenizer().encode(read_text_file(text_path), true);
  PerplexityOptions opt;
  opt.n_ctx = 256;
  opt.max_chunks = 12;
  const std::pair<CpuIsa, double> paths[] = {
      {CpuIsa::Avx512, c.qbench_avx512}, {CpuIsa::Avx2, c.qbench_avx2}, {CpuIsa::Scalar, c.qbench_scalar}};
  int ran = 0;
  for (const auto& [isa, pinned] : paths) {
    if (pinned == 0 || !isa_available(isa)) continue;
    SCOPED_TRACE(std::string(isa_name(isa)));
    m.matmul.isa = isa;
    const PerplexityResult r = llama_perplexity(m, tokens, opt);
    ++ran;
    EXPECT_EQ(r.stats.count, 12 * 127);
    std::printf("[          ] %s on %s: PPL %.4f, llama-perplexity %.4f (%+.3f%%)\n", c.rel,
                std::string(isa_name(isa)).c_str(), r.ppl, c.llama.value, 100 * (r.ppl / c.llama.value - 1));
    EXPECT_NEAR(r.ppl, pinned, 0.5e-4) << "qbench's own value moved";
    if (c.max_rel_diff == 0) {
      EXPECT_NEAR(r.ppl, c.llama.value, c.llama.half_unit) << "llama-perplexity's printed digits";
    } else {
      EXPECT_NEAR(r.ppl / c.llama.value, 1.0, c.max_rel_diff) << "beyond float-order noise of llama-perplexity's value";
    }
  }
  EXPECT_GT(ran, 0);
}

INSTANTIATE_TEST_SUITE_P(Files, PerplexityLlamaCppFileTest, ::testing::ValuesIn(kQuantizedFiles), [](const auto& info) {
  std::string s = std::filesystem::path(info.param.rel).stem().string();
  std::replace(s.begin(), s.end(), '-', '_');
  return s;
});

TEST(Perplexity, SameBitsForAnyThreadCountAndChunkLimit) {
  QBENCH_SHARED_FILE(gguf, "models/stories260K.gguf");
  QBENCH_SHARED_FILE(text_path, "datasets/tinystories/tinystories_validation_head.txt");
  const Model m = load_model(gguf);
  const auto tokens = m.tokenizer.encode(read_text_file(text_path), true);
  PerplexityOptions opt;
  opt.n_ctx = 128;
  opt.max_chunks = 12;
  PerplexityResult one, two;
  {
    tbb::global_control c(tbb::global_control::max_allowed_parallelism, 1);
    one = llama_perplexity(m, tokens, opt);
  }
  {
    tbb::global_control c(tbb::global_control::max_allowed_parallelism, 2);
    two = llama_perplexity(m, tokens, opt);
  }
  EXPECT_EQ(one.n_chunks, 12);
  EXPECT_EQ(one.stats.count, 12 * 63);
  EXPECT_EQ(one.stats.sum, two.stats.sum);
  EXPECT_EQ(one.stats.sum2, two.stats.sum2);
}

TEST(Perplexity, ScoresOnlyTheSecondHalfWithBosAtEachChunkStart) {
  // A hand-checkable property: with every chunk starting at BOS, two token streams that differ
  // only in the first token of chunk 2 have identical perplexity (that token is replaced).
  const std::string dir = test::temp_dir("ppl-bos");
  const Model m = load_model(test::write_tiny_model(dir + "/m.gguf"));
  std::vector<int32_t> a(64);
  for (size_t i = 0; i < a.size(); ++i) a[i] = int32_t(3 + (i * 7) % 250);
  a[0] = 1;
  std::vector<int32_t> b = a;
  b[32] = 77;  // first token of the second chunk at n_ctx 32
  PerplexityOptions opt;
  opt.n_ctx = 32;
  const auto ra = llama_perplexity(m, a, opt), rb = llama_perplexity(m, b, opt);
  EXPECT_EQ(ra.stats.count, 2 * 15);
  EXPECT_EQ(ra.stats.sum, rb.stats.sum);
  // A token inside chunk 1 (not its first) is context or target of scored positions: it counts.
  std::vector<int32_t> c = a;
  c[20] = 99;
  EXPECT_NE(llama_perplexity(m, c, opt).stats.sum, ra.stats.sum);
}

TEST(Perplexity, RejectsTextsShorterThanTwoChunks) {
  const std::string dir = test::temp_dir("ppl-short");
  const Model m = load_model(test::write_tiny_model(dir + "/m.gguf"));
  PerplexityOptions opt;
  opt.n_ctx = 32;
  EXPECT_THROW(llama_perplexity(m, std::vector<int32_t>(63, 5), opt), Error);
  EXPECT_NO_THROW(llama_perplexity(m, std::vector<int32_t>(64, 5), opt));
}

// Zero scored tokens never print "PPL = 1.0000": --chunks 0 and a context so large that 2 * ctx
// overflows are errors.
TEST(Perplexity, NothingScoredIsAnError) {
  const std::string dir = test::temp_dir("ppl-zero");
  const Model m = load_model(test::write_tiny_model(dir + "/m.gguf"));
  const std::vector<int32_t> tokens(200, 5);
  PerplexityOptions opt;
  opt.n_ctx = 32;
  opt.max_chunks = 0;
  EXPECT_THROW(llama_perplexity(m, tokens, opt), Error);
  opt.max_chunks = -2;
  EXPECT_THROW(llama_perplexity(m, tokens, opt), Error);
  opt.max_chunks = -1;
  opt.n_ctx = int64_t(1) << 62;
  try {
    llama_perplexity(m, tokens, opt);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the text has 200 tokens"), std::string::npos) << e.what();
  }
  opt.n_ctx = std::numeric_limits<int64_t>::max();
  EXPECT_THROW(llama_perplexity(m, tokens, opt), Error);
}

// NaN weights: an error naming the chunk, the position and the tensor, never "PPL = nan".
TEST(Perplexity, NonFiniteWeightsAreAnErrorNamingTheTensor) {
  const std::string dir = test::temp_dir("ppl-nan");
  gguf::Writer w = test::tiny_model_writer();
  std::vector<float> v(size_t(32 * 32), 0.01f);
  v[3] = std::numeric_limits<float>::infinity();
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  w.remove_tensor("blk.0.attn_output.weight");
  w.add_tensor("blk.0.attn_output.weight", {32, 32}, TensorType::F32, b);
  w.write(dir + "/inf.gguf");
  const Model m = load_model(dir + "/inf.gguf");
  PerplexityOptions opt;
  opt.n_ctx = 16;
  try {
    const PerplexityResult r = llama_perplexity(m, std::vector<int32_t>(64, 70), opt);
    ADD_FAILURE() << "PPL = " << r.ppl;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("chunk "), std::string::npos) << msg;
    EXPECT_NE(msg.find("non-finite logit"), std::string::npos) << msg;
    EXPECT_NE(msg.find("blk.0.attn_output.weight row 0, column 3 (inf)"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace qbench
