// The run database: every API call round-trips, migration from schema version 1 keeps the data,
// parallel writers all land, and bad files are refused with their path in the message.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include "core/error.h"
#include "monitor/recorder.h"
#include "monitor/run_db.h"

namespace fs = std::filesystem;
using namespace pricer::monitor;

namespace {

class RunDbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pricer_rundb_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    db_path_ = dir_ / "runs" / "pricer.db";
  }
  void TearDown() override { fs::remove_all(dir_); }

  template <class F>
  static std::string error_of(F&& f) {
    try {
      f();
    } catch (const pricer::Error& e) {
      return e.what();
    }
    return "";
  }

  // Runs raw SQL through the C API, independent of RunDb.
  static void raw_sql(const fs::path& path, const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    std::string msg = err ? err : "";
    sqlite3_free(err);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK) << msg;
  }

  fs::path dir_;
  fs::path db_path_;
};

NewRun sample_run(const std::string& name, RunKind kind = RunKind::train) {
  NewRun r;
  r.name = name;
  r.kind = kind;
  r.command_line = "pricer train --config c.yaml";
  r.base_model = "llama-tiny";
  r.dataset = "products-v1";
  r.output_dir = "out/" + name;
  r.log_dir = "runs/" + name;
  return r;
}

}  // namespace

TEST(RunEnums, NamesRoundTrip) {
  for (auto k : {RunKind::train, RunKind::pretrain, RunKind::eval, RunKind::sweep_trial})
    EXPECT_EQ(parse_run_kind(to_string(k)), k);
  for (auto s : {RunStatus::running, RunStatus::finished, RunStatus::failed, RunStatus::interrupted})
    EXPECT_EQ(parse_run_status(to_string(s)), s);
  EXPECT_EQ(to_string(RunKind::sweep_trial), "sweep-trial");
  EXPECT_THROW(parse_run_kind("training"), pricer::Error);
  EXPECT_THROW(parse_run_status("done"), pricer::Error);
}

TEST_F(RunDbTest, RunsRoundTrip) {
  RunDb db(db_path_);
  EXPECT_EQ(db.schema_version(), RunDb::kSchemaVersion);
  auto a = db.create_run(sample_run("alpha"), 1000.0);
  auto trial = sample_run("trial-3", RunKind::sweep_trial);
  trial.sweep_id = "sweep-lr";
  auto b = db.create_run(trial, 2000.5);
  EXPECT_NE(a, b);

  auto ra = db.get_run(a);
  EXPECT_EQ(ra.name, "alpha");
  EXPECT_EQ(ra.kind, RunKind::train);
  EXPECT_EQ(ra.status, RunStatus::running);
  EXPECT_FALSE(ra.sweep_id);
  EXPECT_DOUBLE_EQ(ra.started, 1000.0);
  EXPECT_FALSE(ra.ended);
  EXPECT_EQ(ra.command_line, "pricer train --config c.yaml");
  EXPECT_EQ(ra.base_model, "llama-tiny");
  EXPECT_EQ(ra.dataset, "products-v1");
  EXPECT_EQ(ra.output_dir, "out/alpha");
  EXPECT_EQ(ra.log_dir, "runs/alpha");

  db.set_status(b, RunStatus::failed, "loss became NaN at step 40", 2100.0);
  auto rb = db.get_run(b);
  EXPECT_EQ(rb.kind, RunKind::sweep_trial);
  EXPECT_EQ(rb.sweep_id, "sweep-lr");
  EXPECT_EQ(rb.status, RunStatus::failed);
  EXPECT_EQ(rb.message, "loss became NaN at step 40");
  ASSERT_TRUE(rb.ended);
  EXPECT_DOUBLE_EQ(*rb.ended, 2100.0);

  auto runs = db.list_runs();
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].id, a);
  EXPECT_EQ(runs[1].id, b);

  auto msg = error_of([&] { db.get_run(b + 100); });
  EXPECT_NE(msg.find("no run with id " + std::to_string(b + 100)), std::string::npos) << msg;
  EXPECT_NE(msg.find(db_path_.string()), std::string::npos) << msg;
  EXPECT_THROW(db.set_status(b + 100, RunStatus::finished, "", 1.0), pricer::Error);
}

