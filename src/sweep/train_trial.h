#pragma once
// Sweep trials as fine-tuning runs: each trial is run_training on the base settings with the
// trial's parameters applied, in <out_dir>/trial-NNN, recorded in the run database as a
// sweep-trial run of the sweep. The base model, tokenizer and data are loaded once per sweep.
//
// ASHA uses the training loop's own evaluations: trials evaluate every `min_steps` steps, and at
// a rung the loop's on_eval hook hands the trial's best value so far to the sweep; a pruned trial
// is stopped from that hook (its last adapters and checkpoint are written and its run is marked
// finished, "pruned at step N").
// The learning-rate schedule of a trial is that of its full budget whether or not it is pruned.
#include <memory>
#include <string>

#include "sweep/config.h"

namespace YAML {
class Node;
}

namespace pricer::sweep {

// Checks each space parameter names a setting a trial can vary, with a fitting distribution.
void check_space_keys(const SweepConfig& cfg, const YAML::Node& space_node);

// Sets one searched parameter; alpha_ratio sets alpha = ratio x rank (after rank is set).
void apply_param(TrainConfig& cfg, const std::string& name, const nlohmann::json& value);

// The training settings of a trial: the base with its parameters, its own directory and name.
TrainConfig trial_train_config(const SweepConfig& cfg, const TrialRecord& trial);

// A sweep's stored extra settings ({"objective", "train": base settings}) with the base settings'
// keys spelt as the settings table spells them now (`dataset` -> `data`, `out_dir` -> `out`).
nlohmann::json upgrade_train_settings(nlohmann::json extra);

// `cfg` as a YAML file `pricer train --config` reads (floats written so they read back exactly).
std::string train_config_yaml(const TrainConfig& cfg, const std::string& comment);

class TrainTrialRunner {
 public:
  explicit TrainTrialRunner(const SweepConfig& cfg);
  ~TrainTrialRunner();
  TrialOutcome operator()(TrialContext& ctx) const;

 private:
  struct Shared;
  const SweepConfig& cfg_;
  std::unique_ptr<Shared> shared_;
};

}  // namespace pricer::sweep
