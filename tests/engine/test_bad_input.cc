// Bad input gives a qbench::Error whose one-line message names the file and the problem;
// never a crash, never a silent wrong number.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "datasets/text.h"
#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/model/forward.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

namespace qbench {
namespace {

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// Expects load_model(path) to throw a one-line qbench::Error containing `needle` and the path.
void expect_load_error(const std::string& path, const std::string& needle, const std::string& tok = {}) {
  try {
    load_model(path, tok);
    ADD_FAILURE() << path << ": loaded, expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg;
    EXPECT_NE(msg.find(std::filesystem::path(tok.empty() ? path : tok).filename().string()), std::string::npos)
        << "message does not name the file: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line: " << msg;
  }
}

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir("bad-input");
    good_ = test::write_tiny_model(dir_ + "/good.gguf");
    bytes_ = read_file(good_);
  }
  std::string variant(const std::string& name, const std::string& bytes) {
    const std::string p = dir_ + "/" + name;
    write_bytes(p, bytes);
    return p;
  }
  std::string dir_, good_, bytes_;
};

TEST_F(BadInput, TheGoodFileLoads) { EXPECT_NO_THROW(load_model(good_)); }

TEST_F(BadInput, TruncatedGgufAtEveryRegion) {
  const auto f = gguf::File::open(good_);
  const size_t data = f->data_offset();
  for (size_t cut : {size_t(0), size_t(3), size_t(10), size_t(30), size_t(200), data / 2, data - 5,
                     data + 100, bytes_.size() - 1}) {
    const std::string p = variant("trunc.gguf", bytes_.substr(0, cut));
    try {
      load_model(p);
      ADD_FAILURE() << "truncated at " << cut << " loaded";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_TRUE(msg.find("truncated") != std::string::npos || msg.find("not a GGUF") != std::string::npos)
          << "cut " << cut << ": " << msg;
    }
  }
}

TEST_F(BadInput, WrongMagic) {
  std::string b = bytes_;
  b[0] = 'X';
  expect_load_error(variant("magic.gguf", b), "not a GGUF file");
}

TEST_F(BadInput, UnsupportedVersions) {
  for (uint32_t v : {1u, 4u, 0x03000000u}) {
    std::string b = bytes_;
    std::memcpy(b.data() + 4, &v, 4);
    expect_load_error(variant("version.gguf", b), "unsupported GGUF version");
  }
}

TEST_F(BadInput, TensorDataOutsideTheFile) {
  // Drop the last 64 bytes: the last tensor's data now runs past the end.
  expect_load_error(variant("short.gguf", bytes_.substr(0, bytes_.size() - 64)), "lies outside the file");
}

TEST_F(BadInput, MissingTensor) {
  auto w = test::tiny_model_writer();
  w.remove_tensor("blk.1.ffn_up.weight");
  w.write(dir_ + "/missing.gguf");
  expect_load_error(dir_ + "/missing.gguf", "missing tensor 'blk.1.ffn_up.weight'");
}

TEST_F(BadInput, WrongTensorShape) {
  auto w = test::tiny_model_writer();
  w.remove_tensor("blk.0.attn_q.weight");
  std::vector<uint8_t> z(32 * 31 * 4);
  w.add_tensor("blk.0.attn_q.weight", {32, 31}, TensorType::F32, z);
  w.write(dir_ + "/shape.gguf");
  expect_load_error(dir_ + "/shape.gguf", "'blk.0.attn_q.weight' has shape [32, 31], expected [32, 32]");
}

TEST_F(BadInput, UnknownArchitecture) {
  auto w = test::tiny_model_writer();
  w.set("general.architecture", gguf::Value::str("gpt9"));
  w.write(dir_ + "/arch.gguf");
  expect_load_error(dir_ + "/arch.gguf", "unknown architecture 'gpt9'");
}

TEST_F(BadInput, MissingMetadataKey) {
  auto w = test::tiny_model_writer();
  w.remove("llama.embedding_length");
  w.write(dir_ + "/key.gguf");
  expect_load_error(dir_ + "/key.gguf", "missing metadata key 'llama.embedding_length'");
}

TEST_F(BadInput, TensorTypeWithoutAnImplementationIsNamed) {
  auto w = test::tiny_model_writer();
  w.remove_tensor("blk.0.attn_q.weight");
  std::vector<uint8_t> z(32 / 32 * 17 * 32);  // mxfp4: 17 bytes per 32 values
  w.add_tensor("blk.0.attn_q.weight", {32, 32}, TensorType::MXFP4, z);
  w.write(dir_ + "/type.gguf");
  expect_load_error(dir_ + "/type.gguf", "has type mxfp4");
}

