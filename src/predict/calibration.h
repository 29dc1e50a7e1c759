#pragma once
// How honest the model's prediction intervals are: for several nominal coverages, the share of
// true prices that fall inside the interval read from each item's next-token distribution.
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "predict/model_pricer.h"

namespace pricer {

// Whether the interval holds the true price, rounded to whole dollars as completions write it.
bool interval_holds(double truth, double lo, double hi);

struct CoveragePoint {
  double nominal = 0;  // the interval's probability under the model
  double observed = 0;  // share of items whose true price it holds
  double mean_width = 0;  // mean hi - lo in dollars
};

struct Calibration {
  std::size_t n = 0;
  double mean_number_mass = 0;
  std::vector<CoveragePoint> points;  // one per level, in the order given
};

// preds need number_probs (ModelPricerOptions::keep_distribution); truth is in dollars. Throws
// Error on mismatched sizes or a level outside (0, 1).
Calibration calibrate(const PriceDistribution& pd, const std::vector<PricePrediction>& preds,
                      const std::vector<double>& truth, const std::vector<double>& levels);

nlohmann::json calibration_json(const Calibration& c);
// Observed against nominal coverage with the y = x line of a perfectly calibrated model.
std::string calibration_svg(const Calibration& c, const std::string& title);

}  // namespace pricer
