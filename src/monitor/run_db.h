#pragma once
// The run database: one SQLite file (default runs/pricer.db) that every training, pre-training,
// evaluation and sweep-trial run records itself in, so runs can be listed, compared and charted.
//
// WAL mode and a busy timeout let parallel sweep trials write to the same file; each write
// (a run, a step's metrics, a set of hyperparameters) is one transaction with prepared
// statements. The schema is versioned and older files are migrated in place on open.
// See docs/monitoring.md for the tables.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct sqlite3;

namespace pricer::monitor {

enum class RunKind { train, pretrain, eval, sweep_trial };
enum class RunStatus { running, finished, failed, interrupted };

std::string_view to_string(RunKind kind);  // "train", "pretrain", "eval", "sweep-trial"
std::string_view to_string(RunStatus status);
RunKind parse_run_kind(std::string_view text);  // throws pricer::Error on an unknown name
RunStatus parse_run_status(std::string_view text);

// Metric names shared by every producer, so listings and charts find the losses.
inline constexpr std::string_view kTrainLoss = "train/loss";
inline constexpr std::string_view kEvalLoss = "eval/loss";
inline constexpr std::string_view kEvalMae = "eval/mae";
inline constexpr std::string_view kTokensPerSecond = "train/tokens_per_s";

struct NewRun {
  std::string name;
  RunKind kind = RunKind::train;
  std::optional<std::string> sweep_id;
  std::string command_line;
  std::string base_model;
  std::string dataset;
  std::string output_dir;
  std::string log_dir;  // where the JSONL log and TensorBoard events of the run go
};

struct RunInfo {
  std::int64_t id = 0;
  std::string name;
  RunKind kind = RunKind::train;
  std::optional<std::string> sweep_id;
  RunStatus status = RunStatus::running;
  std::string message;  // why a run failed, was interrupted or ended early
  double started = 0;  // Unix seconds
  std::optional<double> ended;
  std::string command_line;
  std::string base_model;
  std::string dataset;
  std::string output_dir;
  std::string log_dir;
  std::string host;  // machine the run was started on
  std::optional<std::int64_t> pid;  // its process there
  std::optional<double> heartbeat;  // Unix seconds of its last metrics write
};

// A run marked running whose process is gone (same host, no such pid) has crashed (kill -9,
// power loss); one silent for kStaleAfterSeconds may have (another host, or a hang).
enum class RunLiveness { ended, alive, stale, crashed };
inline constexpr double kStaleAfterSeconds = 15 * 60;
RunLiveness liveness(const RunInfo& run, double now);
// The status to show: "crashed" or "stale" for such runs, else the recorded one.
std::string_view shown_status(const RunInfo& run, double now);
std::string this_host();

struct MetricPoint {
  std::int64_t step = 0;
  double value = 0;  // NaN when the logged value was not finite-representable (NaN)
  double wall_time = 0;  // NaN for rows migrated from schema version 1, which had no times
};

struct Artifact {
  std::string kind;  // "checkpoint", "adapter", "predictions", ...
  std::string path;
  std::optional<std::int64_t> step;
};

// One row of the run listing, computed in SQL so listing stays fast on large metric tables.
struct RunSummary {
  RunInfo run;
  std::optional<std::int64_t> last_step;
  std::optional<double> last_loss;  // last train/loss
  std::optional<double> best_loss;  // lowest eval/loss, or lowest train/loss without evals
  std::optional<double> best_mae;  // lowest eval/mae
  std::optional<double> last_tokens_per_s;  // last train/tokens_per_s
};

class RunDb {
 public:
  static constexpr int kSchemaVersion = 3;

  enum class Mode { create, existing };
  // `existing` refuses to create a missing file (for read-mostly tools such as `pricer runs`).
  explicit RunDb(const std::filesystem::path& path, Mode mode = Mode::create, int busy_timeout_ms = 30000);
  ~RunDb();
  RunDb(const RunDb&) = delete;
  RunDb& operator=(const RunDb&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // How long a write waits for another process's lock before it fails.
  void set_busy_timeout(int ms);
  int schema_version();

  std::int64_t create_run(const NewRun& run, double started);
  void set_status(std::int64_t run, RunStatus status, std::string_view message, double ended);
  void set_log_dir(std::int64_t run, std::string_view log_dir);
  // Files a run under a sweep (kind sweep-trial), for runs started by code that does not know
  // it is part of one (the training loop creates its own run).
  void set_sweep(std::int64_t run, std::string_view sweep_id);
  // `params` must be a JSON object; each key is stored with its value as JSON text, replacing an
  // earlier value of the same key.
  void log_params(std::int64_t run, const nlohmann::json& params);
  // One step's metrics in one transaction. Logging a step again replaces its values (a run
  // resumed from a checkpoint re-logs the steps after it).
  void log_metrics(std::int64_t run, std::int64_t step, const std::map<std::string, double>& metrics, double wall_time);
  void add_artifact(std::int64_t run, const Artifact& artifact);

  std::vector<RunInfo> list_runs();
  std::vector<RunSummary> summarize_runs();
  RunInfo get_run(std::int64_t run);  // throws pricer::Error when there is no such run
  nlohmann::json params(std::int64_t run);
  std::vector<std::string> metric_names(std::int64_t run);
  std::vector<MetricPoint> metric_series(std::int64_t run, std::string_view name);
  std::vector<Artifact> artifacts(std::int64_t run);

  class Statement;  // a cached prepared statement (defined in run_db.cpp)

 private:
  void migrate();
  void enable_wal(int busy_timeout_ms);
  void exec(const char* sql, const char* what);
  Statement& prepare(const char* sql);
  [[noreturn]] void fail(const std::string& what, int rc);

  std::filesystem::path path_;
  sqlite3* db_ = nullptr;
  std::map<std::string, std::unique_ptr<Statement>, std::less<>> statements_;
};

}  // namespace pricer::monitor
