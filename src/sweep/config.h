#pragma once
// The sweep configuration file of `pricer sweep --config sweep.yaml` (format in docs/sweep.md):
// the base training settings, the search space over them, the algorithm, the budget and the
// pruning rule. Unknown keys, bad distributions and parameters the trainer does not have are
// errors naming the file, the key and its line.
#include <string>

#include "sweep/sweep.h"
#include "train/trainer.h"

namespace pricer::sweep {

struct SweepConfig {
  std::string file;  // where it was read from (for messages)
  std::string name;
  std::string out_dir;
  TrainConfig train;  // the base every trial starts from
  std::string objective = "loss";  // loss | mae: the validation metric minimised
  SearchSpace space;
  SearchOptions search;

  static SweepConfig load(const std::string& path);
  // The eval metric name in the run database ("eval/loss" or "eval/mae").
  std::string metric_name() const { return "eval/" + objective; }
};

// "90", "90s", "15m", "2h", "1.5h", "1d" -> seconds. Throws naming `what` on anything else.
double parse_duration(const std::string& text, const std::string& what);

}  // namespace pricer::sweep
