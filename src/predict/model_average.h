#pragma once
// Several fine-tuned models priced as one: runs of one recipe that differ only in seed (or in
// what their prompts carry) err differently, so the average of their prices beats each of them
// (docs/results.md). Prices are averaged in log(1 + price), the space of RMSLE and of the
// ensemble, where a $20 and a $500 guess do not weigh by their dollars.
#include <memory>
#include <string>
#include <vector>

#include "predict/model_pricer.h"

namespace pricer {

// The member options: one per merged model in `models`, or one per adapter in `adapters` on the
// base `common.model`. `common` supplies every other setting. An empty list in both gives
// `common` alone; several models and several adapters at once is an error.
std::vector<ModelPricerOptions> member_options(const ModelPricerOptions& common, const std::vector<std::string>& models,
                                               const std::vector<std::string>& adapters);

// The per-model predictions of the same prompts (per_model[m][i]) as one: price, median,
// expected, greedy and the interval bounds averaged in log(1 + x), number_mass averaged, the top
// tokens dropped (they belong to one model's distribution: see each member's own). `parsed` holds
// when every member parsed. One model's predictions come back unchanged.
std::vector<PricePrediction> average_predictions(const std::vector<std::vector<PricePrediction>>& per_model);

// The members loaded together; predict() prices every prompt with each and averages.
class ModelAverage {
 public:
  explicit ModelAverage(const std::vector<ModelPricerOptions>& members);
  explicit ModelAverage(std::vector<std::shared_ptr<ModelPricer>> members);
  std::vector<PricePrediction> predict(const std::vector<std::string>& prompts, PriceMode mode);
  // The last predict()'s per-member predictions, member by member.
  const std::vector<std::vector<PricePrediction>>& member_predictions() const { return last_; }
  const std::vector<std::shared_ptr<ModelPricer>>& members() const { return members_; }
  // The first member's template and cut: members are the same recipe, so they read texts alike.
  std::string prompt_for(const std::string& text) const { return members_.front()->prompt_for(text); }

 private:
  std::vector<std::shared_ptr<ModelPricer>> members_;
  std::vector<std::vector<PricePrediction>> last_;
};

}  // namespace pricer
