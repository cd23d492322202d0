// Input and output files that are not plain regular files: FIFOs, devices, symbolic links, a full
// disk. Inputs must be refused without blocking; outputs written through to devices and FIFOs
// (never replacing the node) and atomically through symbolic links.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "engine/core/error.h"
#include "engine/core/mapped_file.h"
#include "engine/core/utf8.h"
#include "engine/model/forward.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

namespace qbench {
namespace {

namespace fs = std::filesystem;

std::string make_fifo(const std::string& dir, const std::string& name) {
  const std::string p = dir + "/" + name;
  EXPECT_EQ(::mkfifo(p.c_str(), 0600), 0) << std::strerror(errno);
  return p;
}

template <typename Fn>
void expect_error_naming(Fn fn, const std::string& path, const std::string& fragment) {
  try {
    fn();
    ADD_FAILURE() << "no error for " << path;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

// Opening a FIFO for reading blocks until a writer comes; every reader refuses it first. If the
// check regressed, these calls would hang (ctest's timeout), not pass.
TEST(InputFiles, FifoIsRefusedWithoutBlocking) {
  const std::string dir = test::temp_dir("files-fifo-in");
  const std::string fifo = make_fifo(dir, "model.gguf");
  expect_error_naming([&] { MappedFile f(fifo); }, fifo, "FIFO");
  expect_error_naming([&] { (void)read_file(fifo); }, fifo, "FIFO");
  expect_error_naming([&] { (void)read_text_file(fifo); }, fifo, "FIFO");
  expect_error_naming([&] { (void)load_model(fifo); }, fifo, "FIFO");
  expect_error_naming([&] { (void)load_model(dir); }, dir, "directory");
  expect_error_naming([&] { (void)read_file("/dev/zero"); }, "/dev/zero", "character device");
}

TEST(InputFiles, BinaryOrEmptyTextIsRefused) {
  const std::string dir = test::temp_dir("files-text");
  std::ofstream(dir + "/empty.txt").close();
  std::ofstream(dir + "/nul.txt", std::ios::binary) << std::string("abc\0def", 7);
  std::ofstream(dir + "/bin.txt", std::ios::binary) << "ab\xff\xfe";
  expect_error_naming([&] { (void)read_text_file(dir + "/empty.txt"); }, "empty.txt", "empty");
  expect_error_naming([&] { (void)read_text_file(dir + "/nul.txt"); }, "nul.txt", "NUL byte at offset 3");
  expect_error_naming([&] { (void)read_text_file(dir + "/bin.txt"); }, "bin.txt", "not valid UTF-8");
}

// A FIFO as output: written through (a reader gets every byte), and still a FIFO afterwards.
TEST(OutputFiles, FifoIsWrittenThrough) {
  const std::string dir = test::temp_dir("files-fifo-out");
  const std::string fifo = make_fifo(dir, "out.json");
  std::string received;
  std::thread reader([&] {
    std::ifstream in(fifo, std::ios::binary);  // blocks until the writer opens
    received.assign(std::istreambuf_iterator<char>(in), {});
  });
  std::string big(300000, 'x');  // more than a pipe buffer: the writer must wait for the reader
  big += "end";
  write_file_atomic(fifo, big);
  reader.join();
  EXPECT_EQ(received, big);
  struct stat st {};
  ASSERT_EQ(::lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}), 1) << "a temporary was left";
}

TEST(OutputFiles, DevNullStaysADevice) {
  write_file_atomic("/dev/null", "discarded\n");
  OutputFile f("/dev/null");
  EXPECT_TRUE(f.writes_through());
  f.write("x");
  f.commit();
  struct stat st {};
  ASSERT_EQ(::stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
}

// A symbolic link: the target is replaced atomically and the link stays a link; a link to a
// missing file is refused with a message naming both.
TEST(OutputFiles, SymlinkTargetIsReplacedAndTheLinkKept) {
  const std::string dir = test::temp_dir("files-link");
  fs::create_directories(dir + "/real");
  std::ofstream(dir + "/real/results.json") << "old";
  fs::permissions(dir + "/real/results.json", fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  fs::create_symlink("real/results.json", dir + "/link.json");
  write_file_atomic(dir + "/link.json", "new");
  EXPECT_TRUE(fs::is_symlink(dir + "/link.json"));
  EXPECT_EQ(test::read_file(dir + "/real/results.json"), "new");
  EXPECT_EQ(fs::status(dir + "/real/results.json").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir + "/real"), fs::directory_iterator{}), 1) << "a temporary was left";
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}), 2);

  fs::create_symlink("missing/x.json", dir + "/dangling.json");
  expect_error_naming([&] { write_file_atomic(dir + "/dangling.json", "x"); }, "dangling.json", "missing/x.json");
  EXPECT_TRUE(fs::is_symlink(dir + "/dangling.json"));
  expect_error_naming([&] { write_file_atomic(dir, "x"); }, dir, "is a directory");
}

// Without commit() (an exception while writing) nothing changes and no temporary is left.
TEST(OutputFiles, UncommittedWriteLeavesTheOldFile) {
  const std::string dir = test::temp_dir("files-abort");
  std::ofstream(dir + "/a.txt") << "old";
  {
    OutputFile f(dir + "/a.txt");
    f.write("partial");
  }
  EXPECT_EQ(test::read_file(dir + "/a.txt"), "old");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}), 1);
}

// A full disk is an I/O failure (qbench::IoError: the CLI exits 1), not bad input. /dev/full
// fails every write with ENOSPC.
TEST(OutputFiles, FullDiskIsAnIoError) {
  try {
    write_file_atomic("/dev/full", std::string(1000, 'x'));
    ADD_FAILURE() << "writing /dev/full succeeded";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(std::strerror(ENOSPC)), std::string::npos) << e.what();
  }
  struct stat st {};
  ASSERT_EQ(::stat("/dev/full", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
}

// NaN or infinite weights never become a NaN perplexity: the forward pass refuses non-finite
// logits and names the position and the weight.
TEST(NonFinite, LogitsFromANanWeightNameTheTensor) {
  const std::string dir = test::temp_dir("files-nan");
  gguf::Writer w = test::tiny_model_writer();
  std::vector<float> v(size_t(32 * 48), 0.01f);
  v[size_t(5 * 32 + 7)] = std::nanf("");
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  w.remove_tensor("blk.1.ffn_up.weight");
  w.add_tensor("blk.1.ffn_up.weight", {32, 48}, TensorType::F32, b);
  w.write(dir + "/nan.gguf");
  const Model m = load_model(dir + "/nan.gguf");
  EXPECT_EQ(find_nonfinite_weight(m), "blk.1.ffn_up.weight row 5, column 7 (nan)");
  Forward fwd(m, 8);
  std::vector<float> logits;
  const int32_t toks[3] = {1, 70, 71};
  try {
    fwd.eval(toks, logits, 0);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("non-finite logit (nan) at position 0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("blk.1.ffn_up.weight row 5, column 7"), std::string::npos) << msg;
  }
  const Model good = load_model(test::write_tiny_model(dir + "/good.gguf"));
  EXPECT_EQ(find_nonfinite_weight(good), "");
}

}  // namespace
}  // namespace qbench
