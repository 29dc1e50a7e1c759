#pragma once
// Asynchronous successive halving (ASHA, Li et al. 2020) in its stopping form, as Optuna's
// SuccessiveHalvingPruner and Ray Tune's ASHAScheduler do it: rungs sit at min_steps x eta^k
// optimizer steps; a trial reaching a rung continues only if its value there is among the best
// 1/eta of all values recorded at that rung so far (itself included). Nothing waits for a full
// bracket, so parallel trials never idle; the first trials at a rung are kept while fewer than
// eta have reported, unless they are not the best one yet.
#include <cstdint>
#include <vector>

namespace pricer::sweep {

struct AshaOptions {
  int64_t min_steps = 0;  // first rung; 0 = no pruning
  int64_t reduction_factor = 3;  // eta

  bool enabled() const { return min_steps > 0; }
  // Whether `step` is a rung: min_steps x eta^k for some k >= 0.
  bool is_rung(int64_t step) const;
  void validate() const;
};

// Whether a trial with `value` at a rung (lower is better) is promoted past it; `rung_values`
// are all values recorded at that rung, this trial's included.
bool asha_promotes(double value, std::vector<double> rung_values, int64_t reduction_factor);

}  // namespace pricer::sweep
