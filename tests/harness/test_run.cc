// qbench run end to end on tiny random models: results schema, caching, resume after an
// interruption, failed schemes, compare (both outcomes), report formats, bench.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "engine/core/error.h"
#include "harness/build_identity.h"
#include "harness/cli.h"
#include "harness/run/compare.h"
#include "harness/run/report.h"
#include "harness/run/results.h"
#include "harness/run/runner.h"
#include "harness/run/shapes.h"
#include "harness/sha256.h"
#include "tests/harness/test_run_util.h"

namespace qbench {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

struct Fixture {
  std::string dir, model;
};

Fixture make_fixture(const std::string& name) {
  Fixture f;
  f.dir = test::temp_dir(name);
  f.model = test::write_tiny_model(f.dir + "/tiny.gguf", test::run_tiny_spec());
  return f;
}

run::RunOutcome run_quiet(const run::ExperimentConfig& c, const std::string& out, bool force = false,
                          const std::atomic<bool>* stop = nullptr, bool resume = false, bool reuse_stale = false) {
  run::RunOptions o;
  o.out = out;
  o.force = force;
  o.stop = stop;
  o.resume = resume;
  o.reuse_stale = reuse_stale;
  o.command_line = "test";
  return run::run_experiment(c, o);
}

int count_status(const json& doc, const std::string& status) {
  int n = 0;
  for (const auto& r : doc["runs"]) {
    for (const auto& [name, u] : r["units"].items()) n += u["status"] == status;
  }
  return n;
}

// A scheme may carry the KV cache ("+kv=TYPE[/TYPE_V]"): its units run with that cache, the
// memory record states it with its bytes (per token: 2 layers x 2 KV heads x the two rows of a
// 32-value head), and the row keeps the suffix in its name.
TEST(Run, KvCacheSchemesRunAndRecordTheirBytes) {
  const auto f = make_fixture("run-kv");
  const auto c = test::tiny_config(f.model, {"fp16", "fp16+kv=q8_0", "q8_0+kv=q4_0/q8_0"});
  const std::string out = f.dir + "/res.json";
  const auto r = run_quiet(c, out);
  EXPECT_EQ(r.failed_units, 0);
  const json doc = test::read_json(out);
  EXPECT_EQ(run::validate_results(doc), std::vector<std::string>{});
  const json& runs = doc["runs"];
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0]["memory"]["kv_cache"], "f32");
  EXPECT_EQ(runs[1]["memory"]["kv_cache"], "q8_0");
  EXPECT_EQ(runs[2]["memory"]["kv_cache"], "q4_0/q8_0");
  EXPECT_EQ(runs[0]["memory"]["kv_bytes_per_token"], 2 * 2 * (128 + 128));
  EXPECT_EQ(runs[1]["memory"]["kv_bytes_per_token"], 2 * 2 * (34 + 34));
  EXPECT_EQ(runs[2]["memory"]["kv_bytes_per_token"], 2 * 2 * (18 + 34));
  for (const auto& run : runs) {
    EXPECT_EQ(run["memory"]["kv_cache_bytes"].get<int64_t>(),
              run["memory"]["kv_bytes_per_token"].get<int64_t>() * run["memory"]["kv_ctx"].get<int64_t>());
  }
  EXPECT_EQ(doc["relative"]["rows"][1]["scheme"], "fp16+kv=q8_0");
  EXPECT_TRUE(doc["relative"]["rows"][2]["scheme_canonical"].get<std::string>().ends_with("+kv=q4_0/q8_0"));
  // The cache changed the model's output (fp16 weights in both rows), a little.
  const double kld = doc["relative"]["rows"][1]["quality"]["kld"]["value"].get<double>();
  EXPECT_GT(kld, doc["relative"]["rows"][0]["quality"]["kld"]["value"].get<double>());
  EXPECT_LT(kld, 0.01);
  // qbench report: a "KV cache" column with the types and bytes per token.
  const std::string table = run::render_tables(run::report_tables(doc), run::ReportFormat::Markdown);
  EXPECT_NE(table.find("| activations | KV cache |"), std::string::npos) << table;
  EXPECT_NE(table.find("| q8_0 (272 B/token) |"), std::string::npos) << table;
  EXPECT_NE(table.find("| f32 (1024 B/token) |"), std::string::npos) << table;
}

TEST(Run, ResultsFollowTheSchemaAndTheRelativeTable) {
  const auto f = make_fixture("run-schema");
  const auto c = test::tiny_config(f.model, {"fp16", "int8", "q8_0"});
  const std::string out = f.dir + "/res.json";
  const auto r = run_quiet(c, out);
  EXPECT_FALSE(r.interrupted);
  EXPECT_EQ(r.failed_units, 0);
  EXPECT_EQ(r.measured_units, 3 * 4);  // perplexity, kl, suite:chat, speed
  const json doc = test::read_json(out);
  EXPECT_EQ(run::validate_results(doc), std::vector<std::string>{});
  EXPECT_EQ(doc["status"], "complete");
  EXPECT_EQ(doc["model"]["sha256"], sha256_file(f.model));
  EXPECT_EQ(doc["model"]["parameters"].get<int64_t>(), load_model(f.model).n_params());
  EXPECT_EQ(doc["runs"].size(), 3u);
  for (const auto& run : doc["runs"]) {
    EXPECT_EQ(run["status"], "ok") << run.dump();
    EXPECT_GT(run["memory"]["weight_bytes"].get<int64_t>(), 0);
    EXPECT_GT(run["memory"]["kv_cache_bytes"].get<int64_t>(), 0);
    EXPECT_GT(run["units"]["speed"]["result"]["decode"]["tokens_per_second_median"].get<double>(), 0.0);
    // Per-item files exist next to the results and hold one record per item.
    const std::string items = (fs::path(out).parent_path() / run["units"]["suite:chat"]["items_file"].get<std::string>()).string();
    EXPECT_TRUE(fs::exists(items)) << items;
  }
  // fp16 is the baseline: 100% of itself; int8 close to it, fewer bytes.
  const json& rows = doc["relative"]["rows"];
  EXPECT_EQ(doc["relative"]["baseline"], "fp16");
  EXPECT_DOUBLE_EQ(rows[0]["quality"]["perplexity"]["pct"].get<double>(), 100.0);
  EXPECT_NEAR(rows[1]["quality"]["perplexity"]["pct"].get<double>(), 100.0, 2.0);
  EXPECT_LT(rows[1]["memory_x"].get<double>(), 1.0);
  // int8 per channel: 8 bits + one fp16 scale per row, over the multiplied matrices (output and
  // layers; the token embedding is a lookup): 49152 weights in rows of 192 (ffn_down), 235008 in rows of 128.
  EXPECT_NEAR(rows[1]["bits_per_weight"].get<double>(), (235008 * (8 + 16.0 / 128) + 49152 * (8 + 16.0 / 192)) / 284160, 1e-9);
  EXPECT_DOUBLE_EQ(rows[0]["bits_per_weight"].get<double>(), 16.0);
  EXPECT_LT(rows[1]["quality"]["kld"]["value"].get<double>(), 0.01);
  // The validator catches missing and mistyped fields.
  json broken = doc;
  broken["meta"].erase("date");
  broken["runs"][1]["units"]["perplexity"]["result"]["ppl"] = "12";
  broken["schema_version"] = 99;
  const auto problems = run::validate_results(broken);
  ASSERT_EQ(problems.size(), 3u);
  EXPECT_EQ(problems[0], "schema_version: this qbench reads 2, got 99");
  EXPECT_EQ(problems[1], "meta.date: missing");
  EXPECT_EQ(problems[2], "runs[1].units.perplexity.result.ppl: expected a number, got string");
}

// Same inputs and seed give the same quality numbers whatever the thread count (timings aside).
TEST(Run, QualityIsIdenticalForAnyThreadCount) {
  const auto f = make_fixture("run-threads");
  auto c = test::tiny_config(f.model, {"fp16", "nf4"});
  c.speed = false;
  cli::set_threads(1);
  run_quiet(c, f.dir + "/one.json");
  cli::set_threads(2);
  run_quiet(c, f.dir + "/two.json");
  const json a = test::read_json(f.dir + "/one.json"), b = test::read_json(f.dir + "/two.json");
  for (size_t i = 0; i < 2; ++i) {
    for (const char* unit : {"perplexity", "kl", "suite:chat"}) {
      json ra = a["runs"][i]["units"][unit]["result"], rb = b["runs"][i]["units"][unit]["result"];
      if (ra.contains("tasks")) {
        for (auto& t : ra["tasks"]) t.erase("seconds");
        for (auto& t : rb["tasks"]) t.erase("seconds");
      }
      EXPECT_EQ(ra, rb) << unit;
      EXPECT_EQ(a["runs"][i]["units"][unit]["key"], b["runs"][i]["units"][unit]["key"]);
    }
  }
  EXPECT_EQ(a["relative"]["rows"][1]["quality"], b["relative"]["rows"][1]["quality"]);
}

