// RunRecorder writes one step to all three sinks; `pricer runs` lists and shows what it wrote.
// The CLI is exercised end to end through the built binary on a database filled via the API.
#include <gtest/gtest.h>
#include <omp.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "cli_test_util.h"
#include "core/error.h"
#include "monitor/interrupt.h"
#include "monitor/recorder.h"
#include "monitor/run_report.h"
#include "monitor/tfevents.h"

namespace fs = std::filesystem;
using namespace pricer::monitor;

namespace {

class MonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pricer_monitor_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    db_ = dir_ / "runs" / "pricer.db";
  }
  void TearDown() override { fs::remove_all(dir_); }

  RecorderOptions options() const {
    RecorderOptions o;
    o.db_path = db_;
    return o;
  }

  // Runs the pricer binary with `args` (already shell-quoted where needed).
  static ::pricer::cli_test::CliRun pricer(const std::string& args, const std::string& env = "") {
    return ::pricer::cli_test::run_cli_split(args, "", env);
  }

  fs::path dir_;
  fs::path db_;
};

NewRun train_run(const std::string& name) {
  NewRun r;
  r.name = name;
  r.kind = RunKind::train;
  r.command_line = "pricer train --lr 2e-4";
  r.base_model = "tiny-llama";
  r.dataset = "products";
  return r;
}

using pricer::cli_test::slurp;

std::size_t count(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (auto pos = s.find(what); pos != std::string::npos; pos = s.find(what, pos + 1)) ++n;
  return n;
}

fs::path only_event_file(const fs::path& dir) {
  fs::path found;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) {
      EXPECT_TRUE(found.empty()) << "more than one event file";
      found = e.path();
    }
  return found;
}

}  // namespace

