// llama.cpp's importance-matrix files (quantizers/imatrix.h): read in both of llama.cpp's forms,
// written in its GGUF form, and, the oracle, llama-quantize's own bytes: with the same imatrix
// file, qbench quantize --pure gives every tensor of every importance-weighted type exactly as
// llama-quantize --pure --imatrix does (llama-quantize is run by the test on the shared
// kquant-test model; ../shared/tools/llama.cpp, commit 84f7129).
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/io/gguf.h"
#include "quantizers/imatrix.h"
#include "tests/gguf_compare.h"
#include "tests/harness/test_run_util.h"
#include "tests/test_util.h"

namespace qbench {
namespace {

using quant::Imatrix;
using test::expect_same_tensors;
using quant::read_imatrix;
using quant::write_imatrix;

constexpr const char* kModel = "models/kquant-test/kquant-test-F32.gguf";
constexpr const char* kImatrixGguf = "models/kquant-test/kquant-test-imatrix.gguf";
constexpr const char* kImatrixDat = "models/kquant-test/kquant-test-imatrix.dat";

// Runs llama-quantize; its output goes to DIR/llama-quantize.log. True when it exited 0.
bool llama_quantize(const std::string& tool, const std::string& args, const std::string& dir) {
  const std::string cmd = "'" + tool + "' " + args + " >'" + dir + "/llama-quantize.log' 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// How many tensors differ in bytes between two files of the same tensors.
int differing_tensors(const std::string& a_path, const std::string& b_path) {
  const auto a = gguf::File::open(a_path);
  const auto b = gguf::File::open(b_path);
  int n = 0;
  for (const gguf::TensorInfo& tb : b->tensors()) {
    const gguf::TensorInfo* ta = a->find_tensor(tb.name);
    if (ta == nullptr || ta->nbytes != tb.nbytes || std::memcmp(ta->data, tb.data, ta->nbytes) != 0) ++n;
  }
  return n;
}

TEST(ImatrixFile, LlamaCppGgufAndLegacyDatReadAlike) {
  QBENCH_SHARED_FILE(gguf_path, kImatrixGguf);
  QBENCH_SHARED_FILE(dat_path, kImatrixDat);
  const Imatrix g = read_imatrix(gguf_path);
  const Imatrix d = read_imatrix(dat_path);
  EXPECT_EQ(g.format, "gguf");
  EXPECT_EQ(d.format, "dat");
  // PROVENANCE.md: 64 chunks of 128 tokens of tinystories_validation_head.txt, the 7 matrices of 2 layers.
  EXPECT_EQ(g.source, "tinystories_validation_head.txt");
  EXPECT_EQ(d.source, "tinystories_validation_head.txt");
  EXPECT_EQ(g.chunk_count, 64);
  EXPECT_EQ(d.chunk_count, 64);
  EXPECT_EQ(g.chunk_size, 128);
  EXPECT_EQ(g.n_tokens, 64 * 128);
  ASSERT_EQ(g.tensors.size(), 14u);
  ASSERT_EQ(d.tensors.size(), 14u);
  EXPECT_TRUE(g.tensors.contains("blk.1.ffn_down.weight"));
  EXPECT_FALSE(g.tensors.contains("output.weight"));
  for (const auto& [name, gv] : g.tensors) {
    ASSERT_TRUE(d.tensors.contains(name)) << name;
    const std::vector<float>& dv = d.tensors.at(name);
    ASSERT_EQ(gv.size(), dv.size()) << name;
    EXPECT_EQ(int64_t(gv.size()), name.find("ffn_down") != std::string::npos ? 768 : 256) << name;
    // The two files hold the same means, as sum / count and as (mean * ncall) / ncall.
    for (size_t j = 0; j < gv.size(); ++j) {
      ASSERT_GT(gv[j], 0.0f) << name << "[" << j << "]";
      EXPECT_NEAR(dv[j], gv[j], 1e-6f * gv[j]) << name << "[" << j << "]";
    }
  }
}

// Read and written again, llama.cpp's GGUF imatrix is the same file byte for byte.
TEST(ImatrixFile, GgufWrittenBackIsTheSameFile) {
  QBENCH_SHARED_FILE(gguf_path, kImatrixGguf);
  const std::string dir = test::temp_dir("imatrix-rewrite");
  write_imatrix(read_imatrix(gguf_path), dir + "/again.gguf");
  EXPECT_EQ(read_file(dir + "/again.gguf"), read_file(gguf_path));
  // The JSON export keeps the means exactly.
  write_imatrix(read_imatrix(gguf_path), dir + "/again.imatrix");
  EXPECT_EQ(read_imatrix(dir + "/again.imatrix").tensors, read_imatrix(gguf_path).tensors);
}

std::string imatrix_error_of(const std::string& path) {
  try {
    read_imatrix(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ImatrixFile, MalformedFilesAreOneLineErrorsNamingTheFile) {
  QBENCH_SHARED_FILE(dat_path, kImatrixDat);
  QBENCH_SHARED_FILE(model, kModel);
  const std::string dir = test::temp_dir("imatrix-bad");
  const std::string dat = read_file(dat_path);
  auto expect_error = [&](const std::string& name, const std::string& bytes, const std::string& fragment) {
    const std::string path = dir + "/" + name;
    write_file_atomic(path, bytes);
    const std::string e = imatrix_error_of(path);
    EXPECT_NE(e.find(path), std::string::npos) << name << ": " << e;
    EXPECT_NE(e.find(fragment), std::string::npos) << name << ": " << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << name << ": " << e;
  };
  expect_error("empty.dat", "", "ends in the entry count");
  expect_error("cut.dat", dat.substr(0, dat.size() / 2), "not an imatrix");
  expect_error("tail.dat", dat + "xyz", "does not match");
  std::string negative = dat;
  const float minus_one = -1.0f;
  std::memcpy(negative.data() + 4 + 4 + 19 + 4 + 4, &minus_one, sizeof minus_one);  // first value of blk.0.attn_k
  expect_error("negative.dat", negative, "not a finite non-negative number");
  expect_error("text.dat", "hello, this is not an imatrix\n", "not an imatrix");
  expect_error("model.gguf", read_file(model), "not a llama.cpp imatrix");

  auto imatrix_gguf = [&](const std::string& name, std::vector<int64_t> dims, std::vector<float> sums,
                          std::vector<float> counts, bool with_counts = true) {
    gguf::Writer w;
    w.set("general.type", gguf::Value::str("imatrix"));
    w.set("imatrix.datasets", gguf::Value::array(gguf::ValueType::STRING, {gguf::Value::str("x.txt")}));
    w.set("imatrix.chunk_count", gguf::Value::u32(1));
    w.set("imatrix.chunk_size", gguf::Value::u32(8));
    auto bytes = [](const std::vector<float>& v) {
      return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float));
    };
    w.add_tensor("blk.0.ffn_up.weight.in_sum2", dims, TensorType::F32, bytes(sums));
    if (with_counts) w.add_tensor("blk.0.ffn_up.weight.counts", {int64_t(counts.size())}, TensorType::F32, bytes(counts));
    const std::string path = dir + "/" + name;
    w.write(path);
    return path;
  };
  const std::string moe = imatrix_gguf("moe.gguf", {4, 2}, std::vector<float>(8, 1.0f), {8, 8});
  EXPECT_NE(imatrix_error_of(moe).find("mixture-of-experts"), std::string::npos) << imatrix_error_of(moe);
  const std::string nocount = imatrix_gguf("nocount.gguf", {4}, std::vector<float>(4, 1.0f), {}, false);
  EXPECT_NE(imatrix_error_of(nocount).find("in_sum2 but no counts"), std::string::npos) << imatrix_error_of(nocount);
  const std::string nan = imatrix_gguf("nan.gguf", {4}, {1.0f, std::nanf(""), 1.0f, 1.0f}, {8});
  EXPECT_NE(imatrix_error_of(nan).find("not a finite non-negative number"), std::string::npos) << imatrix_error_of(nan);
  // A count of 0 (an entry that never saw a token) reads as all ones, as llama-quantize reads it.
  const Imatrix zero = read_imatrix(imatrix_gguf("zero.gguf", {4}, std::vector<float>(4, 0.0f), {0}));
  EXPECT_EQ(zero.tensors.at("blk.0.ffn_up.weight"), std::vector<float>(4, 1.0f));
  const Imatrix fine = read_imatrix(imatrix_gguf("fine.gguf", {4}, {8, 16, 0, 4}, {8}));
  EXPECT_EQ(fine.tensors.at("blk.0.ffn_up.weight"), (std::vector<float>{1, 2, 0, 0.5f}));
}

// The oracle: llama-quantize --pure --imatrix and qbench quantize --pure --imatrix, same bytes.
class LlamaCppImatrixParity : public ::testing::TestWithParam<const char*> {};

TEST_P(LlamaCppImatrixParity, SameBytesAsLlamaQuantize) {
  const std::string type = GetParam();
  QBENCH_SHARED_FILE(tool, "tools/llama.cpp/llama-quantize");
  QBENCH_SHARED_FILE(model, kModel);
  QBENCH_SHARED_FILE(imatrix, kImatrixGguf);
  QBENCH_SHARED_FILE(plain, "models/kquant-test/kquant-test-" + type + ".gguf");
  const std::string dir = test::temp_dir("imatrix-parity-" + type);
  const std::string theirs = dir + "/llama.gguf", mine = dir + "/qbench.gguf";
  ASSERT_TRUE(llama_quantize(tool, "--pure --imatrix '" + imatrix + "' '" + model + "' '" + theirs + "' " + type, dir))
      << read_file(dir + "/llama-quantize.log");
  std::string scheme = type;
  for (char& c : scheme) c = char(std::tolower(static_cast<unsigned char>(c)));
  const auto r = test::run_cli("quantize --model " + model + " --scheme " + scheme + " --pure --imatrix " + imatrix +
                                   " --out " + mine,
                               dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_tensors(mine, theirs);
  // The importance changed the result: the 14 matrices with an entry differ from the plain file.
  EXPECT_EQ(differing_tensors(theirs, plain), 14);
}

INSTANTIATE_TEST_SUITE_P(Types, LlamaCppImatrixParity,
                         ::testing::Values("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"),
                         [](const auto& info) { return std::string(info.param); });

// The shared i-quant files llama-quantize made with llama.cpp's imatrix (PROVENANCE.md), without
// running it: iq4_nl and iq4_xs (the i-quants qbench writes so far).
class SharedIquantImatrixFile : public ::testing::TestWithParam<const char*> {};

TEST_P(SharedIquantImatrixFile, SameBytes) {
  const std::string type = GetParam();
  QBENCH_SHARED_FILE(model, kModel);
  QBENCH_SHARED_FILE(imatrix, kImatrixGguf);
  QBENCH_SHARED_FILE(theirs, "models/kquant-test/kquant-test-" + type + "-imatrix.gguf");
  const std::string dir = test::temp_dir("imatrix-iq-" + type);
  std::string scheme = type;
  for (char& c : scheme) c = char(std::tolower(static_cast<unsigned char>(c)));
  const auto r = test::run_cli(
      "quantize --model " + model + " --scheme " + scheme + " --pure --imatrix " + imatrix + " --out " + dir + "/q.gguf", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_tensors(dir + "/q.gguf", theirs);
}

INSTANTIATE_TEST_SUITE_P(Types, SharedIquantImatrixFile, ::testing::Values("IQ4_NL", "IQ4_XS"),
                         [](const auto& info) { return std::string(info.param); });

// The legacy .dat gives llama-quantize and qbench the same bytes as the GGUF form does.
TEST(ImatrixFile, LegacyDatQuantizesAsTheGguf) {
  QBENCH_SHARED_FILE(tool, "tools/llama.cpp/llama-quantize");
  QBENCH_SHARED_FILE(model, kModel);
  QBENCH_SHARED_FILE(dat, kImatrixDat);
  const std::string dir = test::temp_dir("imatrix-dat");
  ASSERT_TRUE(llama_quantize(tool, "--pure --imatrix '" + dat + "' '" + model + "' '" + dir + "/llama.gguf' Q3_K", dir))
      << read_file(dir + "/llama-quantize.log");
  const auto r =
      test::run_cli("quantize --model " + model + " --scheme q3_K --pure --imatrix " + dat + " --out " + dir + "/q.gguf", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_tensors(dir + "/q.gguf", dir + "/llama.gguf");
}

// qbench imatrix writes llama.cpp's GGUF form: llama-quantize reads it and quantizes with it as
// qbench does.
TEST(ImatrixFile, QbenchGgufImatrixIsReadByLlamaQuantize) {
  QBENCH_SHARED_FILE(tool, "tools/llama.cpp/llama-quantize");
  QBENCH_SHARED_FILE(model, kModel);
  QBENCH_SHARED_FILE(text, "datasets/tinystories/tinystories_validation_head.txt");
  const std::string dir = test::temp_dir("imatrix-write");
  const std::string im = dir + "/mine.gguf";
  auto r = test::run_cli("imatrix --model " + model + " --calib " + text + " --calib-samples 8 --calib-ctx 64 --out " + im, dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Imatrix back = read_imatrix(im);
  EXPECT_EQ(back.chunk_count, 8);
  EXPECT_EQ(back.chunk_size, 64);
  EXPECT_EQ(back.n_tokens, 8 * 64);
  EXPECT_EQ(back.tensors.size(), 15u);  // the 14 layer matrices and output.weight
  ASSERT_TRUE(llama_quantize(tool, "--pure --imatrix '" + im + "' '" + model + "' '" + dir + "/llama.gguf' Q4_K", dir))
      << read_file(dir + "/llama-quantize.log");
  r = test::run_cli("quantize --model " + model + " --scheme q4_K --pure --imatrix " + im + " --out " + dir + "/q.gguf", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_tensors(dir + "/q.gguf", dir + "/llama.gguf");
}

}  // namespace
}  // namespace qbench