TEST(Run, RerunReusesCachedUnitsByContentKey) {
  const auto f = make_fixture("run-cache");
  auto c = test::tiny_config(f.model, {"fp16", "int8"});
  c.speed = false;
  const std::string out = f.dir + "/res.json";
  const auto first = run_quiet(c, out);
  EXPECT_EQ(first.measured_units, 6);
  const json doc1 = test::read_json(out);
  const auto again = run_quiet(c, out);
  EXPECT_EQ(again.measured_units, 0);
  EXPECT_EQ(again.cached_units, 6);
  const json doc1b = test::read_json(out);
  // A changed item limit would replace the suites' measured units: refused, naming them and the
  // setting, and the file is left as it was.
  const int64_t limit = c.limit;
  c.limit = 2;
  try {
    run_quiet(c, out);
    ADD_FAILURE() << "a config replacing measured units was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("would replace 2 measured unit(s)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("suite:chat"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'limit': " + std::to_string(limit) + " in the file, 2 now"), std::string::npos) << msg;
  }
  EXPECT_EQ(test::read_json(out), doc1b);
  // Measured into another file: the suites' keys change, the others' do not.
  run_quiet(c, f.dir + "/limit2.json");
  const json doc2 = test::read_json(f.dir + "/limit2.json");
  EXPECT_EQ(doc1["runs"][0]["units"]["perplexity"]["key"], doc2["runs"][0]["units"]["perplexity"]["key"]);
  EXPECT_NE(doc1["runs"][0]["units"]["suite:chat"]["key"], doc2["runs"][0]["units"]["suite:chat"]["key"]);
  EXPECT_NE(doc1["runs"][0]["units"]["perplexity"]["key"], doc1["runs"][1]["units"]["perplexity"]["key"]);  // scheme
  // Adding a scheme replaces nothing: only its units are measured.
  c.limit = limit;
  c.schemes.push_back("q8_0");
  const auto added = run_quiet(c, out);
  EXPECT_EQ(added.measured_units, 3);
  EXPECT_EQ(added.cached_units, 6);
  // --force measures everything anew and keeps the old file, with its per-item files, as a backup.
  const json before_force = test::read_json(out);
  EXPECT_EQ(run_quiet(c, out, /*force=*/true).measured_units, 9);
  std::vector<fs::path> backups;
  for (const auto& e : fs::directory_iterator(f.dir)) {
    if (e.path().filename().string().rfind("res.bak-", 0) == 0 && e.path().extension() == ".json") backups.push_back(e.path());
  }
  ASSERT_EQ(backups.size(), 1u);
  const json backup = run::load_results(backups[0].string());
  EXPECT_EQ(backup["runs"][2]["units"]["kl"]["result"], before_force["runs"][2]["units"]["kl"]["result"]);
  const std::string items = backup["runs"][2]["units"]["kl"]["items_file"];
  EXPECT_EQ(items.rfind(backups[0].stem().string() + ".items/", 0), 0u) << items;
  EXPECT_TRUE(fs::exists(fs::path(f.dir) / items)) << items;
  // Keys depend on the model file's content: another model would replace every unit.
  test::write_tiny_model(f.model, [] { auto s = test::run_tiny_spec(); s.seed = 8; return s; }());
  EXPECT_THROW(run_quiet(c, out), Error);
  EXPECT_EQ(run_quiet(c, f.dir + "/other-model.json").measured_units, 9);
}

// The key of a unit covers the code that measures it (harness/build_identity.h): a unit measured
// by other code is measured again, unless --reuse-stale, which records the reuse and makes the
// report flag it.
TEST(Run, UnitsMeasuredByOtherCodeAreMeasuredAgain) {
  const auto f = make_fixture("run-stale");
  auto c = test::tiny_config(f.model, {"fp16", "int8"});
  c.speed = false;
  const std::string out = f.dir + "/res.json";
  run_quiet(c, out);
  json doc = test::read_json(out);
  const json& kl = doc["runs"][1]["units"]["kl"];
  EXPECT_EQ(kl["code_sha256"], sha256_hex(measurement_identity(MeasurementKind::Quality).dump()));
  EXPECT_EQ(kl["measured_by"], build_label());
  EXPECT_EQ(doc["meta"]["build"], build_identity());
  // As if measured by an older build: same settings, other code.
  auto age = [&](json& d) {
    json& u = d["runs"][1]["units"]["kl"];
    u["code_sha256"] = std::string(64, '0');
    u["key"] = std::string(64, '1');
    u["measured_by"] = "0123456789ab";
    u["result"]["kld_mean"] = 123.0;
  };
  age(doc);
  test::write_json(out, doc);
  const auto rerun = run_quiet(c, out);
  EXPECT_EQ(rerun.measured_units, 1);
  EXPECT_EQ(rerun.cached_units, 5);
  json now = test::read_json(out);
  EXPECT_EQ(now["runs"][1]["units"]["kl"]["measured_by"], build_label());
  EXPECT_LT(now["runs"][1]["units"]["kl"]["result"]["kld_mean"].get<double>(), 1.0);
  // --reuse-stale keeps it, says so in the unit, and the report flags the run.
  age(now);
  test::write_json(out, now);
  const auto reused = run_quiet(c, out, false, nullptr, false, /*reuse_stale=*/true);
  EXPECT_EQ(reused.measured_units, 0);
  EXPECT_EQ(reused.stale_units, 1);
  now = test::read_json(out);
  EXPECT_EQ(now["runs"][1]["units"]["kl"]["result"]["kld_mean"], 123.0);
  EXPECT_TRUE(now["runs"][1]["units"]["kl"].contains("stale"));
  EXPECT_EQ(now["relative"]["rows"][1]["stale_units"], json::array({"kl"}));
  const std::string table = run::render_tables(run::report_tables(now), run::ReportFormat::Markdown);
  EXPECT_NE(table.find("| int8 * |"), std::string::npos) << table;
  EXPECT_NE(table.find("reused by --reuse-stale"), std::string::npos) << table;
}

// The build identity sees the sources: each module's hash is the sha256 of "path sha256\n" over
// its files as they are on disk, so an edit to any of them changes every key that depends on it.
TEST(Run, BuildIdentityHashesTheSourcesOnDisk) {
  const fs::path root = QBENCH_SOURCE_DIR;
  auto module_hash = [&](const std::string& dir, const std::vector<std::string>& exts) {
    std::vector<std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(root / dir)) {
      if (!e.is_regular_file()) continue;
      const std::string name = e.path().filename().string();
      bool take = name == "CMakeLists.txt";
      for (const auto& x : exts) take = take || e.path().extension() == x;
      if (take) files.push_back(fs::relative(e.path(), root).string());
    }
    std::sort(files.begin(), files.end());
    std::string manifest;
    for (const auto& p : files) manifest += p + " " + sha256_file((root / p).string()) + "\n";
    return sha256_hex(manifest);
  };
  const json& m = build_identity()["modules"];
  EXPECT_EQ(m["engine"], module_hash("engine", {".cc", ".h"})) << "rebuild: the binary predates the engine sources";
  EXPECT_EQ(m["quantizers"], module_hash("quantizers", {".cc", ".h"}));
  EXPECT_EQ(m["tasks"], module_hash("tasks", {".cc", ".h", ".json"}));
  EXPECT_NE(sha256_hex(measurement_identity(MeasurementKind::Quality).dump()),
            sha256_hex(measurement_identity(MeasurementKind::Speed).dump()));
  EXPECT_EQ(measurement_identity(MeasurementKind::Speed)["engine"], m["engine"]);
  EXPECT_FALSE(measurement_identity(MeasurementKind::Speed).contains("tasks"));
}

