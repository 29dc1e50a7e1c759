#include "predict/calibration.h"

#include <cmath>

#include "core/error.h"
#include "report/svg.h"

namespace pricer {

bool interval_holds(double truth, double lo, double hi) {
  const double dollars = std::round(truth);
  return dollars >= lo && dollars <= hi;
}

Calibration calibrate(const PriceDistribution& pd, const std::vector<PricePrediction>& preds,
                      const std::vector<double>& truth, const std::vector<double>& levels) {
  require(preds.size() == truth.size(), "calibration: " + std::to_string(preds.size()) + " predictions for " +
                                            std::to_string(truth.size()) + " prices");
  require(!preds.empty(), "calibration: no items");
  Calibration c;
  c.n = preds.size();
  for (const auto& p : preds) {
    require(p.number_probs.size() == pd.n_number_tokens(), "calibration: predictions carry no distribution");
    c.mean_number_mass += p.dist.number_mass / static_cast<double>(c.n);
  }
  for (double level : levels) {
    CoveragePoint pt;
    pt.nominal = level;
    std::size_t inside = 0;
    for (std::size_t i = 0; i < c.n; ++i) {
      const auto [lo, hi] = pd.interval(preds[i].number_probs, level);
      inside += interval_holds(truth[i], lo, hi);
      pt.mean_width += (hi - lo) / static_cast<double>(c.n);
    }
    pt.observed = static_cast<double>(inside) / static_cast<double>(c.n);
    c.points.push_back(pt);
  }
  return c;
}

nlohmann::json calibration_json(const Calibration& c) {
  nlohmann::json pts = nlohmann::json::array();
  for (const auto& p : c.points)
    pts.push_back({{"nominal", p.nominal}, {"observed", p.observed}, {"mean_width", p.mean_width}});
  return {{"items", c.n}, {"mean_number_mass", c.mean_number_mass}, {"coverage", pts}};
}

std::string calibration_svg(const Calibration& c, const std::string& title) {
  std::vector<report::Point> pts;
  for (const auto& p : c.points) pts.push_back({p.nominal, p.observed, ""});
  // Anchor both axes at 0 and 1 so the y = x line spans the whole square.
  pts.push_back({0.0, 0.0, "none"});
  pts.push_back({1.0, 1.0, "none"});
  report::ChartOptions o;
  o.title = title;
  o.x_label = "nominal coverage";
  o.y_label = "share of true prices inside";
  o.width = 480;
  o.height = 440;
  return report::scatter_svg(pts, o, true);
}

}  // namespace pricer
