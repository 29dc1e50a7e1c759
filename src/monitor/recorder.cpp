#include "monitor/recorder.h"

#include <chrono>
#include <cstdlib>

#include "core/error.h"

namespace pricer::monitor {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Run names come from users and configs; the directory name must stay one safe path component.
std::string directory_name(std::int64_t id, const std::string& name) {
  std::string out = std::to_string(id) + "-";
  for (char c : name.substr(0, 64)) {
    bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.';
    out += safe ? c : '_';
  }
  return out;
}

}  // namespace

std::filesystem::path default_runs_db() {
  const char* env = std::getenv("PRICER_RUNS_DB");
  return env && *env ? std::filesystem::path(env) : std::filesystem::path("runs") / "pricer.db";
}

RunRecorder::RunRecorder(const NewRun& run, const RecorderOptions& options)
    : db_(options.db_path.empty() ? default_runs_db() : options.db_path) {
  NewRun stored = run;
  stored.log_dir.clear();
  id_ = db_.create_run(stored, now_seconds());
  try {
    log_dir_ = options.log_dir.empty() ? db_.path().parent_path() / directory_name(id_, run.name)
                                       : options.log_dir;
    // Absolute, so `pricer runs show` finds the directory from any working directory.
    log_dir_ = std::filesystem::absolute(log_dir_).lexically_normal();
    db_.set_log_dir(id_, log_dir_.string());
    if (options.jsonl) jsonl_ = std::make_unique<JsonlLog>(log_dir_ / "metrics.jsonl");
    if (options.tensorboard) events_ = std::make_unique<EventWriter>(log_dir_);
  } catch (const Error& e) {
    end(RunStatus::failed, std::string("cannot set up run logs: ") + e.what());
    throw;
  }
}

RunRecorder::~RunRecorder() {
  if (status_ != RunStatus::running) return;
  try {
    end(RunStatus::failed, std::uncaught_exceptions() > 0
                               ? "stopped by an error (exception while the run was active)"
                               : "recorder closed without finish()");
  } catch (...) {
    // A destructor must not throw; the run simply stays marked as running.
  }
}

void RunRecorder::log_params(const nlohmann::json& params) { db_.log_params(id_, params); }

void RunRecorder::log_metrics(std::int64_t step, const std::map<std::string, double>& metrics) {
  double t = now_seconds();
  db_.log_metrics(id_, step, metrics, t);
  if (jsonl_) jsonl_->log(step, t, metrics);
  if (events_) events_->add_scalars(step, metrics, t);
}

void RunRecorder::add_artifact(const std::string& kind, const std::filesystem::path& path,
                               std::optional<std::int64_t> step) {
  db_.add_artifact(id_, {kind, path.string(), step});
}

void RunRecorder::finish(std::string_view message) { end(RunStatus::finished, message); }
void RunRecorder::fail(std::string_view message) { end(RunStatus::failed, message); }
void RunRecorder::interrupt(std::string_view message) { end(RunStatus::interrupted, message); }

void RunRecorder::end(RunStatus status, std::string_view message) {
  db_.set_status(id_, status, message, now_seconds());
  status_ = status;
}

}  // namespace pricer::monitor
