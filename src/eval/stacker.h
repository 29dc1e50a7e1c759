#pragma once
// The ensemble's second level: from a table of columns per item (the members' log prices first,
// then what else the stacker reads) to a log price. Two stackers:
//  - linear: exp(b + sum_j w_j log p_j + sum_k v_k s_k), non-negative weights w on the members and
//    weights v of either sign on the spec table's quantities s, fitted for the dollar MAE (or by
//    least squares in log price). Few parameters: a few hundred held-out items fit it;
//  - trees: gradient-boosted trees (libxgboost) over the members' log prices, how sure each
//    member was (an LLM's interval width) and the item's own features (eval/features.h), which
//    learn where to trust which member (TF-IDF on long spec sheets, the LLM where its interval
//    is narrow). They need thousands of fit items: the training split priced out of fold.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace pricer::eval {

struct StackTable {
  std::vector<std::string> names;  // one per column
  std::vector<std::vector<double>> columns;  // columns[j][i]: column j of item i
  std::size_t members = 0;  // the first `members` columns are the members' log prices
  std::size_t rows() const { return columns.empty() ? 0 : columns.front().size(); }
};

class Stacker {
 public:
  virtual ~Stacker() = default;
  virtual std::string name() const = 0;
  // Whether the table should hold the members' signals and the item features beyond the
  // spec quantities.
  virtual bool reads_everything() const = 0;
  virtual void fit(const StackTable& t, const std::vector<double>& log_prices) = 0;
  virtual std::vector<double> predict(const StackTable& t) const = 0;  // log prices
  // Its settings and what it learned (weights, or the trees' importances), for results.json.
  virtual nlohmann::json describe() const = 0;
  // What predict() needs, as JSON (larger parts as files in `dir`), for load_stacker.
  virtual nlohmann::json save(const std::filesystem::path& dir) const = 0;
};

// A stacker as save() wrote it; errors name `dir`.
std::unique_ptr<Stacker> load_stacker(const nlohmann::json& state, const std::filesystem::path& dir);

// What the linear weights minimise on the fit items: the mean absolute error in dollars (least
// squares in log space weighs a $5 item's 20% miss like a $500 item's, while MAE does not), or
// the squared error of log prices.
enum class StackObjective { DollarMae, LogSquares };
StackObjective parse_stack_objective(const std::string& s);  // "mae" | "log-ls"
const char* stack_objective_name(StackObjective o);

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

class LinearStacker : public Stacker {
 public:
  LinearStacker(StackObjective objective, double ridge) : objective_(objective), ridge_(ridge) {}
  std::string name() const override { return "linear"; }
  bool reads_everything() const override { return false; }
  void fit(const StackTable& t, const std::vector<double>& log_prices) override;
  std::vector<double> predict(const StackTable& t) const override;
  // objective, weights by column, intercept and the formula.
  nlohmann::json describe() const override;
  nlohmann::json save(const std::filesystem::path& dir) const override;
  static std::unique_ptr<LinearStacker> load(const nlohmann::json& state);

 private:
  StackObjective objective_;
  double ridge_;
  std::vector<std::string> names_;
  std::size_t members_ = 0;
  StackWeights weights_;
};

struct TreeStackerOptions {
  int rounds = 300;
  int depth = 3;
  double eta = 0.05;
  double min_child_weight = 20;  // items per leaf, at least (one per item for either loss)
  // What the trees minimise in log price: "squared" error (the conditional mean), or "absolute"
  // error (the conditional median: in dollars too, since exp is monotone, what MAE rewards).
  std::string loss = "squared";
  uint64_t seed = 42;
  int threads = 0;  // 0: the project-wide setting (pricer::threads())
};

// Available when libxgboost was found (PRICER_HAVE_XGBOOST); these throw otherwise.
std::unique_ptr<Stacker> make_tree_stacker(const TreeStackerOptions& opt);
std::unique_ptr<Stacker> load_tree_stacker(const nlohmann::json& state, const std::filesystem::path& dir);

}  // namespace pricer::eval
