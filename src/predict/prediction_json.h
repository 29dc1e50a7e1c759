#pragma once
// A prediction as JSON, the one form `pricer predict --json` prints and `pricer serve` answers:
// the price in its readout, the other readouts, the interval, the likeliest number tokens; with
// several models each one's own.
#include <cstddef>
#include <nlohmann/json.hpp>

#include "predict/model_average.h"

namespace pricer {

// Prediction i of the last avg.predict() call, p its (averaged) prediction.
nlohmann::json prediction_json(const ModelAverage& avg, std::size_t i, const PricePrediction& p, PriceMode mode);

}  // namespace pricer