TEST_F(MonitorTest, RecorderWritesEveryStepToAllSinks) {
  std::int64_t id;
  fs::path log_dir;
  std::vector<std::map<std::string, double>> steps;
  for (int s = 0; s < 20; ++s)
    steps.push_back({{"train/loss", 3.0 * std::exp(-0.1 * s) + 0.01 * s}, {"train/lr", 1e-4 * s}});
  {
    RunRecorder rec(train_run("sinks"), options());
    id = rec.id();
    log_dir = rec.log_dir();
    rec.log_params({{"lr", 2e-4}, {"rank", 8}});
    for (int s = 0; s < 20; ++s) rec.log_metrics(s, steps[s]);
    rec.add_artifact("adapter", log_dir / "adapter.bin", 19);
    rec.finish();
    EXPECT_EQ(rec.status(), RunStatus::finished);
  }
  EXPECT_EQ(log_dir, fs::absolute(db_.parent_path() / (std::to_string(id) + "-sinks")));

  RunDb db(db_);
  auto run = db.get_run(id);
  EXPECT_EQ(run.status, RunStatus::finished);
  EXPECT_TRUE(run.ended);
  EXPECT_EQ(run.log_dir, log_dir.string());
  EXPECT_EQ(db.params(id), nlohmann::json({{"lr", 2e-4}, {"rank", 8}}));
  ASSERT_EQ(db.artifacts(id).size(), 1u);
  auto loss = db.metric_series(id, "train/loss");
  ASSERT_EQ(loss.size(), 20u);

  std::ifstream jsonl(log_dir / "metrics.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(jsonl, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 20u);

  auto events = read_events(only_event_file(log_dir));
  ASSERT_EQ(events.size(), 21u);
  EXPECT_EQ(events[0].file_version, "brain.Event:2");
  for (int s = 0; s < 20; ++s) {
    EXPECT_DOUBLE_EQ(loss[s].value, steps[s]["train/loss"]);
    EXPECT_EQ(lines[s]["step"], s);
    EXPECT_DOUBLE_EQ(lines[s]["metrics"]["train/loss"].get<double>(), steps[s]["train/loss"]);
    // One wall time per step, shared by all sinks.
    EXPECT_DOUBLE_EQ(lines[s]["time"].get<double>(), loss[s].wall_time);
    const auto& e = events[s + 1];
    EXPECT_EQ(e.step, s);
    EXPECT_DOUBLE_EQ(e.wall_time, loss[s].wall_time);
    ASSERT_EQ(e.scalars.size(), 2u);
    for (const auto& v : e.scalars) EXPECT_EQ(v.value, static_cast<float>(steps[s][v.tag]));
  }
}

TEST_F(MonitorTest, RecorderRecordsHowTheRunEnded) {
  std::int64_t by_exception = 0, forgotten = 0, interrupted = 0, failed = 0;
  try {
    RunRecorder rec(train_run("throws"), options());
    by_exception = rec.id();
    rec.log_metrics(1, {{"train/loss", 1.0}});
    throw std::runtime_error("out of memory");
  } catch (const std::runtime_error&) {
  }
  { forgotten = RunRecorder(train_run("forgot"), options()).id(); }
  {
    RunRecorder rec(train_run("ctrl-c"), options());
    interrupted = rec.id();
    rec.interrupt();
  }
  {
    RunRecorder rec(train_run("diverged"), options());
    failed = rec.id();
    rec.fail("loss is NaN at step 12");
  }
  RunDb db(db_);
  EXPECT_EQ(db.get_run(by_exception).status, RunStatus::failed);
  EXPECT_NE(db.get_run(by_exception).message.find("exception"), std::string::npos);
  EXPECT_EQ(db.get_run(forgotten).status, RunStatus::failed);
  EXPECT_NE(db.get_run(forgotten).message.find("without finish"), std::string::npos);
  EXPECT_EQ(db.get_run(interrupted).status, RunStatus::interrupted);
  EXPECT_EQ(db.get_run(failed).status, RunStatus::failed);
  EXPECT_EQ(db.get_run(failed).message, "loss is NaN at step 12");
}

TEST_F(MonitorTest, RecorderKeepsHostileNamesInsideTheRunsDirectory) {
  RunRecorder rec(train_run("../../etc/evil name"), options());
  EXPECT_EQ(rec.log_dir().parent_path(), fs::absolute(db_.parent_path()));
  EXPECT_EQ(rec.log_dir().filename(), std::to_string(rec.id()) + "-.._.._etc_evil_name");
  rec.finish();
}

TEST_F(MonitorTest, DefaultDatabaseComesFromTheEnvironment) {
  ::setenv("PRICER_RUNS_DB", (dir_ / "env.db").c_str(), 1);
  EXPECT_EQ(default_runs_db(), dir_ / "env.db");
  ::unsetenv("PRICER_RUNS_DB");
  EXPECT_EQ(default_runs_db(), fs::path("runs/pricer.db"));
}

TEST(Interrupt, FirstSignalSetsTheFlagAndHandlersAreRestored) {
  static int previous_calls = 0;
  auto previous = +[](int) { ++previous_calls; };
  ::signal(SIGINT, previous);
  {
    InterruptGuard guard;
    EXPECT_FALSE(interrupt_requested());
    ::raise(SIGINT);
    EXPECT_TRUE(interrupt_requested());
    EXPECT_EQ(interrupt_signal(), SIGINT);
    EXPECT_EQ(previous_calls, 0);
  }
  ::raise(SIGINT);
  EXPECT_EQ(previous_calls, 1);
  {
    InterruptGuard guard;  // a new guard starts with a clear flag
    EXPECT_FALSE(interrupt_requested());
    ::raise(SIGTERM);
    EXPECT_EQ(interrupt_signal(), SIGTERM);
  }
  ::signal(SIGINT, SIG_DFL);
}

// Interrupts go to the main thread, on its own stack: the compute threads have SIGINT and SIGTERM
// blocked, and the handler still sets the flag.
TEST(Interrupt, SignalsReachOnlyTheMainThreadOnItsOwnStack) {
  route_signals_to_this_thread([] {
    static std::atomic<int> started{0};
#pragma omp parallel num_threads(3)
    started.fetch_add(1);
  });
  std::vector<int> blocked(3, -1);
#pragma omp parallel num_threads(3)
  {
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, nullptr, &mask);
    blocked[omp_get_thread_num()] = sigismember(&mask, SIGTERM) + sigismember(&mask, SIGINT);
  }
  EXPECT_EQ(blocked, (std::vector<int>{0, 2, 2}));
  stack_t ss{};
  sigaltstack(nullptr, &ss);
  EXPECT_EQ(ss.ss_flags & SS_DISABLE, 0) << "the main thread has no signal stack";
  EXPECT_GE(ss.ss_size, static_cast<size_t>(SIGSTKSZ));
  InterruptGuard guard;
  ::kill(::getpid(), SIGTERM);  // the process, as `kill` sends it: only the main thread can take it
  EXPECT_TRUE(interrupt_requested());
}

