#pragma once
// report.html of an evaluation: the leaderboard chart and table, MAE per category, and per
// pricer its predictions against the truth and its error by price. Self-contained (inline SVG and
// CSS, no scripts or external assets).
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/evaluate.h"

namespace pricer::eval {

std::string report_html(const std::vector<Item>& items, const std::vector<PricerResult>& results,
                        const nlohmann::json& meta);

}  // namespace pricer::eval