TEST(Run, CalibratedSchemesGetTheCalibrationTextAndItsKey) {
  const auto f = make_fixture("run-calib");
  auto c = test::tiny_config(f.model, {"int8", "gptq:int4,group=32"});
  c.speed = false;
  c.calib_samples = 8;
  c.calib_ctx = 32;
  const std::string out = f.dir + "/res.json";
  const auto first = run_quiet(c, out);
  EXPECT_EQ(first.failed_units, 0);
  const json doc1 = test::read_json(out);
  ASSERT_TRUE(doc1["data"]["calibration"].is_object());
  EXPECT_EQ(doc1["data"]["calibration"]["samples"], 8);
  EXPECT_EQ(doc1["runs"][1]["status"], "ok");
  EXPECT_TRUE(doc1["runs"][1]["quantization"]["calibration"].is_string());
  EXPECT_TRUE(doc1["runs"][0]["quantization"]["calibration"].is_null());
  // Other calibration windows change the gptq run's keys only.
  c.calib_samples = 6;
  EXPECT_THROW(run_quiet(c, out), Error);  // would replace the gptq run's units
  const auto changed = run_quiet(c, f.dir + "/six.json");
  EXPECT_EQ(changed.measured_units, 6);
  const json doc2 = test::read_json(f.dir + "/six.json");
  for (const char* unit : {"perplexity", "kl", "suite:chat"}) {
    EXPECT_EQ(doc1["runs"][0]["units"][unit]["key"], doc2["runs"][0]["units"][unit]["key"]) << unit;
    EXPECT_NE(doc1["runs"][1]["units"][unit]["key"], doc2["runs"][1]["units"][unit]["key"]) << unit;
  }
  // No calibrated scheme: no calibration text is read (a bad one is not an error).
  c.schemes = {"int8"};
  c.calib_text = "generated:no_such_generator";
  EXPECT_NO_THROW(run_quiet(c, f.dir + "/int8.json"));
  c.schemes = {"gptq:int4,group=32"};
  EXPECT_THROW(run_quiet(c, f.dir + "/gptq.json"), Error);
}

TEST(Run, InterruptedRunLeavesValidFileAndResumes) {
  const auto f = make_fixture("run-resume");
  auto c = test::tiny_config(f.model, {"fp16", "int8"});
  c.speed = false;
  const std::string out = f.dir + "/res.json";
  // Interrupted before any unit: a valid file saying so.
  std::atomic<bool> stop{true};
  const auto r0 = run_quiet(c, out, false, &stop);
  EXPECT_TRUE(r0.interrupted);
  json doc = test::read_json(out);
  EXPECT_EQ(run::validate_results(doc), std::vector<std::string>{});
  EXPECT_EQ(doc["status"], "interrupted");
  // A partial file as an interruption mid-way leaves it: some units done, others pending.
  run_quiet(c, out);
  doc = test::read_json(out);
  const json done_kl = doc["runs"][1]["units"]["kl"];
  doc["status"] = "interrupted";
  doc["runs"][1]["units"]["suite:chat"] = {{"key", doc["runs"][1]["units"]["suite:chat"]["key"]}, {"status", "pending"}};
  doc["runs"][1]["status"] = "running";
  doc["runs"][0]["units"]["perplexity"] = {{"key", doc["runs"][0]["units"]["perplexity"]["key"]}, {"status", "pending"}};
  test::write_json(out, doc);
  EXPECT_EQ(run::validate_results(doc), std::vector<std::string>{});
  const auto resumed = run_quiet(c, out, false, nullptr, /*resume=*/true);
  EXPECT_EQ(resumed.measured_units, 2);
  EXPECT_EQ(resumed.cached_units, 4);
  doc = test::read_json(out);
  EXPECT_EQ(doc["status"], "complete");
  EXPECT_EQ(count_status(doc, "ok"), 6);
  EXPECT_EQ(doc["runs"][1]["units"]["kl"]["result"], done_kl["result"]);  // kept, not remeasured
  EXPECT_TRUE(doc["runs"][1]["units"]["kl"]["cached"].get<bool>());
  // --resume needs a file, and one of the same experiment.
  EXPECT_THROW(run_quiet(c, f.dir + "/absent.json", false, nullptr, true), Error);
  c.name = "other";
  EXPECT_THROW(run_quiet(c, out, false, nullptr, true), Error);
  // A file that is not a results document is never overwritten.
  std::ofstream(f.dir + "/junk.json") << "{\"hello\": 1}";
  EXPECT_THROW(run_quiet(c, f.dir + "/junk.json"), Error);
}

// A real Ctrl-C: SIGINT once the first unit is saved; the process stops after the units in
// flight (exit 130), the file is valid and says "interrupted", and --resume finishes the rest.
TEST(Run, SigintStopsCleanlyAndResumeFinishes) {
  const auto f = make_fixture("run-sigint");
  auto c = test::tiny_config(f.model, {"fp16", "int8", "q8_0", "rtn:int4,group=64", "rtn:int5,group=64", "nf4"});
  c.suites = {"chat", "math_reasoning"};
  c.limit = 10;
  c.threads = 1;  // units one at a time, so the signal lands between them
  const std::string cfg = f.dir + "/exp.json", out = f.dir + "/res.json";
  test::write_json(cfg, c.to_json());
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string log = f.dir + "/child.log";
    freopen(log.c_str(), "w", stdout);
    freopen(log.c_str(), "a", stderr);
    execl(QBENCH_BINARY, "qbench", "run", "--config", cfg.c_str(), "--out", out.c_str(), "--quiet", (char*)nullptr);
    _exit(127);
  }
  bool signalled = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!signalled && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (!fs::exists(out)) continue;
    json doc;
    try {
      doc = test::read_json(out);  // replaced atomically: always a whole document
    } catch (const json::exception&) {
      FAIL() << "results file not valid JSON while running";
    }
    if (count_status(doc, "ok") >= 1) {
      ASSERT_EQ(kill(pid, SIGINT), 0);
      signalled = true;
    }
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(signalled) << "no unit finished within 60 s";
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 130) << "the run finished before the signal; give it more work";
  json doc = test::read_json(out);
  EXPECT_EQ(run::validate_results(doc), std::vector<std::string>{});
  EXPECT_EQ(doc["status"], "interrupted");
  const int done = count_status(doc, "ok"), pending = count_status(doc, "pending");
  EXPECT_GE(done, 1);
  EXPECT_GE(pending, 1);
  const auto resumed = test::run_cli("run --config " + cfg + " --out " + out + " --resume", f.dir);
  EXPECT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find(std::to_string(done) + " reused from the cache"), std::string::npos) << resumed.err;
  doc = test::read_json(out);
  EXPECT_EQ(doc["status"], "complete");
  EXPECT_EQ(count_status(doc, "pending"), 0);
  EXPECT_EQ(count_status(doc, "ok"), 6 * 5);
}

TEST(Run, FailedSchemeIsRecordedAndTheOthersComplete) {
  const auto f = make_fixture("run-fail");
  auto c = test::tiny_config(f.model, {"fp16", "rtn:int4,group=128", "nf4"});
  c.speed = false;
  const std::string out = f.dir + "/res.json";
  const auto r = run_quiet(c, out);
  EXPECT_EQ(r.failed_units, 1);
  const json doc = test::read_json(out);
  EXPECT_EQ(run::validate_results(doc), std::vector<std::string>{});
  EXPECT_EQ(doc["runs"][0]["status"], "ok");
  EXPECT_EQ(doc["runs"][1]["status"], "failed");
  EXPECT_NE(doc["runs"][1]["error"].get<std::string>().find("ffn_down"), std::string::npos) << doc["runs"][1]["error"];
  EXPECT_EQ(doc["runs"][1]["units"]["kl"]["status"], "skipped");
  EXPECT_EQ(doc["runs"][2]["status"], "ok");
  // The CLI reports it with exit status 1; the table marks it.
  const std::string cfg = f.dir + "/exp.json";
  test::write_json(cfg, c.to_json());
  const auto cli = test::run_cli("run --config " + cfg + " --out " + f.dir + "/cli.json --quiet", f.dir);
  EXPECT_EQ(cli.exit_code, 1) << cli.err;
  EXPECT_NE(cli.out.find("| rtn:int4,group=128 | failed |"), std::string::npos) << cli.out;
}