TEST(RunReport, DurationsAndDownsampling) {
  EXPECT_EQ(format_duration(42.4), "42s");
  EXPECT_EQ(format_duration(185), "3m05s");
  EXPECT_EQ(format_duration(3720), "1h02m");
  EXPECT_EQ(format_duration(2 * 86400 + 3 * 3600 + 5), "2d03h");
  EXPECT_EQ(format_duration(-1), "-");
  EXPECT_EQ(format_duration(NAN), "-");

  std::vector<double> v(100);
  for (int i = 0; i < 100; ++i) v[i] = i;
  auto d = downsample(v, 10);
  ASSERT_EQ(d.size(), 10u);
  for (int b = 0; b < 10; ++b) EXPECT_DOUBLE_EQ(d[b], b * 10 + 4.5);
  v[3] = NAN;  // ignored within its bucket
  EXPECT_DOUBLE_EQ(downsample(v, 10)[0], (0 + 1 + 2 + 4 + 5 + 6 + 7 + 8 + 9) / 9.0);
  EXPECT_EQ(downsample(v, 200).size(), 100u);
}

TEST(RunReport, SparklineFollowsTheLoss) {
  const std::vector<std::string> blocks = {"\u2581", "\u2582", "\u2583", "\u2584",
                                           "\u2585", "\u2586", "\u2587", "\u2588"};
  std::vector<MetricPoint> falling;
  for (int i = 0; i < 500; ++i) falling.push_back({i, 5.0 - i * 0.01, 0});
  falling[250].value = NAN;  // one bad step must not blank its whole column
  auto s = metric_sparkline(falling, 40);
  // Decode the characters back into levels: 40 columns, falling from the top to the bottom.
  std::vector<int> levels;
  for (std::size_t pos = 0; pos < s.size(); pos += 3) {
    auto it = std::find(blocks.begin(), blocks.end(), s.substr(pos, 3));
    ASSERT_NE(it, blocks.end()) << "unexpected character at byte " << pos << " of " << s;
    levels.push_back(static_cast<int>(it - blocks.begin()));
  }
  ASSERT_EQ(levels.size(), 40u);
  EXPECT_EQ(levels.front(), 7);
  EXPECT_EQ(levels.back(), 0);
  for (std::size_t i = 1; i < levels.size(); ++i) EXPECT_LE(levels[i], levels[i - 1]) << s;
  EXPECT_EQ(std::set<int>(levels.begin(), levels.end()).size(), 8u) << s;
}

