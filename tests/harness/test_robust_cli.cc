// Bad input through the qbench binary: a clear one-line error and exit code 2, never a crash,
// a hang or a silent wrong number; I/O failures (disk full) exit 1; outputs over devices, FIFOs
// and symbolic links; what bench measures by default.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/harness/test_run_util.h"
#include "tests/test_util.h"
#include "tests/tiny_model.h"

namespace qbench {
namespace {

namespace fs = std::filesystem;

// qbench ARGS with stdout/stderr captured in DIR (tests/harness/test_run_util.h).
using test::CliResult;
using test::run_cli;


// Exit 2 and one error line (the last of stderr; progress lines may come before it).
void expect_bad_input(const CliResult& r, const std::string& fragment) {
  EXPECT_EQ(r.exit_code, 2) << r.err;
  ASSERT_FALSE(r.err.empty());
  const size_t start = r.err.rfind('\n', r.err.size() - 2);
  const std::string last = r.err.substr(start == std::string::npos ? 0 : start + 1);
  EXPECT_EQ(last.rfind("qbench ", 0), 0u) << r.err;
  EXPECT_NE(last.find(": error: "), std::string::npos) << r.err;
  EXPECT_NE(last.find(fragment), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(": error: "), r.err.rfind(": error: ")) << "more than one error line: " << r.err;
}

// Reads `fifo` to the end on a thread; finish() unblocks it when the writer never came.
class FifoReader {
 public:
  explicit FifoReader(const std::string& fifo) : fifo_(fifo), thread_([this] {
    std::ifstream in(fifo_, std::ios::binary);  // blocks until a writer opens
    received_.assign(std::istreambuf_iterator<char>(in), {});
    done_ = true;
  }) {}
  std::string finish() {
    // If the command failed before opening the FIFO, the reader still waits in open(): be its writer.
    while (!done_) {
      const int fd = ::open(fifo_.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd >= 0) {
        ::close(fd);
        break;
      }
      std::this_thread::yield();
    }
    thread_.join();
    return received_;
  }

