#include "sweep/asha.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace pricer::sweep {

bool AshaOptions::is_rung(int64_t step) const {
  if (!enabled() || step < min_steps || step % min_steps != 0) return false;
  int64_t q = step / min_steps;
  while (q % reduction_factor == 0) q /= reduction_factor;
  return q == 1;
}

void AshaOptions::validate() const {
  require(min_steps >= 0, "pruning: min_steps cannot be negative");
  require(reduction_factor >= 2,
          "pruning: reduction_factor must be at least 2, not " + std::to_string(reduction_factor));
}

bool asha_promotes(double value, std::vector<double> rung_values, int64_t reduction_factor) {
  if (!std::isfinite(value)) return false;
  std::erase_if(rung_values, [](double v) { return !std::isfinite(v); });
  std::sort(rung_values.begin(), rung_values.end());
  if (rung_values.empty()) return true;
  // The k-th best value is the bar, k = max(1, n / eta).
  const size_t k = std::max<size_t>(1, rung_values.size() / static_cast<size_t>(reduction_factor));
  return value <= rung_values[k - 1];
}

}  // namespace pricer::sweep