TEST_F(MonitorTest, CliListsAndShowsRuns) {
  std::int64_t good, bad;
  fs::path log_dir;
  {
    RunRecorder rec(train_run("baseline-lora"), options());
    good = rec.id();
    log_dir = rec.log_dir();
    rec.log_params({{"lr", 0.0002}, {"lora_rank", 16}});
    for (int s = 1; s <= 100; ++s) {
      std::map<std::string, double> m = {{"train/loss", 4.0 - 0.025 * s}};
      if (s % 25 == 0) m["eval/loss"] = 4.5 - 0.02 * s;
      rec.log_metrics(s, m);
    }
    rec.add_artifact("adapter", "out/adapter.safetensors", 100);
    rec.finish();
  }
  {
    NewRun trial = train_run("trial-7");
    trial.kind = RunKind::sweep_trial;
    trial.sweep_id = "lr-sweep";
    RunRecorder rec(trial, options());
    bad = rec.id();
    rec.log_metrics(1, {{"train/loss", 9.5}});
    rec.fail("diverged");
  }

  auto list = pricer("runs --db '" + db_.string() + "'");
  ASSERT_EQ(list.rc, 0) << list.err;
  EXPECT_NE(list.out.find("baseline-lora"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("trial-7"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("sweep-trial"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("failed"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("finished"), std::string::npos) << list.out;
  // Row of the good run: 100 steps, last train loss 1.5, best eval loss 4.5 - 2 = 2.5.
  auto row = list.out.substr(list.out.find("baseline-lora"));
  row = row.substr(0, row.find('\n'));
  EXPECT_NE(row.find(" 100 "), std::string::npos) << row;
  EXPECT_NE(row.find(" 1.5 "), std::string::npos) << row;
  EXPECT_NE(row.find(" 2.5 "), std::string::npos) << row;

  auto sweep = pricer("runs --sweep lr-sweep --db '" + db_.string() + "'");
  ASSERT_EQ(sweep.rc, 0) << sweep.err;
  EXPECT_NE(sweep.out.find("trial-7"), std::string::npos) << sweep.out;
  EXPECT_EQ(sweep.out.find("baseline-lora"), std::string::npos) << sweep.out;

  // The environment variable stands in for --db.
  auto via_env = pricer("runs", "PRICER_RUNS_DB='" + db_.string() + "'");
  ASSERT_EQ(via_env.rc, 0) << via_env.err;
  EXPECT_EQ(via_env.out, list.out);

  auto show = pricer("runs show " + std::to_string(good) + " --db '" + db_.string() + "'");
  ASSERT_EQ(show.rc, 0) << show.err;
  EXPECT_NE(show.out.find("baseline-lora"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("lora_rank = 16"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("lr = 0.0002"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("adapter"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("\u2588"), std::string::npos) << show.out;  // sparkline
  EXPECT_NE(show.out.find("\u2581"), std::string::npos) << show.out;
  auto chart = log_dir / "loss.svg";
  EXPECT_NE(show.out.find("loss chart: " + chart.string()), std::string::npos) << show.out;
  auto svg = slurp(chart);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u) << svg.substr(0, 200);
  EXPECT_EQ(count(svg, "<polyline"), 2u);  // train and eval loss
  EXPECT_NE(svg.find("train/loss"), std::string::npos);
  EXPECT_NE(svg.find("eval/loss"), std::string::npos);
  // Each polyline carries one point per logged step: 100 train, 4 eval.
  auto first = svg.find("<polyline points=\"");
  auto pts = svg.substr(first, svg.find('"', first + 18) - first);
  EXPECT_EQ(count(pts, ","), 100u);

  auto custom = dir_ / "chart.svg";
  auto show_bad =
      pricer("runs --db '" + db_.string() + "' show " + std::to_string(bad) + " --svg '" + custom.string() + "'");
  ASSERT_EQ(show_bad.rc, 0) << show_bad.err;
  EXPECT_NE(show_bad.out.find("diverged"), std::string::npos) << show_bad.out;
  EXPECT_NE(show_bad.out.find("lr-sweep"), std::string::npos) << show_bad.out;
  EXPECT_EQ(count(slurp(custom), "<polyline"), 1u);

  auto missing = pricer("runs show 999 --db '" + db_.string() + "'");
  EXPECT_EQ(missing.rc, 1);
  EXPECT_NE(missing.err.find("no run with id 999"), std::string::npos) << missing.err;
}

TEST_F(MonitorTest, CliReportsBadDatabases) {
  auto absent = dir_ / "absent.db";
  auto r = pricer("runs --db '" + absent.string() + "'");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("no run database at " + absent.string()), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(absent));

  auto junk = dir_ / "junk.db";
  std::ofstream(junk) << std::string(4096, 'j');
  r = pricer("runs --db '" + junk.string() + "'");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find(junk.string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not a database"), std::string::npos) << r.err;
}

TEST_F(MonitorTest, CliVerifiesEventFiles) {
  fs::path file;
  {
    RunRecorder rec(train_run("events"), options());
    for (int s = 0; s < 3; ++s) rec.log_metrics(s, {{"train/loss", 2.0 - s * 0.5}});
    rec.finish();
    file = only_event_file(rec.log_dir());
  }
  auto ok = pricer("runs events '" + file.string() + "'");
  ASSERT_EQ(ok.rc, 0) << ok.err;
  EXPECT_NE(ok.out.find("brain.Event:2"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("step 2  train/loss = 1"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("4 records, 3 scalar values"), std::string::npos) << ok.out;

  auto bytes = slurp(file);
  std::size_t offset = 0;
  for (int rec = 0; rec < 2; ++rec) {  // skip two records to land in the third one's data
    std::uint64_t len;
    std::memcpy(&len, bytes.data() + offset, 8);
    offset += 12 + len + 4;
  }
  ASSERT_LT(offset + 14, bytes.size());
  bytes[offset + 14] ^= 0x01;
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  auto bad = pricer("runs events '" + file.string() + "'");
  EXPECT_EQ(bad.rc, 1);
  EXPECT_NE(bad.err.find(file.string()), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("byte offset " + std::to_string(offset + 12)), std::string::npos) << bad.err;
}