 private:
  std::string fifo_, received_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

class RobustCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir(std::string("robust-") + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    test::TinySpec s;
    s.n_ff = 64;  // whole blocks of 32 for q8_0 / q4_0
    model_ = test::write_tiny_model(dir_ + "/m.gguf", s);
    std::ofstream text(dir_ + "/text.txt");
    for (int i = 0; i < 40; ++i) text << "the ant and the hen eat at ten in the sun. ";
  }
  std::string dir_, model_;
};

// Finding 8: a quantized file is benchmarked as stored, and the output says what was measured.
TEST_F(RobustCli, BenchMeasuresTheFileAsStoredByDefault) {
  ASSERT_EQ(run_cli("quantize --model " + model_ + " --scheme q4_0 --pure --out " + dir_ + "/q4.gguf", dir_).exit_code, 0);
  const std::string opts = " --prefill 4 --decode 2 --reps 1 --warmup 0 --threads 1";
  auto r = run_cli("bench --model " + dir_ + "/q4.gguf --json" + opts, dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["scheme"], "keep");
  EXPECT_EQ(j["scheme_canonical"], "keep");
  EXPECT_EQ(j["weight_formats"], nlohmann::json({{"q4_0", 15}}));  // 2 layers x 7 + output
  EXPECT_NEAR(j["bits_per_weight"].get<double>(), 4.5, 1e-9);
  r = run_cli("bench --model " + dir_ + "/q4.gguf" + opts, dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("keep (q4_0)"), std::string::npos) << r.out;
  // An explicit scheme still re-quantizes.
  r = run_cli("bench --model " + dir_ + "/q4.gguf --scheme fp16 --json" + opts, dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["weight_formats"], nlohmann::json({{"f16", 15}}));
}

// Finding 10: --out over a device or FIFO writes through; the node stays what it was.
TEST_F(RobustCli, OutputToDevicesAndFifos) {
  auto r = run_cli("quantize --model " + model_ + " --scheme q8_0 --out /dev/null", dir_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  struct stat st {};
  ASSERT_EQ(::stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  r = run_cli("eval --model " + model_ + " --tasks reply_select --limit 2 --items-out /dev/null", dir_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(::stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));

  const std::string fifo = dir_ + "/out.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  FifoReader reader(fifo);
  r = run_cli("quantize --model " + model_ + " --scheme q8_0 --out " + fifo, dir_);
  const std::string received = reader.finish();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(received.substr(0, 4), "GGUF");
  ASSERT_EQ(::lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));

  // A symbolic link: its target gets the file, the link stays.
  std::ofstream(dir_ + "/target.gguf") << "old";
  fs::create_symlink(dir_ + "/target.gguf", dir_ + "/link.gguf");
  r = run_cli("quantize --model " + model_ + " --scheme q8_0 --out " + dir_ + "/link.gguf", dir_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::is_symlink(dir_ + "/link.gguf"));
  EXPECT_EQ(test::read_file(dir_ + "/target.gguf").substr(0, 4), "GGUF");
}

// Exit codes: a full disk is a failure (1), not bad input (2).
TEST_F(RobustCli, FullDiskExitsWithOne) {
  const auto r = run_cli("quantize --model " + model_ + " --scheme q8_0 --out /dev/full", dir_);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.err.find(": error: "), r.err.rfind(": error: ")) << r.err;
  EXPECT_NE(r.err.find(std::strerror(ENOSPC)), std::string::npos) << r.err;
  struct stat st {};
  ASSERT_EQ(::stat("/dev/full", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
}

// Finding 11: a FIFO as --model (or --text, --calib) is refused at once instead of blocking in open().
TEST_F(RobustCli, FifoInputsAreRefused) {
  const std::string fifo = dir_ + "/in.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_bad_input(run_cli("info --model " + fifo, dir_), "FIFO");
  expect_bad_input(run_cli("perplexity --model " + fifo + " --text " + dir_ + "/text.txt", dir_), "FIFO");
  expect_bad_input(run_cli("perplexity --model " + model_ + " --text " + fifo, dir_), "FIFO");
  expect_bad_input(run_cli("quantize --model " + model_ + " --scheme gptq:int4,group=32 --calib " + fifo + " --out " + dir_ +
                       "/o.gguf", dir_), "FIFO");
}

// Finding 11: --ctx 1 (and a model whose context_length is 1) is an error, not an abort.
TEST_F(RobustCli, EvalContextOfOneIsAnError) {
  expect_bad_input(run_cli("eval --model " + model_ + " --suite chat --limit 3 --ctx 1", dir_), "at least 2 tokens");
  test::TinySpec s;
  s.n_ctx = 1;
  const std::string one = test::write_tiny_model(dir_ + "/ctx1.gguf", s);
  expect_bad_input(run_cli("eval --model " + one + " --suite chat --limit 3", dir_), "context length is 1");
}

// Finding 8: a context too short for the items is measured with lm-eval's left truncation, and
// the truncated items are counted in the JSON and warned about, never silently.
TEST_F(RobustCli, EvalCountsTruncatedItems) {
  auto r = run_cli("eval --model " + model_ + " --suite chat --limit 3 --ctx 2 --json --items-out " + dir_ + "/items.jsonl",
               dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ctx"], 2);
  int64_t truncated = 0;
  for (const auto& t : j["tasks"]) {
    EXPECT_LE(t["truncated_items"].get<int64_t>(), t["n_items"].get<int64_t>());
    truncated += t["truncated_items"].get<int64_t>();
  }
  EXPECT_GT(truncated, 0);
  EXPECT_NE(r.err.find("left-truncated"), std::string::npos) << r.err;
  EXPECT_NE(test::read_file(dir_ + "/items.jsonl").find("\"truncated_tokens\""), std::string::npos);
  r = run_cli("eval --model " + model_ + " --suite chat --limit 3 --ctx 4096 --json", dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("left-truncated"), std::string::npos) << r.err;
}

// Finding 8: perplexity that would score nothing is an error, never "PPL = 1.0000".
TEST_F(RobustCli, PerplexityScoringNothingIsAnError) {
  const std::string base = "perplexity --model " + model_ + " --text " + dir_ + "/text.txt";
  expect_bad_input(run_cli(base + " --ctx 32 --chunks 0", dir_), "--chunks");
  expect_bad_input(run_cli(base + " --ctx 4611686018427387904", dir_), "needs at least twice as many");
  EXPECT_EQ(run_cli(base + " --ctx 32 --chunks 1", dir_).exit_code, 0);
}

// Finding 8: NaN weights make perplexity and eval fail with the tensor's name, exit 2.
TEST_F(RobustCli, NanWeightsFailNamingTheTensor) {
  gguf::Writer w = test::tiny_model_writer();
  std::vector<float> v(size_t(32 * 32), 0.01f);
  v[40] = std::nanf("");
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  w.remove_tensor("blk.0.attn_q.weight");
  w.add_tensor("blk.0.attn_q.weight", {32, 32}, TensorType::F32, b);
  w.write(dir_ + "/nan.gguf");
  const std::string where = "blk.0.attn_q.weight row 1, column 8 (nan)";
  expect_bad_input(run_cli("perplexity --model " + dir_ + "/nan.gguf --text " + dir_ + "/text.txt --ctx 32", dir_), where);
  expect_bad_input(run_cli("eval --model " + dir_ + "/nan.gguf --tasks reply_select --limit 2", dir_), where);
}

// Finding 8 and 11: calibration text is checked like --text, and --calib-samples is bounded by
// the windows the text has.
TEST_F(RobustCli, CalibrationTextAndSamplesAreChecked) {
  std::ofstream(dir_ + "/bin.txt", std::ios::binary) << std::string("\x7f" "ELF\x02\x01\x01\0\0\0", 10);
  std::ofstream(dir_ + "/empty.txt").close();
  const std::string base = "quantize --model " + model_ + " --scheme gptq:int4,group=32 --out " + dir_ + "/o.gguf";
  expect_bad_input(run_cli(base + " --calib " + dir_ + "/bin.txt", dir_), "bin.txt");
  expect_bad_input(run_cli(base + " --calib " + dir_ + "/empty.txt", dir_), "empty.txt: text file is empty");
  expect_bad_input(run_cli(base + " --calib " + dir_ + "/text.txt --calib-ctx 32 --calib-samples 1000000000", dir_),
                   "distinct windows");
  EXPECT_FALSE(fs::exists(dir_ + "/o.gguf"));
}

// Finding 8: conflicting scheme keys are an error on the command line too.
TEST_F(RobustCli, ConflictingSchemeKeys) {
  expect_bad_input(run_cli("quantize --model " + model_ + " --scheme rtn:int4,bits=8 --out " + dir_ + "/o.gguf", dir_),
                   "given twice");
  expect_bad_input(run_cli("quantize --model " + model_ + " --scheme rtn:int4,group=64,group=32 --out " + dir_ + "/o.gguf",
                       dir_), "given twice");
}

}  // namespace
}  // namespace qbench
