// safetensors reading and writing: the layout of huggingface/safetensors, and bad input
// (truncated header, header length past the file, overlapping or gapped ranges, dtype/shape
// against the byte range) as one-line errors, fuzzed like the GGUF reader.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>

#include "engine/core/error.h"
#include "engine/io/safetensors.h"
#include "tests/test_util.h"

namespace qbench::safetensors {
namespace {

void write_bytes(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

// A file from a hand-written header: u64 length, the JSON text, then `data`.
std::string raw_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  return out + header + data;
}

void expect_error(const std::string& path, const std::string& needle) {
  try {
    File::open(path);
    ADD_FAILURE() << "opened, expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(Safetensors, ReadsAHandWrittenFileByTheFormatsRules) {
  // Written byte by byte from the format description, not by our writer.
  const std::string header =
      R"({"b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},)"
      R"("a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},"__metadata__":{"format":"pt"}})";
  std::string data(12, '\0');
  const float a[2] = {1.5f, -2.0f};
  std::memcpy(data.data(), a, 8);
  data[8] = char(0x00), data[9] = char(0x3c);  // fp16 1.0
  data[10] = char(0x00), data[11] = char(0xc0);  // fp16 -2.0
  const std::string dir = test::temp_dir("st-read");
  write_bytes(dir + "/m.safetensors", raw_file(header, data));
  const auto f = File::open(dir + "/m.safetensors");
  ASSERT_EQ(f->tensors().size(), 2u);
  EXPECT_EQ(f->tensors()[0].name, "a");  // in data order
  const TensorInfo* ta = f->find("a");
  ASSERT_NE(ta, nullptr);
  EXPECT_EQ(ta->dtype, DType::F32);
  EXPECT_EQ(ta->shape, (std::vector<int64_t>{1, 2}));
  float got[2];
  std::memcpy(got, ta->data, 8);
  EXPECT_EQ(got[0], 1.5f);
  EXPECT_EQ(got[1], -2.0f);
  const TensorInfo* tb = f->find("b");
  ASSERT_NE(tb, nullptr);
  EXPECT_EQ(tb->dtype, DType::F16);
  EXPECT_EQ(tb->data[1], 0x3c);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->find("c"), nullptr);
}

TEST(Safetensors, WriterRoundTripsAndPadsTheHeader) {
  const std::string dir = test::temp_dir("st-write");
  Writer w;
  w.set_metadata("format", "pt");
  const std::vector<uint8_t> x = {1, 2, 3, 4, 5, 6}, y = {9, 8, 7, 6, 5, 4, 3, 2};
  w.add_tensor("x", DType::BF16, {3}, x);
  w.add_tensor("y.weight", DType::U8, {2, 4}, y);
  const size_t n = w.write(dir + "/w.safetensors");
  const std::string bytes = test::read_file(dir + "/w.safetensors");
  EXPECT_EQ(n, bytes.size());
  uint64_t len = 0;
  std::memcpy(&len, bytes.data(), 8);
  EXPECT_EQ(len % 8, 0u);
  EXPECT_EQ(bytes[8], '{');
  const auto f = File::open(dir + "/w.safetensors");
  EXPECT_EQ(f->data_offset() % 8, 0u);
  ASSERT_NE(f->find("y.weight"), nullptr);
  EXPECT_EQ(std::vector<uint8_t>(f->find("y.weight")->data, f->find("y.weight")->data + 8), y);
  EXPECT_EQ(std::vector<uint8_t>(f->find("x")->data, f->find("x")->data + 6), x);
  EXPECT_EQ(f->find("x")->dtype, DType::BF16);
}