TEST(Run, CliErrorsAreOneLineWithExitCode2) {
  const auto f = make_fixture("run-cli");
  std::ofstream(f.dir + "/bad.json") << R"({"version": 1, "limit": "many"})";
  auto r = test::run_cli("run --config " + f.dir + "/bad.json", f.dir);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("field 'limit'"), std::string::npos) << r.err;
  std::ofstream(f.dir + "/nomodel.json") << R"({"model": ")" + f.dir + R"(/absent.gguf"})";
  r = test::run_cli("run --config " + f.dir + "/nomodel.json --out " + f.dir + "/o.json", f.dir);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("absent.gguf"), std::string::npos) << r.err;
  r = test::run_cli("run --config " + f.dir + "/absent.json", f.dir);
  EXPECT_EQ(r.exit_code, 2);
  // The field list printed from the one declaration: every field with its default.
  r = test::run_cli("run --list-fields", f.dir);
  EXPECT_EQ(r.exit_code, 0);
  for (const auto& field : run::experiment_fields()) {
    EXPECT_NE(r.out.find(field.name + " "), std::string::npos) << field.name;
  }
  EXPECT_NE(r.out.find("[\"fp16\",\"int8\",\"rtn:int4,group=128\",\"gptq:int4,group=128\",\"q4_K\",\"nf4\"]"), std::string::npos) << r.out;
}

// The chat template of the chat tasks: chosen once for the model, recorded in the document and
// in the chat suite's protocol (so in its settings key: another template is measured again, and a
// rerun that would replace measured units with another template is refused), absent from suites
// without chat tasks; a model template qbench does not recognise stops the run before any work
// unless chat_template names one.
TEST(Run, ChatTemplateIsChosenRecordedAndKeyed) {
  const auto f = make_fixture("run-chat-template");
  auto c = test::tiny_config(f.model, {"fp16"});
  c.suites = {"chat", "math_reasoning"};
  c.limit = 2;
  c.perplexity = c.kl = c.speed = false;
  const std::string out = f.dir + "/res.json";
  run_quiet(c, out);
  const json doc = test::read_json(out);
  EXPECT_EQ(doc["data"]["chat_template"]["name"], "qbench");  // the tiny model has no template
  EXPECT_EQ(doc["data"]["chat_template"]["source"], "default");
  const json& units = doc["runs"][0]["units"];
  EXPECT_EQ(units["suite:chat"]["protocol"]["chat_template"], "qbench");
  EXPECT_FALSE(units["suite:math_reasoning"]["protocol"].contains("chat_template"));
  std::map<std::string, json> tasks;
  for (const auto& t : units["suite:chat"]["result"]["tasks"]) tasks[t["task"]] = t;
  EXPECT_EQ(tasks.at("reply_select")["chat_template"], "qbench");
  EXPECT_EQ(tasks.at("instruct")["chat_template"], "qbench");
  EXPECT_FALSE(tasks.at("dialogue_ppl").contains("chat_template"));

  // Named: the chat suite's settings change, the other suite's do not.
  c.chat_template = "llama3";
  try {
    run_quiet(c, out);
    ADD_FAILURE() << "another template replaced measured units";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("suite:chat"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'chat_template'"), std::string::npos) << e.what();
  }
  run_quiet(c, f.dir + "/llama3.json");
  const json named = test::read_json(f.dir + "/llama3.json");
  EXPECT_EQ(named["data"]["chat_template"]["name"], "llama3");
  EXPECT_EQ(named["data"]["chat_template"]["source"], "named");
  const json& nu = named["runs"][0]["units"];
  EXPECT_EQ(nu["suite:chat"]["protocol"]["chat_template"], "llama3");
  EXPECT_NE(nu["suite:chat"]["settings_key"], units["suite:chat"]["settings_key"]);
  EXPECT_EQ(nu["suite:math_reasoning"]["settings_key"], units["suite:math_reasoning"]["settings_key"]);
  auto items_of = [&](const json& unit) { return test::read_file(f.dir + "/" + unit["items_file"].get<std::string>()); };
  EXPECT_NE(items_of(nu["suite:chat"]), items_of(units["suite:chat"])) << "another template, other prompts";

  // The model's own template: recognised, or an error before anything runs.
  auto with_template = [&](const std::string& tpl) {
    auto w = test::tiny_model_writer(test::run_tiny_spec());
    w.set("tokenizer.chat_template", gguf::Value::str(tpl));
    w.write(f.dir + "/templated.gguf");
  };
  with_template("{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + "
                "m['content'] | trim + '<|eot_id|>' }}{% endfor %}");
  c.model = f.dir + "/templated.gguf";
  c.chat_template.clear();
  run_quiet(c, f.dir + "/detected.json");
  const json detected = test::read_json(f.dir + "/detected.json");
  EXPECT_EQ(detected["data"]["chat_template"]["source"], "detected");
  EXPECT_EQ(items_of(detected["runs"][0]["units"]["suite:chat"]), items_of(nu["suite:chat"]))
      << "the recognised llama3 template measures what the named one does";
  with_template("{% for m in messages %}{{ m['content'] }}{% endfor %}");
  try {
    run_quiet(c, f.dir + "/unknown.json");
    ADD_FAILURE() << "an unrecognised template was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pass --chat-template NAME"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(f.dir + "/unknown.json")) << "nothing was written";
  c.chat_template = "chatml";
  EXPECT_NO_THROW(run_quiet(c, f.dir + "/unknown.json"));
  c.chat_template.clear();
  c.suites = {"math_reasoning"};  // no chat task: the template does not matter
  run_quiet(c, f.dir + "/math.json");
  EXPECT_TRUE(test::read_json(f.dir + "/math.json")["data"]["chat_template"].is_null());

  // An unknown name is a config error naming the field; --chat-template overrides the config.
  try {
    run::parse_config({{"chat_template", "alpaca"}}, "e.json");
    ADD_FAILURE() << "an unknown template name was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("e.json: field 'chat_template': unknown chat template \"alpaca\""),
              std::string::npos) << e.what();
  }
  std::ofstream(f.dir + "/cfg.json") << c.to_json().dump();
  auto r = test::run_cli("run --config " + f.dir + "/cfg.json --chat-template nope --out " + f.dir + "/cli.json", f.dir);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("nope"), std::string::npos) << r.err;
  c.suites = {"chat"};
  std::ofstream(f.dir + "/cfg.json") << c.to_json().dump();
  r = test::run_cli("run --quiet --json --config " + f.dir + "/cfg.json --chat-template gemma --out " + f.dir + "/cli.json",
                    f.dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::read_json(f.dir + "/cli.json")["runs"][0]["units"]["suite:chat"]["protocol"]["chat_template"], "gemma");
}

// Config files: a key given twice is an error (not last-wins), a number nlohmann cannot hold
// names the file, and "ctx": 1 is refused before anything runs.
TEST(Run, ConfigDuplicateKeysOverflowAndCtxOneAreErrors) {
  const auto f = make_fixture("run-config-strict");
  auto expect_config_error = [&](const std::string& name, const std::string& text, const std::string& fragment) {
    std::ofstream(f.dir + "/" + name) << text;
    try {
      run::load_config(f.dir + "/" + name);
      ADD_FAILURE() << name << " accepted";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(f.dir + "/" + name), std::string::npos) << msg;
      EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  };
  expect_config_error("dup.json", R"({"version": 1, "ctx": 64, "limit": 2, "ctx": 32})", "key 'ctx' appears twice");
  expect_config_error("big.json", R"({"version": 1, "limit": 1e400})", "not valid JSON");
  expect_config_error("ctx1.json", R"({"version": 1, "ctx": 1})", "field 'ctx'");
  // Same key in different objects is fine (nothing else nests today, but the check is per object).
  std::ofstream(f.dir + "/ok.json") << R"({"version": 1, "ctx": 0, "limit": 2})";
  EXPECT_NO_THROW(run::load_config(f.dir + "/ok.json"));
  EXPECT_EQ(run::parse_json_strict(R"({"a": {"x": 1}, "b": {"x": 2}})", "t.json")["b"]["x"], 2);
  // Through the CLI: exit 2, one line naming the file.
  const auto r = test::run_cli("run --config " + f.dir + "/big.json", f.dir);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("big.json"), std::string::npos) << r.err;
}