TEST_F(RunDbTest, ParamsKeepTheirJsonTypes) {
  RunDb db(db_path_);
  auto id = db.create_run(sample_run("p"), 1.0);
  nlohmann::json params = {
      {"lr", 2e-4},     {"rank", 16}, {"use_dora", false}, {"targets", {"q", "v"}}, {"schedule", {{"warmup", 10}}},
      {"note", nullptr}};
  db.log_params(id, params);
  db.log_params(id, {{"rank", 32}});  // a later value replaces the earlier one
  params["rank"] = 32;
  EXPECT_EQ(db.params(id), params);
  EXPECT_EQ(db.params(id + 1), nlohmann::json::object());
  auto msg = error_of([&] { db.log_params(id, nlohmann::json::array({1, 2})); });
  EXPECT_NE(msg.find("JSON object"), std::string::npos) << msg;
}

TEST_F(RunDbTest, MetricSeriesAreOrderedAndReplacedOnRelog) {
  RunDb db(db_path_);
  auto id = db.create_run(sample_run("m"), 1.0);
  auto other = db.create_run(sample_run("other"), 1.0);
  for (int step = 10; step >= 1; --step)  // logged out of order on purpose
    db.log_metrics(id, step, {{"train/loss", 10.0 / step}, {"train/lr", 1e-3}}, 100.0 + step);
  db.log_metrics(other, 1, {{"train/loss", 99.0}}, 5.0);
  db.log_metrics(id, 5, {{"train/loss", 0.123}}, 500.0);  // resumed run re-logs step 5
  db.log_metrics(id, 11,
                 {{"train/loss", std::numeric_limits<double>::quiet_NaN()},
                  {"train/grad_norm", std::numeric_limits<double>::infinity()}},
                 111.0);

  auto loss = db.metric_series(id, "train/loss");
  ASSERT_EQ(loss.size(), 11u);
  for (std::size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(loss[i].step, static_cast<std::int64_t>(i + 1));
    if (i + 1 == 5) {
      EXPECT_DOUBLE_EQ(loss[i].value, 0.123);
      EXPECT_DOUBLE_EQ(loss[i].wall_time, 500.0);
    } else {
      EXPECT_DOUBLE_EQ(loss[i].value, 10.0 / static_cast<double>(i + 1));
      EXPECT_DOUBLE_EQ(loss[i].wall_time, 100.0 + static_cast<double>(i + 1));
    }
  }
  EXPECT_TRUE(std::isnan(loss[10].value));
  auto grad = db.metric_series(id, "train/grad_norm");
  ASSERT_EQ(grad.size(), 1u);
  EXPECT_TRUE(std::isinf(grad[0].value));
  EXPECT_EQ(db.metric_names(id), (std::vector<std::string>{"train/grad_norm", "train/loss", "train/lr"}));
  EXPECT_TRUE(db.metric_series(id, "nope").empty());

  auto msg = error_of([&] { db.log_metrics(other + 50, 1, {{"x", 1.0}}, 1.0); });
  EXPECT_NE(msg.find("FOREIGN KEY"), std::string::npos) << msg;
}

