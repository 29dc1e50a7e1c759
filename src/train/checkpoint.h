#pragma once
// Checkpoints of a training run: one file (header JSON with the loop's place and the run's
// settings, every trainable tensor by name, the optimizer state, the weight average when there is
// one) written atomically, so a crash at any moment leaves the previous complete checkpoint.
#include <cmath>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/param.h"
#include "train/optimizer.h"
#include "train/weight_average.h"

namespace pricer {

// Where the loop is and what it has seen: what a checkpoint resumes from.
struct LoopState {
  int64_t step = 0, epoch = 0, batch_in_epoch = 0;
  int64_t skipped = 0, evals_without_improvement = 0;
  double last_train_loss = 0;
  double first_eval_loss = NAN, best_eval_loss = NAN, last_eval_loss = NAN;
  double first_eval_mae = -1, best_eval_mae = -1, last_eval_mae = -1;
  double best_metric = INFINITY;

  nlohmann::json to_json() const;
  void from_json(const nlohmann::json& j);
};

void save_checkpoint(const std::string& path, const LoopState& st, const nlohmann::json& cfg,
                     const std::vector<Param>& params, const Optimizer& opt, const WeightAverage* avg);
// Restores params and optimizer after `check_config` accepted the saved settings (so a run with
// other settings hears which, not that the tensors differ); returns the loop state.
LoopState load_checkpoint(const std::string& path, std::vector<Param>& params, Optimizer& opt, WeightAverage* avg,
                          const std::function<void(const nlohmann::json&)>& check_config);

}  // namespace pricer