// A model whose context_length is 1 (suites at ctx 0 = the model's): the suite units fail with a
// recorded error; the run finishes (status not left "running") and exits 1, never aborts.
TEST(Run, ModelWithContextOneFailsTheSuiteUnitsCleanly) {
  const auto f = make_fixture("run-ctx1");
  test::TinySpec s = test::run_tiny_spec();
  s.n_ctx = 1;
  const std::string model = test::write_tiny_model(f.dir + "/ctx1.gguf", s);
  run::ExperimentConfig c = test::tiny_config(model, {"fp16"});
  c.perplexity = false;
  c.kl = false;
  c.speed = false;
  const run::RunOutcome o = run_quiet(c, f.dir + "/out.json");
  EXPECT_GT(o.failed_units, 0);
  for (const auto& r : o.results["runs"]) {
    EXPECT_NE(r["status"], "running");
    for (const auto& [name, u] : r["units"].items()) {
      EXPECT_EQ(u["status"], "failed") << name;
      EXPECT_NE(u["error"].get<std::string>().find("context length is 1"), std::string::npos) << u["error"];
    }
  }
}

TEST(Run, ReportFormats) {
  const auto f = make_fixture("run-report");
  auto c = test::tiny_config(f.model, {"fp16", "q8_0"});
  const std::string out = f.dir + "/res.json";
  run_quiet(c, out);
  auto md = test::run_cli("report " + out + " --format md", f.dir);
  ASSERT_EQ(md.exit_code, 0) << md.err;
  EXPECT_NE(md.out.find("| method | bits/weight | perplexity % | chat % | KLD (nats) | prefill x | decode x | memory x |"),
            std::string::npos) << md.out;
  EXPECT_NE(md.out.find("| fp16 | 16.00 | 100.0 ± "), std::string::npos) << md.out;
  EXPECT_NE(md.out.find("Suite chat"), std::string::npos);
  const auto tex = test::run_cli("report " + out + " --format latex --out " + f.dir + "/t.tex", f.dir);
  ASSERT_EQ(tex.exit_code, 0) << tex.err;
  std::ifstream in(f.dir + "/t.tex");
  const std::string latex((std::istreambuf_iterator<char>(in)), {});
  for (const char* s : {"\\toprule", "\\midrule", "\\bottomrule", "$\\pm$", "perplexity \\%", "q8\\_0"}) {
    EXPECT_NE(latex.find(s), std::string::npos) << s << "\n" << latex;
  }
  const auto csv = test::run_cli("report " + out + " --format csv", f.dir);
  ASSERT_EQ(csv.exit_code, 0);
  EXPECT_EQ(csv.out.rfind("table,method,bits/weight,perplexity %", 0), 0u) << csv.out;
  EXPECT_EQ(test::run_cli("report " + out + " --format pdf", f.dir).exit_code, 2);
  EXPECT_EQ(test::run_cli("report " + f.dir + "/tiny.gguf", f.dir).exit_code, 2);
  // Relative to another run: it is 100 +/- 0, and a column gives KLD's paired difference from it.
  const auto rebased = test::run_cli("report " + out + " --summary --baseline q8_0", f.dir);
  ASSERT_EQ(rebased.exit_code, 0) << rebased.err;
  EXPECT_NE(rebased.out.find("| KLD (nats) | KLD - q8_0 | prefill x |"), std::string::npos) << rebased.out;
  EXPECT_NE(rebased.out.find("| q8_0 | 8.50 | 100.0 ± 0.0 | 100.0 ± 0.0 | "), std::string::npos) << rebased.out;
  EXPECT_NE(rebased.out.find(" | 0 ± 0 | "), std::string::npos) << rebased.out;
  const auto unknown = test::run_cli("report " + out + " --baseline q4_0", f.dir);
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("baseline 'q4_0': no run of the results has this scheme"), std::string::npos) << unknown.err;
}

// scripts/plot.py on a produced file (Debian's /usr/bin/python3 with python3-matplotlib).
TEST(Run, PlotScriptWritesPngAndPdf) {
  if (std::system("/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1") != 0) {
    if (test::in_ci()) FAIL() << "python3-matplotlib missing (scripts/setup.sh installs it)";
    GTEST_SKIP() << "python3-matplotlib not installed";
  }
  const auto f = make_fixture("run-plot");
  auto c = test::tiny_config(f.model, {"fp16", "q8_0", "rtn:int4,group=128"});  // the last one fails
  run_quiet(c, f.dir + "/res.json");
  const std::string cmd = "/usr/bin/python3 " QBENCH_SOURCE_DIR "/scripts/plot.py " + f.dir + "/res.json --out " + f.dir +
                          "/plots >" + f.dir + "/plot.log 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  for (const char* name : {"pareto.png", "pareto.pdf", "degradation.png", "degradation.pdf"}) {
    const std::string p = f.dir + "/plots/" + name;
    ASSERT_TRUE(fs::exists(p)) << p;
    EXPECT_GT(fs::file_size(p), 1000u) << p;
  }
  std::ofstream(f.dir + "/junk.json") << "{}";
  const std::string bad = "/usr/bin/python3 " QBENCH_SOURCE_DIR "/scripts/plot.py " + f.dir + "/junk.json --out " + f.dir +
                          "/p2 >/dev/null 2>&1";
  const int status = std::system(bad.c_str());
  EXPECT_EQ(WEXITSTATUS(status), 2);
}