TEST_F(RunDbTest, SummariesPickLastAndBestLoss) {
  RunDb db(db_path_);
  auto with_eval = db.create_run(sample_run("with-eval"), 1.0);
  auto train_only = db.create_run(sample_run("train-only"), 1.0);
  auto empty = db.create_run(sample_run("empty", RunKind::eval), 1.0);
  std::vector<double> train = {3.0, 2.0, 1.5, 1.7};
  for (std::size_t i = 0; i < train.size(); ++i) {
    db.log_metrics(with_eval, static_cast<std::int64_t>(i) * 100, {{"train/loss", train[i]}}, 1.0);
    db.log_metrics(train_only, static_cast<std::int64_t>(i) * 100, {{"train/loss", train[i]}}, 1.0);
  }
  db.log_metrics(with_eval, 150, {{"eval/loss", 2.2}}, 1.0);
  db.log_metrics(with_eval, 250, {{"eval/loss", 1.9}}, 1.0);
  db.log_metrics(with_eval, 350, {{"eval/loss", 2.0}}, 1.0);

  auto s = db.summarize_runs();
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].run.name, "with-eval");
  EXPECT_EQ(s[0].last_step, 350);
  EXPECT_DOUBLE_EQ(*s[0].last_loss, 1.7);
  EXPECT_DOUBLE_EQ(*s[0].best_loss, 1.9);  // best eval loss, not the lower train loss
  EXPECT_EQ(s[1].last_step, 300);
  EXPECT_DOUBLE_EQ(*s[1].last_loss, 1.7);
  EXPECT_DOUBLE_EQ(*s[1].best_loss, 1.5);
  EXPECT_EQ(s[2].run.id, empty);
  EXPECT_EQ(s[2].run.kind, RunKind::eval);
  EXPECT_FALSE(s[2].last_step);
  EXPECT_FALSE(s[2].last_loss);
  EXPECT_FALSE(s[2].best_loss);
}

TEST_F(RunDbTest, Artifacts) {
  RunDb db(db_path_);
  auto id = db.create_run(sample_run("a"), 1.0);
  db.add_artifact(id, {"checkpoint", "out/a/step-100.ckpt", 100});
  db.add_artifact(id, {"adapter", "out/a/adapter.safetensors", std::nullopt});
  auto arts = db.artifacts(id);
  ASSERT_EQ(arts.size(), 2u);
  EXPECT_EQ(arts[0].kind, "checkpoint");
  EXPECT_EQ(arts[0].path, "out/a/step-100.ckpt");
  EXPECT_EQ(arts[0].step, 100);
  EXPECT_EQ(arts[1].kind, "adapter");
  EXPECT_FALSE(arts[1].step);
}

TEST_F(RunDbTest, ReopenSeesEverythingAndUsesWal) {
  std::int64_t id;
  {
    RunDb db(db_path_);
    id = db.create_run(sample_run("persist"), 42.0);
    db.log_metrics(id, 1, {{"train/loss", 1.25}}, 43.0);
  }
  RunDb db(db_path_, RunDb::Mode::existing);
  EXPECT_EQ(db.get_run(id).name, "persist");
  EXPECT_DOUBLE_EQ(db.metric_series(id, "train/loss").at(0).value, 1.25);
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db_path_.c_str(), &raw), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_close(raw);
}

