#pragma once
// The sweep loop, independent of what a trial is: proposes parameters with the sampler, runs
// trials (one at a time or several at once on worker threads), applies ASHA at the rungs, keeps
// the budget in trials and wall time, and records everything in the state file after every
// change, so a sweep stopped at any point (Ctrl-C, a crash, the time budget) goes on where it
// was when started again. `pricer sweep` plugs fine-tuning runs in (sweep/train_trial.h); tests
// plug in cheap functions.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "sweep/asha.h"
#include "sweep/sampler.h"
#include "sweep/space.h"
#include "sweep/state.h"

namespace pricer::sweep {

struct SearchOptions {
  std::string algorithm = "tpe";  // random | tpe
  uint64_t seed = 0;
  TpeOptions tpe;
  int64_t trials = 20;  // budget in trials (pruned and failed ones count); 0 = no limit
  double time_budget_s = 0;  // no new trial starts after this much wall time (all sessions); 0 = no limit
  int parallel = 1;  // trials at once
  AshaOptions pruning;
  int64_t max_consecutive_failures = 3;  // the sweep stops with an error after this many failures in a row

  void validate() const;
  nlohmann::json to_json() const;
};

// What a trial sees while it runs.
struct TrialContext {
  TrialRecord trial;  // number, params, out_dir (and rung values of earlier sessions)
  bool resume = false;  // an earlier session left it running: continue from its checkpoint
  // Report the value reached at optimizer step `step` (lower is better). Returns false when the
  // trial is pruned there and must stop. Steps that are not rungs always return true.
  std::function<bool(int64_t step, double value)> report;
  // Records a run database run of this trial as soon as it exists.
  std::function<void(int64_t run_id)> add_run;
};

struct TrialOutcome {
  bool interrupted = false;  // stopped by Ctrl-C: stays running, resumed next time
  bool pruned = false;  // stopped because report() returned false
  double objective = 0;  // complete: the final value (pruned: ignored, the rung value is used)
  int64_t steps = 0;
  std::string message;
};

// Runs a trial to its end. Throwing pricer::Error marks the trial failed (the sweep goes on).
using TrialFn = std::function<TrialOutcome(TrialContext&)>;

struct SweepSpec {
  std::string name;
  std::filesystem::path out_dir;  // sweep.json and the trial directories (trial-NNN)
  SearchSpace space;
  SearchOptions search;
  nlohmann::json settings;  // extra settings a resume must match (e.g. the objective and base config)
  // Brings extra settings stored by an earlier version to today's spelling before a resume compares
  // them (a renamed key is not a changed setting); none: compared as stored.
  std::function<nlohmann::json(nlohmann::json stored)> upgrade_settings;
  bool progress = true;
  // Called (under the sweep's lock) when a trial ends, for a per-trial line.
  std::function<void(const TrialRecord&, const SweepState&)> on_trial_end;
};

std::filesystem::path state_path(const SweepSpec& spec);

// Runs or resumes the sweep; returns its state (also in sweep.json). `interrupted` is set when
// the sweep stopped on Ctrl-C before its budget was spent.
SweepState run_sweep(const SweepSpec& spec, const TrialFn& trial, bool* interrupted = nullptr);

}  // namespace pricer::sweep