TEST_F(BadInput, UnknownTensorTypeId) {
  const auto f = gguf::File::open(good_);
  // Find the first tensor's type field: it follows name, n_dims and dims in the header.
  const std::string name = f->tensors()[0].name;
  const size_t at = bytes_.find(name);
  ASSERT_NE(at, std::string::npos);
  const size_t type_pos = at + name.size() + 4 + 8 * f->tensors()[0].dims.size();
  std::string b = bytes_;
  const uint32_t bad = 9999;
  std::memcpy(b.data() + type_pos, &bad, 4);
  expect_load_error(variant("typeid.gguf", b), "unknown type id 9999");
}

TEST_F(BadInput, Llama2cTruncatedAndCorrupt) {
  QBENCH_SHARED_FILE(bin, "models/stories260K.bin");
  QBENCH_SHARED_FILE(tok, "models/tok512.bin");
  const std::string b = read_file(bin);
  expect_load_error(variant("trunc.bin", b.substr(0, b.size() - 1000)), "the file is truncated");
  expect_load_error(variant("tiny.bin", b.substr(0, 10)), "neither a GGUF nor a llama2.c checkpoint");
  std::string neg = b;
  const int32_t minus = -5;
  std::memcpy(neg.data(), &minus, 4);
  expect_load_error(variant("neg.bin", neg), "not a llama2.c checkpoint");
  const std::string t = read_file(tok);
  expect_load_error(bin, "truncated llama2.c tokenizer", variant("tok-trunc.bin", t.substr(0, t.size() - 3)));
  // A tokenizer of another size than the model's vocabulary.
  const std::string small = t.substr(0, 4 + 3 * (8 + 5));
  EXPECT_THROW(load_model(bin, variant("tok-small.bin", small)), Error);
}

TEST(BadText, EmptyAndNonUtf8TextFiles) {
  const std::string dir = test::temp_dir("bad-text");
  write_bytes(dir + "/empty.txt", "");
  write_bytes(dir + "/latin1.txt", "caf\xE9 au lait");
  write_bytes(dir + "/ok.txt", "caf\xC3\xA9");
  try {
    read_text_file(dir + "/empty.txt");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("empty.txt: text file is empty"), std::string::npos) << e.what();
  }
  try {
    read_text_file(dir + "/latin1.txt");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("latin1.txt: not valid UTF-8 (bad byte sequence at offset 3)"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(read_text_file(dir + "/missing.txt"), Error);
  EXPECT_EQ(read_text_file(dir + "/ok.txt"), "caf\xC3\xA9");
}

// A few hundred randomly corrupted copies of a real GGUF: each either loads (and then runs) or
// gives a qbench::Error. Any other exception fails the test; a crash fails the suite. The
// ASan+UBSan build (-DQBENCH_SANITIZE=ON) runs this too.
TEST(Fuzz, RandomlyCorruptedGgufNeverCrashes) {
  QBENCH_SHARED_FILE(path, "models/stories260K.gguf");
  const std::string orig = read_file(path);
  const auto f = gguf::File::open(path);
  const size_t header = f->data_offset();
  const std::string dir = test::temp_dir("fuzz");
  std::mt19937 rng(12345);
  int loaded = 0, rejected = 0;
  for (int iter = 0; iter < 300; ++iter) {
    std::string b = orig;
    const int mode = iter % 4;
    if (mode == 3) {
      b.resize(rng() % b.size());  // truncation anywhere
    } else {
      const int flips = 1 + int(rng() % 8);
      for (int k = 0; k < flips; ++k) {
        // mostly in the header (metadata + tensor infos), sometimes in the data
        const size_t pos = (mode == 2) ? rng() % b.size() : rng() % header;
        b[pos] = mode == 1 ? char(rng()) : char(b[pos] ^ (1 << (rng() % 8)));
      }
    }
    const std::string p = dir + "/c" + std::to_string(iter % 8) + ".gguf";
    write_bytes(p, b);
    try {
      const Model m = load_model(p);
      Forward fw(m, 16);
      std::vector<float> logits;
      const auto ids = m.require_tokenizer().encode("Once upon a time", true);
      fw.eval_last(std::span<const int32_t>(ids.data(), std::min<size_t>(ids.size(), 16)), logits);
      ++loaded;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "iteration " << iter << ": unexpected exception type: " << e.what();
    }
  }
  EXPECT_EQ(loaded + rejected, 300);
  EXPECT_GT(rejected, 50);  // most header corruptions must be caught
}

}  // namespace
}  // namespace qbench