TEST_F(RunDbTest, ParallelWritersAllLand) {
  { RunDb init(db_path_); }
  constexpr int kThreads = 4, kSteps = 40;
  std::vector<std::thread> threads;
  std::vector<std::string> errors(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        RunDb db(db_path_);  // own connection, as a separate trial process would have
        auto id = db.create_run(sample_run("trial-" + std::to_string(t), RunKind::sweep_trial), 1.0);
        db.log_params(id, {{"trial", t}});
        for (int s = 0; s < kSteps; ++s)
          db.log_metrics(id, s, {{"train/loss", t + s * 0.01}, {"train/lr", 1e-4}}, 1.0 + s);
        db.set_status(id, RunStatus::finished, "", 100.0);
      } catch (const std::exception& e) {
        errors[t] = e.what();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (auto& e : errors) EXPECT_EQ(e, "");
  RunDb db(db_path_);
  auto runs = db.summarize_runs();
  ASSERT_EQ(runs.size(), static_cast<std::size_t>(kThreads));
  for (const auto& s : runs) {
    EXPECT_EQ(s.run.status, RunStatus::finished);
    EXPECT_EQ(s.last_step, kSteps - 1);
    int t = db.params(s.run.id).at("trial").get<int>();
    EXPECT_EQ(s.run.name, "trial-" + std::to_string(t));
    EXPECT_EQ(db.metric_series(s.run.id, "train/loss").size(), static_cast<std::size_t>(kSteps));
  }
}

// Sweep trials run as separate processes; each opens the file itself.
TEST_F(RunDbTest, ParallelProcessesAllLand) {
  { RunDb init(db_path_); }
  constexpr int kProcs = 3, kSteps = 30;
  std::vector<pid_t> children;
  for (int p = 0; p < kProcs; ++p) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int code = 0;
      try {
        RunDb db(db_path_);
        auto id = db.create_run(sample_run("proc-" + std::to_string(p)), 1.0);
        for (int s = 0; s < kSteps; ++s) db.log_metrics(id, s, {{"train/loss", 1.0 * s}}, 1.0);
        db.set_status(id, RunStatus::finished, "", 2.0);
      } catch (...) {
        code = 1;
      }
      ::_exit(code);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  RunDb db(db_path_);
  auto runs = db.summarize_runs();
  ASSERT_EQ(runs.size(), static_cast<std::size_t>(kProcs));
  for (const auto& s : runs) {
    EXPECT_EQ(s.run.status, RunStatus::finished);
    EXPECT_EQ(s.last_step, kSteps - 1);
  }
}

// The ranks of one job open a database that does not exist yet at the same moment: each switches
// the new file to WAL, and none is refused "database is locked". Rounds of fresh files, the
// processes released together through a pipe.
TEST_F(RunDbTest, ProcessesCreatingOneNewFileTogetherAllOpenIt) {
  constexpr int kRounds = 20, kProcs = 3;
  for (int round = 0; round < kRounds; ++round) {
    const fs::path path = dir_ / ("new-" + std::to_string(round) + ".db");
    int go[2];
    ASSERT_EQ(::pipe(go), 0);
    std::vector<pid_t> children;
    for (int p = 0; p < kProcs; ++p) {
      const pid_t pid = ::fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        ::close(go[1]);
        char c;
        while (::read(go[0], &c, 1) > 0) {
        }  // released when the parent closes its end
        int code = 0;
        try {
          RunDb db(path);
          db.create_run(sample_run("rank-" + std::to_string(p)), 1.0);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "round %d, process %d: %s\n", round, p, e.what());
          code = 1;
        }
        ::_exit(code);
      }
      children.push_back(pid);
    }
    ::close(go[0]);
    ::close(go[1]);
    for (pid_t pid : children) {
      int status = 0;
      ASSERT_EQ(::waitpid(pid, &status, 0), pid);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "round " << round;
    }
    RunDb db(path, RunDb::Mode::existing);
    EXPECT_EQ(db.list_runs().size(), static_cast<std::size_t>(kProcs)) << "round " << round;
  }
}

TEST_F(RunDbTest, MigratesVersionOneFiles) {
  fs::create_directories(db_path_.parent_path());
  // The version-1 layout, written by hand: no sweep/message/log_dir columns, no wall times, no
  // artifacts table, and duplicate metric rows were possible.
  raw_sql(db_path_, R"sql(
    CREATE TABLE schema_version (version INTEGER NOT NULL);
    INSERT INTO schema_version VALUES (1);
    CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, kind TEXT NOT NULL,
      status TEXT NOT NULL, started REAL NOT NULL, ended REAL,
      command_line TEXT NOT NULL DEFAULT '', base_model TEXT NOT NULL DEFAULT '',
      dataset TEXT NOT NULL DEFAULT '', output_dir TEXT NOT NULL DEFAULT '');
    CREATE TABLE hyperparameters (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
      key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, key));
    CREATE TABLE metrics (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
      step INTEGER NOT NULL, name TEXT NOT NULL, value REAL);
    INSERT INTO runs (name, kind, status, started, ended, base_model)
      VALUES ('old-run', 'train', 'finished', 10.0, 20.0, 'tiny');
    INSERT INTO hyperparameters VALUES (1, 'lr', '0.001');
    INSERT INTO metrics VALUES (1, 1, 'train/loss', 3.0);
    INSERT INTO metrics VALUES (1, 2, 'train/loss', 2.5);
    INSERT INTO metrics VALUES (1, 2, 'train/loss', 2.0);
  )sql");
  RunDb db(db_path_);
  EXPECT_EQ(db.schema_version(), RunDb::kSchemaVersion);
  auto old = db.get_run(1);
  EXPECT_EQ(old.name, "old-run");
  EXPECT_EQ(old.status, RunStatus::finished);
  EXPECT_EQ(old.base_model, "tiny");
  EXPECT_FALSE(old.sweep_id);
  EXPECT_EQ(old.log_dir, "");
  EXPECT_EQ(db.params(1), nlohmann::json({{"lr", 0.001}}));
  auto loss = db.metric_series(1, "train/loss");
  ASSERT_EQ(loss.size(), 2u);  // the duplicate of step 2 is gone...
  EXPECT_DOUBLE_EQ(loss[1].value, 2.0);  // ...keeping the row written last
  EXPECT_TRUE(std::isnan(loss[0].wall_time));
  // Everything version 2 added works on the migrated file.
  auto trial = sample_run("new", RunKind::sweep_trial);
  trial.sweep_id = "s1";
  auto id = db.create_run(trial, 30.0);
  db.add_artifact(id, {"adapter", "a.bin", 3});
  db.log_metrics(1, 2, {{"train/loss", 1.0}}, 40.0);
  EXPECT_EQ(db.metric_series(1, "train/loss").size(), 2u);
  EXPECT_EQ(db.artifacts(id).size(), 1u);
  // Version 3's process and heartbeat: unknown for the old run, recorded for the new one.
  EXPECT_FALSE(db.get_run(1).pid);
  EXPECT_EQ(db.get_run(id).pid, ::getpid());
  EXPECT_EQ(db.get_run(1).heartbeat, 40.0) << "a metrics write beats the heartbeat";
}

