#include <gtest/gtest.h>
#include <tbb/global_control.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "datasets/text.h"
#include "engine/core/error.h"
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

TEST(Perplexity, Stories260KOnTinyStoriesAtCtx256MatchesLlamaPerplexityInEveryFileForm) {
  QBENCH_SHARED_FILE(gguf, "models/stories260K.gguf");
  QBENCH_SHARED_FILE(bin, "models/stories260K.bin");
  QBENCH_SHARED_FILE(tok, "models/tok512.bin");
  QBENCH_SHARED_FILE(text_path, "datasets/tinystories/tinystories_validation_head.txt");
  const std::string text = read_text_file(text_path);
  PerplexityOptions opt;
  opt.n_ctx = 256;
  // Third form: the GGUF written as a Hugging Face folder (safetensors, config.json,
  // tokenizer.json with the 512-token SentencePiece vocabulary).
  const std::string hf = test::temp_dir("ppl-hf") + "/stories260K";
  write_hf_folder(load_model(gguf), hf, {safetensors::DType::F32, 0});
  for (const Model& m : {load_model(gguf), load_model(bin, tok), load_model(hf)}) {
    const auto tokens = m.tokenizer.encode(text, true);
    const PerplexityResult r = llama_perplexity(m, tokens, opt);
    EXPECT_EQ(r.n_text_tokens, 393019);
    EXPECT_EQ(r.n_chunks, 1535);
    EXPECT_EQ(r.stats.count, 194945);
    EXPECT_NEAR(r.ppl, kLlamaPpl.value, kLlamaPpl.half_unit) << m.path;
    EXPECT_NEAR(r.ppl_stderr, kLlamaPplStderr.value, kLlamaPplStderr.half_unit) << m.path;
  }
}

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
