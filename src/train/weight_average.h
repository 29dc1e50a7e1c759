#pragma once
// An exponential moving average of the trainable weights (Polyak averaging), updated after every
// optimizer step: evaluation and the saved model use the average, which smooths the step-to-step
// wander of a small-data fine-tune. The decay warms up as (1 + n) / (10 + n) until it reaches the
// configured value, so early averages are not dominated by the starting weights.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "model/param.h"

namespace pricer {

class WeightAverage {
 public:
  // Starts from the current values of `params`; decay in (0, 1).
  WeightAverage(const std::vector<Param>& params, double decay);
  // Folds the current values in (after an optimizer step).
  void update(const std::vector<Param>& params);
  // Runs `f` with the averaged weights in place of the live ones, then puts the live ones back
  // (also when `f` throws).
  void with_averaged(const std::vector<Param>& params, const std::function<void()>& f);
  int64_t updates() const { return updates_; }
  double decay_now() const;  // the decay the next update() uses

  // For checkpoints: the update count, then every shadow tensor.
  std::vector<uint8_t> save_state() const;
  void load_state(std::span<const uint8_t> blob, const std::string& source);

 private:
  double decay_;
  int64_t updates_ = 0;
  std::vector<std::vector<float>> shadow_;
};

}  // namespace pricer
