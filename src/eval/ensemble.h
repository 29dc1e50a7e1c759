#pragma once
// The ensemble pricer: stacks other pricers, as the course's last stage combined its pricers.
// Each member's price becomes a feature log(price); the ensemble predicts
// exp(b + sum_j w_j log p_j + sum_k v_k s_k) with non-negative weights w, and by default the spec
// table's quantities s (weight, volume, pack count: eval/features.h) with weights v of either sign
// (where every member shrinks heavy or bulky items alike, they correct it), fitted (by default)
// for the dollar MAE that the leaderboard ranks by, or by least squares in log-price space, only
// ever on predictions for items the member did not learn from:
//  - members fitted here (the classic baselines) are cross-fitted: the training split is cut
//    into K folds and each fold is priced by a member fitted on the other folds;
//  - members trained elsewhere (the LLMs, which learned from the training split) cannot be
//    refitted, so the weights are fitted on held-out items no member saw (--param
//    ensemble_fit=PATH): the classic members, fitted on the whole training split, price them too.
// The final classic members are fitted on the whole training split. The scored items are never
// the fit items: predicting a set that is mostly among them is an error.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "eval/pricer.h"

namespace pricer::eval {

struct EnsembleMember {
  std::string name;
  std::function<std::unique_ptr<Pricer>()> make;  // a fresh, unfitted instance per call
};

// What the weights minimise on the fit items: the mean absolute error in dollars (least squares
// in log space weighs a $5 item's 20% miss like a $500 item's, while MAE does not), or the
// squared error of log prices.
enum class StackObjective { DollarMae, LogSquares };
StackObjective parse_stack_objective(const std::string& s);  // "mae" | "log-ls"
const char* stack_objective_name(StackObjective o);

struct EnsembleOptions {
  int folds = 5;
  StackObjective objective = StackObjective::DollarMae;
  uint64_t seed = 42;
  double ridge = 1e-3;  // on the weights, relative to the number of fit items
  bool spec_quantities = true;  // the spec table's quantities as columns beside the members
  std::vector<Item> holdout;  // items for the weights when a member was trained elsewhere
  std::string holdout_source;  // where they came from, for stats
};

// Least squares with a free intercept and a small ridge: minimises
// sum_i (b + sum_j w_j x[j][i] - y_i)^2 + ridge * n * |w|^2 over w_j >= 0 for the first
// `nonneg` columns (the members; the rest take either sign) by cyclic coordinate descent on the
// centred problem (exact for a handful of columns).
struct StackWeights {
  std::vector<double> weights;
  double intercept = 0;
};
StackWeights fit_stack_weights(const std::vector<std::vector<double>>& x, const std::vector<double>& y, double ridge,
                               size_t nonneg = SIZE_MAX);
// From `start` (the least-squares weights), a compass search on the mean absolute error in
// dollars, mean_i |exp(b + sum_j w_j x[j][i]) - exp(y_i)|, keeping the first `nonneg` weights
// >= 0: deterministic, never worse than `start`, and cheap for a handful of columns.
StackWeights refine_stack_weights_for_mae(const std::vector<std::vector<double>>& x, const std::vector<double>& y,
                                          StackWeights start, size_t nonneg = SIZE_MAX);
// mean_i |exp(b + sum_j w_j x[j][i]) - exp(y_i)|
double stack_dollar_mae(const std::vector<std::vector<double>>& x, const std::vector<double>& y, const StackWeights& w);

class EnsemblePricer : public Pricer {
 public:
  EnsemblePricer(std::vector<EnsembleMember> members, EnsembleOptions opt);
  std::string name() const override { return "ensemble"; }
  bool needs_training() const override { return true; }
  void fit(const std::vector<Item>& train) override;
  std::vector<double> predict(const std::vector<Item>& items) override;
  // Weights per member, intercept, how they were fitted (cross-fit or held-out, on how many
  // items) and the fit items' MAE.
  nlohmann::json stats() const override;

 private:
  // The stack's columns for `items`: each member's log prices, then the spec quantities.
  std::vector<std::vector<double>> stack_columns(const std::vector<Item>& items);
  void add_spec_columns(const std::vector<Item>& items, std::vector<std::vector<double>>& x) const;
  void describe_weights();

  std::vector<EnsembleMember> members_;
  EnsembleOptions opt_;
  std::vector<std::unique_ptr<Pricer>> fitted_;  // the final members, in members_ order, built once
  StackWeights weights_;
  std::unordered_set<uint64_t> fit_items_;  // hashes of the items the weights saw
  nlohmann::json stats_ = nlohmann::json::object();
};

// The ensemble of `pricer eval` from --param settings:
//   ensemble=tfidf,xgboost,finetuned  members (default: tfidf and xgboost, and finetuned with its
//                                     expected-value readout when a fine-tuned model is given)
//   ensemble_fit=PATH                 held-out items for the weights (a JSON-lines file, or a
//                                     curate directory's ensemble_fit_split, default "test")
//   ensemble_folds=5                  folds of the cross-fitting
//   ensemble_objective=mae            what the weights minimise: mae (dollars) or log-ls
//   ensemble_spec=1                   the spec table's quantities as columns (0: members only)
std::unique_ptr<Pricer> make_ensemble_pricer(const PricerContext& ctx);

}  // namespace pricer::eval