TEST_F(RunDbTest, RefusesFilesThatAreNotRunDatabases) {
  fs::create_directories(dir_);
  auto garbage = dir_ / "garbage.db";
  std::ofstream(garbage) << std::string(5000, 'x');
  auto msg = error_of([&] { RunDb db(garbage); });
  EXPECT_NE(msg.find(garbage.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a database"), std::string::npos) << msg;

  auto foreign = dir_ / "foreign.db";
  raw_sql(foreign, "CREATE TABLE customers (id INTEGER)");
  msg = error_of([&] { RunDb db(foreign); });
  EXPECT_NE(msg.find(foreign.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a pricer run database"), std::string::npos) << msg;

  auto newer = dir_ / "newer.db";
  raw_sql(newer, "CREATE TABLE schema_version (version INTEGER); INSERT INTO schema_version VALUES (99)");
  msg = error_of([&] { RunDb db(newer); });
  EXPECT_NE(msg.find("schema version 99"), std::string::npos) << msg;
  EXPECT_NE(msg.find(newer.string()), std::string::npos) << msg;

  auto missing = dir_ / "missing.db";
  msg = error_of([&] { RunDb db(missing, RunDb::Mode::existing); });
  EXPECT_NE(msg.find("no run database at " + missing.string()), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(missing));

  msg = error_of([&] { RunDb db(dir_); });
  EXPECT_NE(msg.find("is a directory"), std::string::npos) << msg;
}

TEST_F(RunDbTest, CorruptedDatabaseIsReported) {
  {
    RunDb db(db_path_);
    auto id = db.create_run(sample_run("c"), 1.0);
    for (int s = 0; s < 200; ++s) db.log_metrics(id, s, {{"train/loss", 1.0 / (s + 1)}}, 1.0);
  }
  // Checkpointed on close, so the data lives in the main file; overwrite its pages after the
  // header with noise.
  auto size = fs::file_size(db_path_);
  ASSERT_GT(size, 8192u);
  {
    std::fstream f(db_path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    std::string noise(static_cast<std::size_t>(size) - 100, '\xa5');
    f.write(noise.data(), static_cast<std::streamsize>(noise.size()));
  }
  auto msg = error_of([&] {
    RunDb db(db_path_);
    db.summarize_runs();
  });
  EXPECT_NE(msg.find(db_path_.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("malformed"), std::string::npos) << msg;
}

// A run marked running whose process is gone shows as crashed; one whose heartbeat stopped long
// ago as stale; a live one as running.
TEST_F(RunDbTest, RunsWhoseProcessDiedShowAsCrashed) {
  const pid_t child = ::fork();
  if (child == 0) {
    try {
      RunDb db(db_path_);
      const auto id = db.create_run(sample_run("killed"), 100.0);
      db.log_metrics(id, 1, {{"train/loss", 2.0}}, 160.0);
    } catch (...) {
      ::_exit(1);
    }
    ::_exit(0);  // no status written: as kill -9 leaves it
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  RunDb db(db_path_);
  const auto mine = db.create_run(sample_run("alive"), 1000.0);
  const RunInfo dead = db.get_run(1);
  EXPECT_EQ(dead.status, RunStatus::running);
  EXPECT_EQ(dead.pid, child);
  EXPECT_EQ(liveness(dead, 200.0), RunLiveness::crashed);
  EXPECT_EQ(shown_status(dead, 200.0), "crashed");
  EXPECT_EQ(shown_status(db.get_run(mine), 1001.0), "running");
  RunInfo elsewhere = db.get_run(mine);
  elsewhere.host = "another-machine";
  EXPECT_EQ(liveness(elsewhere, 1000.0 + kStaleAfterSeconds + 1), RunLiveness::stale);
  EXPECT_EQ(liveness(elsewhere, 1000.0 + kStaleAfterSeconds - 1), RunLiveness::alive);
  db.set_status(mine, RunStatus::finished, "", 1002.0);
  EXPECT_EQ(shown_status(db.get_run(mine), 99999.0), "finished");
}

// Monitoring never stops the run: while another process holds the database's write lock the
// recorder keeps its writes, warns once, and lands them all once the lock is free.
TEST_F(RunDbTest, ALockedDatabaseDelaysRecordsButNeverStopsTheRun) {
  RecorderOptions o;
  o.db_path = db_path_;
  o.log_dir = dir_ / "logs";
  o.busy_timeout_ms = 50;
  o.retry_every_s = 0;
  RunRecorder rec(sample_run("busy"), o);
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(db_path_.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  testing::internal::CaptureStderr();
  EXPECT_NO_THROW(rec.log_metrics(1, {{"train/loss", 3.0}}));
  EXPECT_NO_THROW(rec.log_metrics(2, {{"train/loss", 2.0}}));
  EXPECT_NO_THROW(rec.add_artifact("last", dir_ / "last", 2));
  const std::string warned = testing::internal::GetCapturedStderr();
  EXPECT_EQ(rec.pending_writes(), 3u);
  EXPECT_NE(warned.find("the run goes on"), std::string::npos) << warned;
  EXPECT_EQ(warned.find("warning", warned.find("warning") + 1), std::string::npos) << "warned once: " << warned;
  ASSERT_EQ(sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  testing::internal::CaptureStderr();
  rec.log_metrics(3, {{"train/loss", 1.0}});
  EXPECT_NE(testing::internal::GetCapturedStderr().find("nothing lost"), std::string::npos);
  EXPECT_EQ(rec.pending_writes(), 0u);
  rec.finish();
  RunDb db(db_path_);
  EXPECT_EQ(db.metric_series(rec.id(), "train/loss").size(), 3u);
  EXPECT_EQ(db.artifacts(rec.id()).size(), 1u);
  EXPECT_EQ(db.get_run(rec.id()).status, RunStatus::finished);
  // The JSON-lines log had every step all along.
  std::ifstream log(dir_ / "logs" / "metrics.jsonl");
  int lines = 0;
  for (std::string l; std::getline(log, l);) ++lines;
  EXPECT_EQ(lines, 3);
}

// Without a database (--no-record): the logs only, and no database file appears.
TEST_F(RunDbTest, RecorderWithoutDatabaseWritesLogsOnly) {
  RecorderOptions o;
  o.database = false;
  o.db_path = db_path_;
  o.log_dir = dir_ / "logs";
  RunRecorder rec(sample_run("quiet"), o);
  rec.log_metrics(1, {{"train/loss", 3.0}});
  rec.add_artifact("last", dir_ / "last", 1);
  rec.finish();
  EXPECT_EQ(rec.id(), 0);
  EXPECT_FALSE(fs::exists(db_path_));
  EXPECT_TRUE(fs::exists(dir_ / "logs" / "metrics.jsonl"));
}
