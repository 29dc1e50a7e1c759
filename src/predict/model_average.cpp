#include "predict/model_average.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace pricer {

std::vector<ModelPricerOptions> member_options(const ModelPricerOptions& common, const std::vector<std::string>& models,
                                               const std::vector<std::string>& adapters) {
  require(models.size() <= 1 || adapters.size() <= 1,
          "several models and several adapters at once: average either merged models or adapters on one base");
  std::vector<ModelPricerOptions> out;
  if (models.size() > 1) {
    for (const auto& m : models) {
      ModelPricerOptions o = common;
      o.model = m;
      if (!adapters.empty()) o.adapter = adapters.front();
      out.push_back(o);
    }
    return out;
  }
  ModelPricerOptions o = common;
  if (!models.empty()) o.model = models.front();
  if (adapters.empty()) return {o};
  for (const auto& a : adapters) {
    o.adapter = a;
    out.push_back(o);
  }
  return out;
}

namespace {

// Prices are never negative; log1p keeps a $0 readout finite.
double log_price(double p) { return std::log1p(std::max(p, 0.0)); }

PricePrediction average_one(const std::vector<std::vector<PricePrediction>>& per_model, std::size_t i) {
  PricePrediction avg;
  double price = 0, median = 0, expected = 0, greedy = 0, lo = 0, hi = 0;
  for (const auto& preds : per_model) {
    const PricePrediction& p = preds[i];
    price += log_price(p.price);
    median += log_price(p.dist.median);
    expected += log_price(p.dist.expected);
    greedy += log_price(p.dist.greedy);
    lo += log_price(p.dist.lo);
    hi += log_price(p.dist.hi);
    avg.dist.number_mass += p.dist.number_mass;
    avg.parsed = avg.parsed && p.parsed;
  }
  const double n = static_cast<double>(per_model.size());
  avg.price = std::expm1(price / n);
  avg.dist.median = std::expm1(median / n);
  avg.dist.expected = std::expm1(expected / n);
  avg.dist.greedy = std::expm1(greedy / n);
  avg.dist.lo = std::expm1(lo / n);
  avg.dist.hi = std::expm1(hi / n);
  avg.dist.number_mass /= n;
  return avg;
}

}  // namespace

std::vector<PricePrediction> average_predictions(const std::vector<std::vector<PricePrediction>>& per_model) {
  require(!per_model.empty(), "average_predictions: no models");
  if (per_model.size() == 1) return per_model.front();
  const std::size_t n = per_model.front().size();
  for (const auto& preds : per_model)
    require(preds.size() == n, "average_predictions: the models priced different numbers of prompts");
  std::vector<PricePrediction> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) out.push_back(average_one(per_model, i));
  return out;
}

ModelAverage::ModelAverage(const std::vector<ModelPricerOptions>& members) {
  require(!members.empty(), "no model to price with");
  for (const auto& o : members) members_.push_back(std::make_shared<ModelPricer>(o));
}

ModelAverage::ModelAverage(std::vector<std::shared_ptr<ModelPricer>> members) : members_(std::move(members)) {
  require(!members_.empty(), "no model to price with");
}

std::vector<PricePrediction> ModelAverage::predict(const std::vector<std::string>& prompts, PriceMode mode) {
  last_.clear();
  for (const auto& m : members_) last_.push_back(m->predict(prompts, mode));
  return average_predictions(last_);
}

}  // namespace pricer