TEST(Run, BenchOnATinyShape) {
  const std::string dir = test::temp_dir("run-bench");
  const auto r = test::run_cli(
      "bench --shape tiny --scheme q8_0 --prefill 16 --decode 4 --reps 3 --threads 2 --bandwidth-mib 8 --json", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["shape"], "tiny");
  EXPECT_EQ(j["speed"]["reps"], 3);
  EXPECT_EQ(j["speed"]["prefill"]["tokens_per_second"].size(), 3u);
  EXPECT_GT(j["speed"]["decode"]["tokens_per_second_median"].get<double>(), 0.0);
  EXPECT_NEAR(j["bits_per_weight"].get<double>(), 8.5, 0.01);
  // Decode against the bandwidth: the bytes of test_run_units' hand count (RunBandwidth), the
  // probe's buffer as asked.
  const json& bw = j["decode_bandwidth"];
  EXPECT_EQ(bw["weight_bytes_per_token"], 1253376 + 139264 + 272);
  EXPECT_NEAR(bw["weight_gb_per_s"].get<double>(),
              1392912.0 * j["speed"]["decode"]["tokens_per_second_median"].get<double>() / 1e9, 1e-9);
  EXPECT_EQ(j["read_bandwidth"]["buffer_bytes"], 8 << 20);
  EXPECT_GT(bw["fraction_of_read_bandwidth"].get<double>(), 0.0);
  const auto table = test::run_cli("bench --shape tiny --prefill 8 --decode 2 --reps 1 --bandwidth-mib 8", dir);
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find(" pp8 |"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find(" tg2 |"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("of the read bandwidth"), std::string::npos) << table.out;
  EXPECT_EQ(test::run_cli("bench --shape nope", dir).exit_code, 2);
  EXPECT_EQ(test::run_cli("bench --shape tiny --bandwidth-mib -1", dir).exit_code, 2);
  // A calibration-based scheme has no text at a shape: refused, naming the same-format scheme.
  const auto gptq = test::run_cli("bench --shape tiny --scheme gptq:int4,group=32", dir);
  EXPECT_EQ(gptq.exit_code, 2);
  EXPECT_NE(gptq.err.find("rtn:int4,group=32,sym=true writes the same packed format"), std::string::npos) << gptq.err;
}

// speed_shape: the speed units measure random weights of the shape packed by each scheme (a
// calibration-based one as its same-format equivalent), labelled in the results and the table,
// keyed by the shape.
TEST(Run, SpeedAtAShape) {
  const auto f = make_fixture("run-shape");
  auto c = test::tiny_config(f.model, {"q8_0", "gptq:int4,group=32"});
  c.perplexity = false;
  c.kl = false;
  c.suites = {};
  c.calib_samples = 4;
  c.calib_ctx = 32;
  c.speed_shape = "tiny";
  c.speed_bandwidth_mib = 8;
  const std::string out = f.dir + "/res.json";
  const auto r = run_quiet(c, out);
  ASSERT_EQ(r.failed_units, 0);
  const json doc = test::read_json(out);
  EXPECT_EQ(run::validate_results(doc), std::vector<std::string>{});
  EXPECT_EQ(doc["meta"]["host"]["read_bandwidth"]["buffer_bytes"], 8 << 20);
  const int64_t shape_params = run::shape_parameters(run::find_shape("tiny"));
  ASSERT_NE(doc["model"]["parameters"].get<int64_t>(), shape_params);
  for (size_t i = 0; i < 2; ++i) {
    const json& u = doc["runs"][i]["units"]["speed"];
    ASSERT_EQ(u["status"], "ok") << u.dump();
    const json& sh = u["result"]["shape"];
    EXPECT_EQ(sh["name"], "tiny");
    EXPECT_EQ(sh["parameters"], shape_params);  // the speed came from the shape, not the model
    EXPECT_EQ(u["protocol"]["shape"], "tiny");
    EXPECT_EQ(u["protocol"]["shape_scheme"], sh["scheme_measured"]);
    EXPECT_GT(u["result"]["decode"]["tokens_per_second_median"].get<double>(), 0.0);
    EXPECT_TRUE(u["result"]["decode_bandwidth"]["fraction_of_read_bandwidth"].is_number());
  }
  const json& q8 = doc["runs"][0]["units"]["speed"]["result"];
  EXPECT_EQ(q8["shape"]["label"], "speed measured at tiny shape, random weights");
  EXPECT_EQ(q8["shape"]["scheme_measured"], "Q8_0");
  EXPECT_EQ(q8["decode_bandwidth"]["weight_bytes_per_token"], 1253376 + 139264 + 272);  // the shape's, by hand
  const json& gptq = doc["runs"][1]["units"]["speed"]["result"]["shape"];
  EXPECT_EQ(gptq["scheme_measured"], "rtn:int4,group=32,sym=true,clip=none");
  EXPECT_NE(gptq["label"].get<std::string>().find("as rtn:int4,group=32,sym=true,clip=none, the same packed format"),
            std::string::npos) << gptq["label"];
  // The printed summary (qbench run prints report's first table) says where speed comes from.
  const auto md = test::run_cli("report " + out + " --summary", f.dir);
  ASSERT_EQ(md.exit_code, 0) << md.err;
  EXPECT_NE(md.out.find("; speed measured at tiny shape, random weights**"), std::string::npos) << md.out;
  EXPECT_NE(md.out.find("gptq:int4,group=32 as rtn:int4,group=32,sym=true,clip=none"), std::string::npos) << md.out;
  EXPECT_NE(md.out.find("| decode % bw |"), std::string::npos) << md.out;
  // Keys cover the shape: the same config reuses, another shape or none measures anew, and
  // replacing the file's shape-measured units needs --force.
  EXPECT_EQ(run_quiet(c, out).measured_units, 0);
  auto own = c;
  own.speed_shape = "";
  EXPECT_THROW(run_quiet(own, out), Error);
  run_quiet(own, f.dir + "/own.json");
  const json doc2 = test::read_json(f.dir + "/own.json");
  EXPECT_FALSE(doc2["runs"][0]["units"]["speed"]["protocol"].contains("shape"));
  EXPECT_FALSE(doc2["runs"][0]["units"]["speed"]["result"].contains("shape"));
  EXPECT_NE(doc2["runs"][0]["units"]["speed"]["key"], doc["runs"][0]["units"]["speed"]["key"]);
  const auto nomd = test::run_cli("report " + f.dir + "/own.json --summary", f.dir);
  EXPECT_EQ(nomd.out.find("speed measured at"), std::string::npos) << nomd.out;
  // --speed-shape overrides the config: none (the model itself) or a shape; an unknown one is refused.
  test::write_json(f.dir + "/cfg.json", c.to_json());
  const auto none = test::run_cli("run --quiet --config " + f.dir + "/cfg.json --speed-shape none --out " + f.dir + "/none.json", f.dir);
  ASSERT_EQ(none.exit_code, 0) << none.err;
  EXPECT_EQ(test::read_json(f.dir + "/none.json")["meta"]["experiment"]["speed_shape"], "");
  EXPECT_FALSE(test::read_json(f.dir + "/none.json")["runs"][0]["units"]["speed"]["result"].contains("shape"));
  const auto bad = test::run_cli("run --quiet --config " + f.dir + "/cfg.json --speed-shape nope --out " + f.dir + "/bad.json", f.dir);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("field 'speed_shape': unknown shape 'nope'"), std::string::npos) << bad.err;
}

// The stored baseline results/baselines/tiny.json (tiny model, int8, few items) against a fresh
// run: the same scheme passes, a degraded one (int2) fails. QBENCH_UPDATE_BASELINES=1 rewrites it.
TEST(Run, CompareAgainstStoredBaseline) {
  const auto f = make_fixture("run-compare");
  auto c = test::tiny_config(f.model, {"int8"});
  c.name = "tiny";
  const std::string baseline = QBENCH_SOURCE_DIR "/results/baselines/tiny.json";
  if (const char* u = std::getenv("QBENCH_UPDATE_BASELINES"); u && std::string(u) == "1") {
    fs::remove_all(QBENCH_SOURCE_DIR "/results/baselines/tiny.items");
    fs::remove(baseline);
    run_quiet(c, baseline);
  }
  ASSERT_TRUE(fs::exists(baseline)) << "missing " << baseline << " (QBENCH_UPDATE_BASELINES=1 writes it)";
  const json base = run::load_results(baseline);
  EXPECT_EQ(base["model"]["sha256"], sha256_file(f.model)) << "the tiny model changed: refresh the baseline";
  run_quiet(c, f.dir + "/same.json");
  // Speed on a shared machine varies far beyond its spread within one run; quality is the point here.
  auto r = test::run_cli("compare " + baseline + " " + f.dir + "/same.json --max-slowdown 0.9", f.dir);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("result: no regression"), std::string::npos) << r.out;
  c.schemes = {"rtn:int2,group=64"};
  run_quiet(c, f.dir + "/int2.json");
  r = test::run_cli("compare " + baseline + " " + f.dir + "/int2.json --max-slowdown 0.9", f.dir);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("REGRESSION rtn:int8,group=channel,sym=true,clip=none -> rtn:int2,group=64"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("perplexity: PPL"), std::string::npos) << r.out;
  // JSON form and bad input.
  r = test::run_cli("compare " + baseline + " " + f.dir + "/int2.json --max-slowdown 0.9 --json", f.dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(json::parse(r.out)["regression"].get<bool>());
  EXPECT_EQ(test::run_cli("compare " + baseline, f.dir).exit_code, 2);
  EXPECT_EQ(test::run_cli("compare " + baseline + " " + f.model, f.dir).exit_code, 2);
  EXPECT_EQ(test::run_cli("compare " + baseline + " " + f.dir + "/int2.json --pair nope=int2", f.dir).exit_code, 2);
}

TEST(Run, CompareFlagsSpeedBeyondTheMeasuredSpread) {
  const auto f = make_fixture("run-speed");
  auto c = test::tiny_config(f.model, {"fp16"});
  run_quiet(c, f.dir + "/a.json");
  json a = test::read_json(f.dir + "/a.json");
  json slow = a;
  auto& dec = slow["runs"][0]["units"]["speed"]["result"]["decode"];
  const double med = dec["tokens_per_second_median"];
  dec["tokens_per_second_median"] = med * 0.5;
  dec["tokens_per_second_min"] = med * 0.49;
  dec["tokens_per_second_max"] = med * 0.51;
  a["runs"][0]["units"]["speed"]["result"]["decode"]["tokens_per_second_min"] = med * 0.99;
  a["runs"][0]["units"]["speed"]["result"]["decode"]["tokens_per_second_max"] = med * 1.01;
  slow["runs"][0]["units"]["speed"]["result"]["prefill"] = a["runs"][0]["units"]["speed"]["result"]["prefill"];
  test::write_json(f.dir + "/a.json", a);
  test::write_json(f.dir + "/slow.json", slow);
  run::CompareOptions opt;
  const auto rep = run::compare_results(a, f.dir + "/a.json", slow, f.dir + "/slow.json", opt);
  EXPECT_TRUE(rep.regression());
  int speed_regressions = 0;
  for (const auto& x : rep.findings) speed_regressions += x.regression && x.what == "speed decode";
  EXPECT_EQ(speed_regressions, 1);
  const auto same = run::compare_results(a, f.dir + "/a.json", a, f.dir + "/a.json", opt);
  EXPECT_FALSE(same.regression());
  // Measured on another CPU: speed is not compared (noted), so no speed regression either way.
  slow["runs"][0]["units"]["speed"]["protocol"]["cpu"] = "another CPU";
  const auto other_cpu = run::compare_results(a, f.dir + "/a.json", slow, f.dir + "/slow.json", opt);
  EXPECT_FALSE(other_cpu.regression());
  bool noted = false;
  for (const auto& n : other_cpu.notes) noted = noted || n.find("another machine") != std::string::npos;
  EXPECT_TRUE(noted);
  // Another number of decode tokens is another protocol: refused.
  slow["runs"][0]["units"]["speed"]["protocol"]["decode"] = 999;
  EXPECT_THROW(run::compare_results(a, f.dir + "/a.json", slow, f.dir + "/slow.json", opt), Error);
}

