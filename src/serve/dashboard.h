#pragma once
// What the web app's Runs, Sweeps and Evals pages show, as JSON read from the run database. Each
// call opens the database read-only-in-spirit (Mode::existing) on the calling thread, so pages
// stay live while training processes write to it; a missing database reads as no runs.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>

namespace pricer::serve {

class Dashboard {
 public:
  explicit Dashboard(std::filesystem::path runs_db) : db_(std::move(runs_db)) {}
  const std::filesystem::path& path() const { return db_; }

  // Every run: id, name, kind, status (crashed/stale shown as such), steps, best val MAE and
  // loss, duration, tokens/s.
  nlohmann::json runs() const;
  // One run: its row, settings, every metric series ([step, value, wall time] triples, only the
  // points after `after_step` when given) and artifacts. Throws ApiError 404 on an unknown id.
  nlohmann::json run(int64_t id, int64_t after_step = -1) const;
  // Sweeps: trials grouped by sweep, with settings, status (pruned ones marked), objective and
  // its series per step.
  nlohmann::json sweeps() const;
  // Evaluation runs with their leaderboards (results.json), newest first.
  nlohmann::json evals() const;
  // The report.html an evaluation run wrote; ApiError 404 when gone.
  std::string eval_report(int64_t id) const;

 private:
  std::filesystem::path db_;
};

}  // namespace pricer::serve
