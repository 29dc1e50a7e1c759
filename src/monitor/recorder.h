#pragma once
// RunRecorder: the one object a training, evaluation or sweep run talks to. It creates the run in
// the run database and sends every step's metrics to all three sinks in one call: the database,
// <log_dir>/metrics.jsonl and a TensorBoard event file in <log_dir>. The run's final status is
// recorded by finish(), fail() or interrupt(); a recorder destroyed while the run is still
// running (an exception unwinding through the training loop) marks it failed.
//
// Monitoring never stops the work it watches: once the run exists, a database write that fails
// (another process holding the lock, a full disk) is kept in memory, warned about once, and
// retried with the next write; the JSON-lines and TensorBoard logs carry everything meanwhile.
// Every metrics write also beats the run's heartbeat, so `pricer runs` can tell a run that died
// without a word (kill -9, power loss) from one still going.
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "monitor/jsonl_log.h"
#include "monitor/run_db.h"
#include "monitor/tfevents.h"

namespace pricer::monitor {

// $PRICER_RUNS_DB when set, otherwise runs/pricer.db (relative to the working directory).
std::filesystem::path default_runs_db();

struct RecorderOptions {
  bool database = true;  // false: logs only, no run database entry (--no-record)
  std::filesystem::path db_path;  // empty: default_runs_db()
  std::filesystem::path log_dir;  // empty: <db directory>/<run id>-<run name>; needed without database
  bool jsonl = true;
  bool tensorboard = true;
  // Once the run exists: how long a database write waits for another process's lock, and how
  // often writes kept after a failure are retried.
  int busy_timeout_ms = 2000;
  double retry_every_s = 10;
};

class RunRecorder {
 public:
  // `run.log_dir` is ignored: the recorder decides it from `options` and stores it.
  explicit RunRecorder(const NewRun& run, const RecorderOptions& options = {});
  ~RunRecorder();
  RunRecorder(const RunRecorder&) = delete;
  RunRecorder& operator=(const RunRecorder&) = delete;

  std::int64_t id() const { return id_; }  // 0 without a database
  const std::filesystem::path& log_dir() const { return log_dir_; }
  RunStatus status() const { return status_; }
  // Database writes waiting for a retry (0 when the database keeps up).
  std::size_t pending_writes() const { return pending_.size(); }

  void log_params(const nlohmann::json& params);
  void log_metrics(std::int64_t step, const std::map<std::string, double>& metrics);
  void add_artifact(const std::string& kind, const std::filesystem::path& path,
                    std::optional<std::int64_t> step = std::nullopt);

  void finish(std::string_view message = "");
  void fail(std::string_view message);
  void interrupt(std::string_view message = "interrupted by signal");

 private:
  void end(RunStatus status, std::string_view message);
  // Runs `write` against the database after the writes still pending; keeps it for later when the
  // database fails. Without a database, does nothing.
  void write_db(std::function<void(RunDb&)> write);
  bool flush_pending(bool force = false);

  std::unique_ptr<RunDb> db_;
  std::deque<std::function<void(RunDb&)>> pending_;
  bool warned_ = false;
  double retry_after_ = 0;
  double retry_every_s_ = 10;
  std::int64_t id_ = 0;
  std::filesystem::path log_dir_;
  std::unique_ptr<JsonlLog> jsonl_;
  std::unique_ptr<EventWriter> events_;
  RunStatus status_ = RunStatus::running;
};

}  // namespace pricer::monitor
