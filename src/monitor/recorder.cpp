#include "monitor/recorder.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "core/clock.h"
#include "core/error.h"

namespace pricer::monitor {
namespace {

// The end of a run may wait for the lock about as long as its start could.
constexpr int kEndBusyTimeoutMs = 10000;
// Beyond this many waiting writes the oldest are dropped (the JSON-lines log keeps every one).
constexpr std::size_t kMaxPendingWrites = 100000;

// Run names come from users and configs; the directory name must stay one safe path component.
std::string directory_name(std::int64_t id, const std::string& name) {
  std::string out = std::to_string(id) + "-";
  for (char c : name.substr(0, 64)) {
    bool safe =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
    out += safe ? c : '_';
  }
  return out;
}

}  // namespace

std::filesystem::path default_runs_db() {
  const char* env = std::getenv("PRICER_RUNS_DB");
  return env && *env ? std::filesystem::path(env) : std::filesystem::path("runs") / "pricer.db";
}

RunRecorder::RunRecorder(const NewRun& run, const RecorderOptions& options) {
  if (!options.database) {
    require(!options.log_dir.empty(), "run recorder: logs without a database need a log directory");
    log_dir_ = std::filesystem::absolute(options.log_dir).lexically_normal();
    if (options.jsonl) jsonl_ = std::make_unique<JsonlLog>(log_dir_ / "metrics.jsonl");
    if (options.tensorboard) events_ = std::make_unique<EventWriter>(log_dir_);
    return;
  }
  // Creating the run may wait for the lock (nothing has been computed yet); later writes must not.
  db_ = std::make_unique<RunDb>(options.db_path.empty() ? default_runs_db() : options.db_path);
  NewRun stored = run;
  stored.log_dir.clear();
  id_ = db_->create_run(stored, unix_seconds());
  try {
    log_dir_ = options.log_dir.empty() ? db_->path().parent_path() / directory_name(id_, run.name) : options.log_dir;
    // Absolute, so `pricer runs show` finds the directory from any working directory.
    log_dir_ = std::filesystem::absolute(log_dir_).lexically_normal();
    db_->set_log_dir(id_, log_dir_.string());
    if (options.jsonl) jsonl_ = std::make_unique<JsonlLog>(log_dir_ / "metrics.jsonl");
    if (options.tensorboard) events_ = std::make_unique<EventWriter>(log_dir_);
  } catch (const Error& e) {
    end(RunStatus::failed, std::string("cannot set up run logs: ") + e.what());
    throw;
  }
  db_->set_busy_timeout(options.busy_timeout_ms);
  retry_every_s_ = options.retry_every_s;
}

RunRecorder::~RunRecorder() {
  if (status_ != RunStatus::running) return;
  try {
    end(RunStatus::failed, std::uncaught_exceptions() > 0 ? "stopped by an error (exception while the run was active)"
                                                          : "recorder closed without finish()");
  } catch (...) {
    // A destructor must not throw; the run simply stays marked as running.
  }
}

bool RunRecorder::flush_pending(bool force) {
  // While the database fails, a retry every few seconds: each try may wait for the lock.
  if (warned_ && !force && unix_seconds() < retry_after_) return false;
  while (!pending_.empty()) {
    try {
      pending_.front()(*db_);
    } catch (const Error& e) {
      if (!warned_)
        std::fprintf(stderr,
                     "\nwarning: run database: %s; the run goes on, its figures are kept and retried "
                     "(and are in %s)\n",
                     e.what(), log_dir_.c_str());
      warned_ = true;
      retry_after_ = unix_seconds() + retry_every_s_;
      return false;
    }
    pending_.pop_front();
  }
  if (warned_) std::fprintf(stderr, "\nrun database: writing again, nothing lost\n");
  warned_ = false;
  return true;
}

void RunRecorder::write_db(std::function<void(RunDb&)> write) {
  if (!db_) return;
  if (pending_.size() >= kMaxPendingWrites) pending_.pop_front();  // the logs still hold them
  pending_.push_back(std::move(write));
  flush_pending();
}

void RunRecorder::log_params(const nlohmann::json& params) {
  write_db([id = id_, params](RunDb& db) { db.log_params(id, params); });
}

void RunRecorder::log_metrics(std::int64_t step, const std::map<std::string, double>& metrics) {
  double t = unix_seconds();
  if (jsonl_) jsonl_->log(step, t, metrics);
  if (events_) events_->add_scalars(step, metrics, t);
  write_db([id = id_, step, metrics, t](RunDb& db) { db.log_metrics(id, step, metrics, t); });
}

void RunRecorder::add_artifact(const std::string& kind, const std::filesystem::path& path,
                               std::optional<std::int64_t> step) {
  write_db([id = id_, a = Artifact{kind, path.string(), step}](RunDb& db) { db.add_artifact(id, a); });
}

void RunRecorder::finish(std::string_view message) { end(RunStatus::finished, message); }
void RunRecorder::fail(std::string_view message) { end(RunStatus::failed, message); }
void RunRecorder::interrupt(std::string_view message) { end(RunStatus::interrupted, message); }

void RunRecorder::end(RunStatus status, std::string_view message) {
  status_ = status;
  if (!db_) return;
  write_db(
      [id = id_, status, m = std::string(message), t = unix_seconds()](RunDb& db) { db.set_status(id, status, m, t); });
  for (int attempt = 0; !pending_.empty() && attempt < 3; ++attempt) {
    db_->set_busy_timeout(kEndBusyTimeoutMs);
    flush_pending(true);
  }
  if (!pending_.empty())
    std::fprintf(stderr, "warning: run database: %zu writes of run %lld could not be recorded; its metrics are in %s\n",
                 pending_.size(), static_cast<long long>(id_), log_dir_.c_str());
}

}  // namespace pricer::monitor
