#include <gtest/gtest.h>

#include <cstring>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/io/gguf.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

namespace qbench {
namespace {

TEST(Gguf, ReadsStories260KMetadataAndTensors) {
  QBENCH_SHARED_FILE(path, "models/stories260K.gguf");
  const auto f = gguf::File::open(path);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_EQ(f->metadata().size(), 19u);
  EXPECT_EQ(f->tensors().size(), 48u);
  EXPECT_EQ(f->require_string("general.architecture"), "llama");
  EXPECT_EQ(f->require_int("llama.embedding_length"), 64);
  EXPECT_EQ(f->require_int("llama.feed_forward_length"), 172);
  EXPECT_EQ(f->require_int("llama.attention.head_count_kv"), 4);
  EXPECT_NEAR(*f->get_float("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-12);
  const auto& toks = f->require_array("tokenizer.ggml.tokens", gguf::ValueType::STRING);
  ASSERT_EQ(toks.items.size(), 512u);
  EXPECT_EQ(*toks.items[1].as_string(), "<s>");
  const gguf::TensorInfo* t = f->find_tensor("blk.0.ffn_down.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dims, (std::vector<int64_t>{172, 64}));
  EXPECT_EQ(t->type, TensorType::F32);
  EXPECT_EQ(t->nbytes, 172u * 64u * 4u);
  EXPECT_EQ(t->data, f->mapping()->data() + f->data_offset() + t->offset);
  EXPECT_THROW(f->require_int("llama.no_such_key"), Error);
  EXPECT_THROW(f->require_int("general.architecture"), Error);  // wrong type
}

TEST(Gguf, WriterRoundTripsEveryValueType) {
  const std::string dir = test::temp_dir("gguf-roundtrip");
  gguf::Writer w;
  w.set("u8", {gguf::ValueType::UINT8, uint64_t(200)});
  w.set("i8", {gguf::ValueType::INT8, int64_t(-100)});
  w.set("u16", {gguf::ValueType::UINT16, uint64_t(60000)});
  w.set("i16", {gguf::ValueType::INT16, int64_t(-30000)});
  w.set("u32", gguf::Value::u32(4000000000u));
  w.set("i32", gguf::Value::i32(-2000000000));
  w.set("u64", gguf::Value::u64(1ull << 60));
  w.set("i64", {gguf::ValueType::INT64, int64_t(-(1ll << 60))});
  w.set("f32", gguf::Value::f32(0.25f));
  w.set("f64", {gguf::ValueType::FLOAT64, 1e300});
  w.set("bool", gguf::Value::boolean(true));
  w.set("str", gguf::Value::str("h\xC3\xA9llo"));
  w.set("arr", gguf::Value::array(gguf::ValueType::INT32, {gguf::Value::i32(1), gguf::Value::i32(-2)}));
  w.set("nested", gguf::Value::array(gguf::ValueType::ARRAY,
                                     {gguf::Value::array(gguf::ValueType::STRING, {gguf::Value::str("x")})}));
  w.set("general.alignment", gguf::Value::u32(64));
  std::vector<uint8_t> a(3 * 5 * 4), b(7 * 2);
  for (size_t i = 0; i < a.size(); ++i) a[i] = uint8_t(i * 7);
  for (size_t i = 0; i < b.size(); ++i) b[i] = uint8_t(255 - i);
  w.add_tensor("a", {5, 3}, TensorType::F32, a);
  w.add_tensor("b", {7}, TensorType::F16, b);
  const std::string path = dir + "/rt.gguf";
  w.write(path);

  const auto f = gguf::File::open(path);
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(*f->get_int("u8"), 200);
  EXPECT_EQ(*f->get_int("i8"), -100);
  EXPECT_EQ(*f->get_int("u16"), 60000);
  EXPECT_EQ(*f->get_int("i16"), -30000);
  EXPECT_EQ(*f->get_int("u32"), 4000000000ll);
  EXPECT_EQ(*f->get_int("i32"), -2000000000);
  EXPECT_EQ(*f->get_int("u64"), 1ll << 60);
  EXPECT_EQ(*f->get_int("i64"), -(1ll << 60));
  EXPECT_EQ(*f->get_float("f32"), 0.25);
  EXPECT_EQ(*f->get_float("f64"), 1e300);
  EXPECT_EQ(*f->get_bool("bool"), true);
  EXPECT_EQ(*f->get_string("str"), "h\xC3\xA9llo");
  EXPECT_EQ(f->find("u8")->type, gguf::ValueType::UINT8);
  const auto& arr = f->require_array("arr", gguf::ValueType::INT32);
  ASSERT_EQ(arr.items.size(), 2u);
  EXPECT_EQ(*arr.items[1].as_int(), -2);
  const auto& nested = f->require_array("nested", gguf::ValueType::ARRAY);
  EXPECT_EQ(*nested.items[0].as_array()->items[0].as_string(), "x");
  const auto* ta = f->find_tensor("a");
  const auto* tb = f->find_tensor("b");
  ASSERT_NE(ta, nullptr);
  ASSERT_NE(tb, nullptr);
  EXPECT_EQ(ta->offset % 64, 0u);
  EXPECT_EQ(tb->offset % 64, 0u);
  EXPECT_EQ(std::memcmp(ta->data, a.data(), a.size()), 0);
  EXPECT_EQ(std::memcmp(tb->data, b.data(), b.size()), 0);
  EXPECT_EQ(ta->dims, (std::vector<int64_t>{5, 3}));
}

TEST(Gguf, WriterOutputReadsBackAsTheSameModelFile) {
  // Re-writing stories260K's metadata and tensors gives a file that reads back identically.
  QBENCH_SHARED_FILE(path, "models/stories260K.gguf");
  const auto f = gguf::File::open(path);
  gguf::Writer w;
  for (const auto& [k, v] : f->metadata()) w.set(k, v);
  for (const auto& t : f->tensors()) w.add_tensor(t.name, t.dims, t.type, {t.data, t.nbytes});
  const std::string out = test::temp_dir("gguf-rewrite") + "/copy.gguf";
  w.write(out);
  const std::string a = read_file(path), b = read_file(out);
  EXPECT_EQ(a, b) << "qbench's writer should reproduce llama.cpp's file byte for byte";
}

}  // namespace
}  // namespace qbench