// A qat:... scheme in qbench run trains on qat_text: the run records the text's hash and its
// cost, the unit keys carry the hash, and other text means other units (measured again).
TEST(Run, QatSchemesTrainOnQatTextAndKeyIt) {
  const auto f = make_fixture("run-qat-text");
  {
    std::ofstream text(f.dir + "/a.txt");
    for (int i = 0; i < 60; ++i) text << "the cat sat on the mat " << i << " and the dog ran. ";
  }
  auto c = test::tiny_config(f.model, {"fp16", "qat:int4,group=32,steps=2,batch=2,seq=16"});
  c.speed = false;
  c.qat_text = f.dir + "/a.txt";
  const std::string out = f.dir + "/res.json";
  run_quiet(c, out);
  const json doc = test::read_json(out);
  ASSERT_EQ(doc["status"], "complete") << doc.dump(1);
  const json& q = doc["runs"][1]["quantization"]["qat"];
  EXPECT_EQ(q["data_sha256"], sha256_hex(test::read_file(f.dir + "/a.txt")));
  EXPECT_EQ(q["data"], c.qat_text);
  EXPECT_EQ(q["steps"], 2);
  EXPECT_EQ(q["train_tokens"], 2 * 2 * 16);
  EXPECT_EQ(doc["runs"][1]["units"]["kl"]["status"], "ok");
  // Generated text instead: the qat run's units are new (replacing them needs --force), fp16's
  // are reused.
  c.qat_text = "generated:story";
  c.qat_items = 20;
  EXPECT_THROW(run_quiet(c, out), Error);
  run_quiet(c, out, /*force=*/true);
  const json doc2 = test::read_json(out);
  EXPECT_NE(doc2["runs"][1]["quantization"]["qat"]["data_sha256"], q["data_sha256"]);
  EXPECT_NE(doc2["runs"][1]["units"]["kl"]["key"], doc["runs"][1]["units"]["kl"]["key"]);
  EXPECT_EQ(doc2["runs"][0]["units"]["kl"]["key"], doc["runs"][0]["units"]["kl"]["key"]);
  c.qat_items = 0;
  EXPECT_THROW(run_quiet(c, f.dir + "/bad.json"), Error);
}

// Relative quality carries the error of the paired difference: zero for a run against itself,
// and the ratio estimator's error (computed here by hand) for a real change.
TEST(Run, RelativeQualityErrorsArePaired) {
  auto run = [](const std::string& name, double ppl, double acc) {
    return json{{"scheme", name}, {"scheme_canonical", name}, {"status", "ok"}, {"memory", nullptr},
                {"units",
                 {{"perplexity", {{"status", "ok"}, {"items_file", name + ".ppl"},
                                  {"result", {{"ppl", ppl}, {"ppl_stderr", 0.5}}}}},
                  {"suite:s", {{"status", "ok"}, {"items_file", name + ".s"},
                               {"result", {{"tasks", json::array({{{"task", "t"}, {"kind", "exact_match"},
                                 {"metrics", {{"exact_match", {{"value", acc}, {"stderr", 0.25}, {"higher_is_better", true}}}}}}})}}}}}}}};
  };
  json doc = {{"meta", {{"experiment", {{"baseline", "a"}}}}},
              {"runs", json::array({run("a", std::exp(2.2), 0.75), run("b", std::exp(2.35), 0.5)})}};
  std::map<std::string, std::vector<json>> files;
  files["a.ppl"] = {{{"chunk", 0}, {"nll_sum", 10.0}, {"count", 5}}, {{"chunk", 1}, {"nll_sum", 12.0}, {"count", 5}}};
  files["b.ppl"] = {{{"chunk", 0}, {"nll_sum", 11.0}, {"count", 5}}, {{"chunk", 1}, {"nll_sum", 12.5}, {"count", 5}}};
  const bool a_right[] = {true, true, false, true}, b_right[] = {true, false, false, true};
  for (int i = 0; i < 4; ++i) {
    files["a.s"].push_back({{"task", "t"}, {"id", std::to_string(i)}, {"correct", a_right[i]}});
    files["b.s"].push_back({{"task", "t"}, {"id", std::to_string(3 - i)}, {"correct", b_right[3 - i]}});  // other order
  }
  const run::ItemsReader reader = [&](const json& unit) -> const std::vector<json>* {
    return &files.at(unit["items_file"].get<std::string>());
  };
  const json rel = run::relative_table(doc, reader);
  const json& base = rel["rows"][0]["quality"];
  EXPECT_DOUBLE_EQ(base["perplexity"]["pct_stderr"].get<double>(), 0.0);
  EXPECT_EQ(base["perplexity"]["pct_stderr_method"], "paired");
  EXPECT_DOUBLE_EQ(base["suites"]["s"]["tasks"]["t"]["metrics"]["exact_match"]["pct_stderr"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(base["suites"]["s"]["pct_stderr"].get<double>(), 0.0);
  const json& b = rel["rows"][1]["quality"];
  // Perplexity: per-chunk NLL differences 1 and 0.5 over 10 scored tokens: sd 0.35355, the sum's
  // error sqrt(2) * 0.35355 = 0.5, the mean's 0.05; pct = 100 exp(-0.15) = 86.07, error pct * 0.05.
  EXPECT_NEAR(b["perplexity"]["pct"].get<double>(), 100.0 * std::exp(-0.15), 1e-9);
  EXPECT_NEAR(b["perplexity"]["pct_stderr"].get<double>(), 100.0 * std::exp(-0.15) * 0.05, 1e-9);
  // Exact match 0.75 -> 0.5 on the same items: R = 2/3, residuals y - R x = 1/3, -2/3, 0, 1/3.
  const json& em = b["suites"]["s"]["tasks"]["t"]["metrics"]["exact_match"];
  EXPECT_NEAR(em["pct"].get<double>(), 200.0 / 3.0, 1e-9);
  EXPECT_NEAR(em["pct_stderr"].get<double>(), 100.0 * std::sqrt((6.0 / 9.0) / 12.0) / 0.75, 1e-9);
  EXPECT_EQ(em["pct_stderr_method"], "paired");
  // Without per-item records: the scheme's own error, baseline held fixed, and labelled so.
  const json unpaired = run::relative_table(doc);
  EXPECT_NEAR(unpaired["rows"][1]["quality"]["suites"]["s"]["tasks"]["t"]["metrics"]["exact_match"]["pct_stderr"].get<double>(),
              100.0 * 0.25 / 0.75, 1e-9);
  EXPECT_EQ(unpaired["rows"][1]["quality"]["perplexity"]["pct_stderr_method"], "unpaired (baseline held fixed)");

  // Relative to b instead: b is 100 +/- 0, a's accuracy 150% with the ratio estimator's error the
  // other way round (R = 3/2, residuals y - R x = -1/2, 1, 0, -1/2), and KLD's paired difference.
  auto with_kl = [&](json r, double mean) {
    const std::string name = r["scheme"];
    r["units"]["kl"] = {{"status", "ok"}, {"items_file", name + ".kl"},
                        {"result", {{"kld_mean", mean}, {"kld_stderr", 0.01}, {"same_top", 0.9}, {"same_top_stderr", 0.01}}}};
    return r;
  };
  doc["runs"][0] = with_kl(doc["runs"][0], 0.3);
  doc["runs"][1] = with_kl(doc["runs"][1], 0.2);
  files["a.kl"] = {{{"chunk", 0}, {"kld_sum", 2.0}, {"count", 5}}, {{"chunk", 1}, {"kld_sum", 1.0}, {"count", 5}}};
  files["b.kl"] = {{{"chunk", 0}, {"kld_sum", 1.5}, {"count", 5}}, {{"chunk", 1}, {"kld_sum", 0.5}, {"count", 5}}};
  const json by_b = run::relative_table(doc, reader, "b");
  EXPECT_EQ(by_b["baseline"], "b");
  EXPECT_DOUBLE_EQ(by_b["rows"][1]["quality"]["suites"]["s"]["pct_stderr"].get<double>(), 0.0);
  const json& em_a = by_b["rows"][0]["quality"]["suites"]["s"]["tasks"]["t"]["metrics"]["exact_match"];
  EXPECT_NEAR(em_a["pct"].get<double>(), 150.0, 1e-9);
  EXPECT_NEAR(em_a["pct_stderr"].get<double>(), 100.0 * std::sqrt(1.5 / 12.0) / 0.5, 1e-9);
  // KLD a - b: per-chunk differences 0.5 and 0.5 over 10 positions: 0.1, no spread, error 0.
  EXPECT_NEAR(by_b["rows"][0]["quality"]["kld"]["diff"].get<double>(), 0.1, 1e-12);
  EXPECT_NEAR(by_b["rows"][0]["quality"]["kld"]["diff_stderr"].get<double>(), 0.0, 1e-12);
  files["a.kl"][1]["kld_sum"] = 1.5;  // differences 0.5 and 1: sd 0.35355, the sum's error 0.5
  const json by_b2 = run::relative_table(doc, reader, "b");
  EXPECT_NEAR(by_b2["rows"][0]["quality"]["kld"]["diff"].get<double>(), 0.15, 1e-12);
  EXPECT_NEAR(by_b2["rows"][0]["quality"]["kld"]["diff_stderr"].get<double>(), 0.05, 1e-12);
  EXPECT_THROW(run::relative_table(doc, reader, "c"), Error);
}

// Runs measured under other protocols are refused (exit 2, naming the setting); runs whose chunks
// or items do not pair are tested unpaired, and a regression still fails.
TEST(Run, CompareRefusesOtherProtocolsAndNeverPassesUntested) {
  const auto f = make_fixture("run-protocol");
  auto c = test::tiny_config(f.model, {"int8"});
  c.speed = false;
  run_quiet(c, f.dir + "/base.json");
  c.schemes = {"rtn:int2,group=64"};
  run_quiet(c, f.dir + "/int2.json");
  auto c2 = c;
  c2.ppl_ctx = c.ppl_ctx / 2;
  run_quiet(c2, f.dir + "/ctx.json");
  auto r = test::run_cli("compare " + f.dir + "/base.json " + f.dir + "/ctx.json", f.dir);
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("another protocol"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("'ctx': " + std::to_string(c.ppl_ctx) + " in the baseline"), std::string::npos) << r.err;
  auto c3 = c;
  c3.activations = "float";
  run_quiet(c3, f.dir + "/float.json");
  r = test::run_cli("compare " + f.dir + "/base.json " + f.dir + "/float.json", f.dir);
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("'activations'"), std::string::npos) << r.err;
  // Chunks that do not pair (one dropped from the new file's records): unpaired, still a regression.
  json doc = test::read_json(f.dir + "/int2.json");
  for (const char* unit : {"perplexity", "kl"}) {
    const fs::path items = fs::path(f.dir) / doc["runs"][0]["units"][unit]["items_file"].get<std::string>();
    auto recs = run::read_items_file(items.string());
    recs.pop_back();
    std::string text;
    for (const auto& x : recs) text += x.dump() + "\n";
    std::ofstream(items) << text;
  }
  r = test::run_cli("compare " + f.dir + "/base.json " + f.dir + "/int2.json --max-slowdown 0.9", f.dir);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("unpaired Welch test"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("REGRESSION"), std::string::npos) << r.out;
  // No per-chunk records at all: the tolerance alone decides, so the drop still fails.
  for (const char* unit : {"perplexity", "kl"}) {
    std::ofstream(fs::path(f.dir) / doc["runs"][0]["units"][unit]["items_file"].get<std::string>());  // emptied
  }
  r = test::run_cli("compare " + f.dir + "/base.json " + f.dir + "/int2.json --max-slowdown 0.9", f.dir);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("decided on the tolerance alone"), std::string::npos) << r.out;
}

