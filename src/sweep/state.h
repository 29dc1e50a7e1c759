#pragma once
// What a sweep has done so far, in <out_dir>/sweep.json (rewritten atomically after every
// change): its settings, the wall time of earlier sessions and every trial with its parameters,
// status, rung values and runs. A sweep started again with the same settings reads it and goes
// on: finished trials are kept, trials left running are continued from their checkpoints.
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pricer::sweep {

enum class TrialStatus { running, complete, pruned, failed };
std::string_view to_string(TrialStatus s);

struct TrialRecord {
  int64_t number = 0;
  nlohmann::json params = nlohmann::json::object();
  TrialStatus status = TrialStatus::running;
  double objective = 0;  // complete: the final value; pruned: the value where it stopped
  bool has_objective = false;
  int64_t steps = 0;  // optimizer steps trained
  std::map<int64_t, double> rungs;  // rung step -> value reached there
  std::vector<int64_t> run_ids;  // the run database runs of this trial (one per session)
  std::string out_dir;
  std::string message;  // why it failed or where it was pruned
  double seconds = 0;  // training wall time, all sessions

  nlohmann::json to_json() const;
  static TrialRecord from_json(const nlohmann::json& j);
};

struct SweepState {
  std::string name;
  nlohmann::json settings;  // what must match for a resume (space, algorithm, seed, objective, ...)
  double elapsed_s = 0;  // wall time of earlier sessions
  std::vector<TrialRecord> trials;

  nlohmann::json to_json() const;
  void save(const std::filesystem::path& path) const;
  // nullopt when the file does not exist; a corrupt file throws naming it.
  static std::optional<SweepState> load(const std::filesystem::path& path);
};

// Finished trials best first: complete ones by objective, then pruned ones, deepest rung first
// and by value within a rung (a trial cut early ranks below every trial that went further).
// Running and failed trials are left out.
std::vector<const TrialRecord*> ranked_trials(const SweepState& state);

}  // namespace pricer::sweep