TEST(Safetensors, BadFilesAreOneLineErrors) {
  const std::string dir = test::temp_dir("st-bad");
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  struct Case {
    const char* name;
    std::string bytes;
    const char* needle;
  };
  const std::string good = raw_file(ok, std::string(8, '\0'));
  const std::vector<Case> cases = {
      {"short", std::string("\x05\x00\x00", 3), "shorter than the 8-byte header length"},
      {"len-past-end", raw_file(ok, std::string(8, '\0')).substr(0, 30), "runs past the end"},
      {"huge-len", std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}", "exceeds the 100 MB limit"},
      {"not-json", raw_file("{\"a\": [", ""), "not valid JSON"},
      {"not-object", raw_file("[1,2,3]", ""), "not a JSON object"},
      {"unknown-dtype", raw_file(R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')),
       "unknown dtype 'Q4'"},
      {"shape-mismatch", raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')),
       "needs 12 bytes but data_offsets give 8"},
      {"negative-shape", raw_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, '\0')),
       "is not a list of sizes"},
      {"truncated-data", raw_file(ok, std::string(5, '\0')), "outside the 5-byte data section"},
      {"reversed", raw_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", std::string(8, '\0')),
       "outside"},
      {"overlap", raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                           std::string(12, '\0')),
       "overlaps tensor"},
      {"gap", raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", std::string(8, '\0')),
       "unused bytes before tensor 'a'"},
      {"trailing", raw_file(ok, std::string(12, '\0')), "tensors end at 8"},
      {"no-offsets", raw_file(R"({"a":{"dtype":"F32","shape":[2]}})", std::string(8, '\0')), "data_offsets must be"},
      {"bad-metadata", raw_file(R"({"__metadata__":{"k":1}})", ""), "is not a string"},
      {"overflow", raw_file(R"({"a":{"dtype":"F64","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}})",
                            std::string(8, '\0')),
       "too large"},
  };
  write_bytes(dir + "/good.safetensors", good);
  EXPECT_NO_THROW(File::open(dir + "/good.safetensors"));
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string p = dir + "/" + c.name + ".safetensors";
    write_bytes(p, c.bytes);
    expect_error(p, c.needle);
  }
}

// Randomly corrupted copies of a valid file: each opens (every range then lies inside the
// file) or gives a one-line qbench::Error; nothing else.
TEST(Fuzz, RandomlyCorruptedSafetensorsNeverCrash) {
  const std::string dir = test::temp_dir("st-fuzz");
  Writer w;
  std::mt19937 rng(7);
  for (int t = 0; t < 6; ++t) {
    std::vector<uint8_t> bytes(size_t(4 * (t + 1) * 3));
    for (auto& b : bytes) b = uint8_t(rng());
    w.add_tensor("model.layers." + std::to_string(t) + ".w", DType::F32, {t + 1, 3}, bytes);
  }
  w.write(dir + "/orig.safetensors");
  const std::string orig = test::read_file(dir + "/orig.safetensors");
  uint64_t header = 0;
  std::memcpy(&header, orig.data(), 8);
  int opened = 0, rejected = 0;
  for (int iter = 0; iter < 400; ++iter) {
    std::string b = orig;
    const int mode = iter % 4;
    if (mode == 3) {
      b.resize(rng() % b.size());
    } else {
      const int flips = 1 + int(rng() % 6);
      for (int k = 0; k < flips; ++k) {
        const size_t pos = mode == 2 ? 8 + header + rng() % (b.size() - 8 - header) : rng() % (8 + header);
        b[pos] = mode == 1 ? char(rng()) : char(b[pos] ^ (1 << (rng() % 8)));
      }
    }
    const std::string p = dir + "/c.safetensors";
    write_bytes(p, b);
    try {
      const auto f = File::open(p);
      for (const auto& t : f->tensors()) {
        ASSERT_LE(t.data + t.nbytes, f->mapping()->data() + f->mapping()->size());
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < t.nbytes; ++i) sink = sink ^ t.data[i];  // touch every byte
      }
      ++opened;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "iteration " << iter << ": unexpected exception: " << e.what();
    }
  }
  EXPECT_EQ(opened + rejected, 400);
  EXPECT_GT(rejected, 150);  // header corruption is caught
  EXPECT_GT(opened, 90);     // data corruption (a quarter of the copies) is not a format error
}

}  // namespace
}  // namespace qbench::safetensors