// What produced each number is in the run: the activation precision and path of every weight
// format's products (kernel: int8 activations per block for integer formats; float: the
// dequantize path, exact float products), and every fallback the quantizer took, which the
// report flags.
TEST(Run, RunsRecordActivationPrecisionAndFallbacks) {
  const auto f = make_fixture("run-paths");
  auto c = test::tiny_config(f.model, {"fp16", "rtn:int4,group=32", "q6_K"});
  c.speed = false;
  c.suites = {};
  run_quiet(c, f.dir + "/kernel.json");
  const json k = test::read_json(f.dir + "/kernel.json");
  EXPECT_EQ(k["runs"][1]["matmul"]["activations"], "kernel");
  bool q4_int8 = false;
  for (const auto& p : k["runs"][1]["matmul"]["paths"]) {
    if (p["weight_format"] == "int4_sym_g32") {
      q4_int8 = p["decode"]["activations"] == "q8_0 (int8 per 32 values)" && p["decode"]["path"] != "dequant";
    }
  }
  EXPECT_TRUE(q4_int8) << k["runs"][1]["matmul"].dump();
  // Rows of 128 and 192 are no multiple of q6_K's 256: llama-quantize's fallback, recorded and flagged.
  EXPECT_TRUE(k["runs"][1]["notes"].empty()) << k["runs"][1]["notes"].dump();
  ASSERT_FALSE(k["runs"][2]["notes"].empty());
  EXPECT_NE(k["runs"][2]["notes"][0]["note"].get<std::string>().find("q6_K -> q8_0"), std::string::npos);
  EXPECT_EQ(k["relative"]["rows"][2]["notes"].get<int64_t>(), int64_t(k["runs"][2]["notes"].size()));
  const std::string table = run::render_tables(run::report_tables(k), run::ReportFormat::Markdown);
  EXPECT_NE(table.find("| q6_K * |"), std::string::npos) << table;
  EXPECT_NE(table.find("| rtn:int4,group=32 |"), std::string::npos) << table;
  EXPECT_NE(table.find("int8/32"), std::string::npos) << table;
  // Float activations: the dequantize path everywhere; a different number for int4.
  c.activations = "float";
  run_quiet(c, f.dir + "/float.json");
  const json fl = test::read_json(f.dir + "/float.json");
  for (const auto& p : fl["runs"][1]["matmul"]["paths"]) {
    EXPECT_EQ(p["decode"]["path"], "dequant");
    EXPECT_EQ(p["decode"]["activations"], "f32");
  }
  EXPECT_NE(fl["runs"][1]["units"]["perplexity"]["result"]["ppl"], k["runs"][1]["units"]["perplexity"]["result"]["ppl"]);
  EXPECT_NE(fl["runs"][1]["units"]["perplexity"]["key"], k["runs"][1]["units"]["perplexity"]["key"]);
  c.activations = "half";
  EXPECT_THROW(run_quiet(c, f.dir + "/bad.json"), Error);
}

// Two runs on one results file: the second stops at once, naming the holder of the lock.
TEST(Run, ConcurrentRunsOnOneFileAreRefused) {
  const auto f = make_fixture("run-lock");
  auto c = test::tiny_config(f.model, {"fp16"});
  c.speed = false;
  const std::string out = f.dir + "/res.json";
  const int fd = ::open((out + ".lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  const std::string holder = "pid 4242, started 2026-01-01T00:00:00Z: qbench run --config x.json\n";
  ASSERT_EQ(::write(fd, holder.data(), holder.size()), ssize_t(holder.size()));
  try {
    run_quiet(c, out);
    ADD_FAILURE() << "a second writer was let in";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("another qbench run is writing this file (pid 4242"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(out));
  ::close(fd);  // released: the run goes ahead
  EXPECT_EQ(run_quiet(c, out).measured_units, 3);
  // A results file is a regular file (its per-item records go beside it).
  EXPECT_THROW(run_quiet(c, "/dev/null"), Error);
  EXPECT_TRUE(fs::is_character_file("/dev/null"));
}

}  // namespace
}  // namespace qbench
