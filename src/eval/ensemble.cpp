#include "eval/ensemble.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>
#include <sstream>

#include "core/error.h"
#include "data/text.h"
#include "eval/features.h"
#include "eval/item.h"

namespace pricer::eval {

namespace {

uint64_t item_key(const Item& it) { return data::hash64(it.title + '\x1f' + it.text + '\x1f' + it.prompt); }

// Prices below a cent carry no log-price information a member could mean; they clamp there.
double log_price(double p, const std::string& member) {
  require(std::isfinite(p), "ensemble: member \"" + member + "\" returned a non-finite price");
  return std::log(std::max(p, 0.01));
}

std::vector<double> log_prices(const std::vector<double>& prices, const std::string& member) {
  std::vector<double> out;
  out.reserve(prices.size());
  for (double p : prices) out.push_back(log_price(p, member));
  return out;
}

std::vector<Item> pick(const std::vector<Item>& items, const std::vector<size_t>& idx) {
  std::vector<Item> out;
  out.reserve(idx.size());
  for (size_t i : idx) out.push_back(items[i]);
  return out;
}

double mae_of(const std::vector<double>& pred, const std::vector<Item>& items) {
  double s = 0;
  for (size_t i = 0; i < items.size(); ++i) s += std::abs(pred[i] - items[i].price);
  return s / static_cast<double>(std::max<size_t>(1, items.size()));
}

}  // namespace

StackWeights fit_stack_weights(const std::vector<std::vector<double>>& x, const std::vector<double>& y, double ridge,
                               size_t nonneg) {
  const size_t k = x.size(), n = y.size();
  require(k > 0 && n > 0, "ensemble: nothing to fit the weights on");
  for (const auto& col : x) require(col.size() == n, "ensemble: member predictions and prices differ in count");
  // Centring removes the free intercept from the problem: b = mean(y) - sum_j w_j mean(x_j).
  const double y_mean = std::accumulate(y.begin(), y.end(), 0.0) / static_cast<double>(n);
  std::vector<double> x_mean(k);
  for (size_t j = 0; j < k; ++j) x_mean[j] = std::accumulate(x[j].begin(), x[j].end(), 0.0) / static_cast<double>(n);
  // Gram matrix and right-hand side of the centred normal equations.
  std::vector<double> g(k * k, 0.0), r(k, 0.0);
  for (size_t a = 0; a < k; ++a) {
    for (size_t i = 0; i < n; ++i) r[a] += (x[a][i] - x_mean[a]) * (y[i] - y_mean);
    for (size_t b = a; b < k; ++b) {
      double s = 0;
      for (size_t i = 0; i < n; ++i) s += (x[a][i] - x_mean[a]) * (x[b][i] - x_mean[b]);
      g[a * k + b] = g[b * k + a] = s;
    }
  }
  for (size_t a = 0; a < k; ++a) g[a * k + a] += ridge * static_cast<double>(n);
  // Cyclic coordinate descent, projecting the first `nonneg` weights on w >= 0: each step
  // minimises exactly along one weight, so the objective never rises; a handful of columns
  // converge in a few sweeps.
  StackWeights sw;
  sw.weights.assign(k, 0.0);
  for (int sweep = 0; sweep < 10000; ++sweep) {
    double moved = 0;
    for (size_t a = 0; a < k; ++a) {
      if (g[a * k + a] <= 0) continue;  // a constant member: nothing to weigh
      double grad = r[a];
      for (size_t b = 0; b < k; ++b)
        if (b != a) grad -= g[a * k + b] * sw.weights[b];
      const double w = a < nonneg ? std::max(0.0, grad / g[a * k + a]) : grad / g[a * k + a];
      moved = std::max(moved, std::abs(w - sw.weights[a]));
      sw.weights[a] = w;
    }
    if (moved < 1e-12) break;
  }
  sw.intercept = y_mean;
  for (size_t j = 0; j < k; ++j) sw.intercept -= sw.weights[j] * x_mean[j];
  return sw;
}

StackObjective parse_stack_objective(const std::string& s) {
  if (s == "mae") return StackObjective::DollarMae;
  if (s == "log-ls") return StackObjective::LogSquares;
  throw Error("--param ensemble_objective=" + s + ": mae or log-ls");
}

const char* stack_objective_name(StackObjective o) { return o == StackObjective::DollarMae ? "mae" : "log-ls"; }

double stack_dollar_mae(const std::vector<std::vector<double>>& x, const std::vector<double>& y,
                        const StackWeights& w) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    double z = w.intercept;
    for (size_t j = 0; j < x.size(); ++j) z += w.weights[j] * x[j][i];
    s += std::abs(std::exp(z) - std::exp(y[i]));
  }
  return s / static_cast<double>(std::max<size_t>(1, y.size()));
}

StackWeights refine_stack_weights_for_mae(const std::vector<std::vector<double>>& x, const std::vector<double>& y,
                                          StackWeights start, size_t nonneg) {
  StackWeights best = std::move(start);
  double best_mae = stack_dollar_mae(x, y, best);
  const size_t k = best.weights.size();
  // Coordinates 0..k-1 are the weights, k the intercept; the step halves when no move helps.
  // Every accepted move lowers the MAE; the sweep cap bounds the search on any input.
  int sweeps = 0;
  for (double step = 0.05; step > 1e-4 && sweeps < 100000; ++sweeps) {
    bool improved = false;
    for (size_t c = 0; c <= k; ++c) {
      for (double dir : {step, -step}) {
        StackWeights t = best;
        double& v = c < k ? t.weights[c] : t.intercept;
        v += dir;
        if (c < std::min(k, nonneg) && v < 0) continue;
        const double m = stack_dollar_mae(x, y, t);
        if (m < best_mae) {
          best = std::move(t);
          best_mae = m;
          improved = true;
        }
      }
    }
    if (!improved) step /= 2;
  }
  return best;
}

EnsemblePricer::EnsemblePricer(std::vector<EnsembleMember> members, EnsembleOptions opt)
    : members_(std::move(members)), opt_(std::move(opt)) {
  require(!members_.empty(), "ensemble: no members");
  require(opt_.folds >= 2, "ensemble: cross-fitting needs at least 2 folds");
  // The final members, built once here: a bad name or a missing setting fails before any fitting,
  // and a member that loads a model loads it once.
  for (const auto& m : members_) fitted_.push_back(m.make());
}

std::vector<std::vector<double>> EnsemblePricer::stack_columns(const std::vector<Item>& items) {
  std::vector<std::vector<double>> x;
  for (size_t j = 0; j < fitted_.size(); ++j) {
    const std::vector<double> p = fitted_[j]->predict(items);
    require(p.size() == items.size(), "ensemble: member \"" + members_[j].name + "\" returned the wrong count");
    x.push_back(log_prices(p, members_[j].name));
  }
  add_spec_columns(items, x);
  return x;
}

void EnsemblePricer::add_spec_columns(const std::vector<Item>& items, std::vector<std::vector<double>>& x) const {
  if (!opt_.spec_quantities) return;
  const size_t first = x.size();
  x.resize(first + spec_quantity_names().size(), std::vector<double>(items.size()));
  for (size_t i = 0; i < items.size(); ++i) {
    const std::vector<double> s = spec_quantities(items[i].text);
    for (size_t c = 0; c < s.size(); ++c) x[first + c][i] = s[c];
  }
}

void EnsemblePricer::fit(const std::vector<Item>& train) {
  stats_ = nlohmann::json::object();
  bool trained_elsewhere = false;
  for (auto& m : fitted_) {
    if (m->needs_training()) m->fit(train);
    else trained_elsewhere = true;
  }
  std::vector<std::vector<double>> x;
  const std::vector<Item>* fit_items = &train;
  if (trained_elsewhere) {
    require(!opt_.holdout.empty(),
            "ensemble: a member was trained outside this evaluation, on the training split, so its "
            "prices there are not what it does on new items: give --param ensemble_fit=PATH with "
            "held-out items it did not train on");
    fit_items = &opt_.holdout;
    x = stack_columns(opt_.holdout);
    stats_["fit"] = "held-out items";
    stats_["fit_source"] = opt_.holdout_source;
  } else {
    require(train.size() >= static_cast<size_t>(opt_.folds) * 2, "ensemble: too few training items to cross-fit");
    // Out-of-fold predictions: fold f is priced by members fitted on the other folds.
    std::vector<size_t> order(train.size());
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937_64(opt_.seed));
    x.assign(members_.size(), std::vector<double>(train.size()));
    for (int f = 0; f < opt_.folds; ++f) {
      std::vector<size_t> in, out;
      for (size_t i = 0; i < order.size(); ++i) (static_cast<int>(i % opt_.folds) == f ? out : in).push_back(order[i]);
      const std::vector<Item> fold_train = pick(train, in), fold_out = pick(train, out);
      for (size_t j = 0; j < members_.size(); ++j) {
        auto m = members_[j].make();
        m->fit(fold_train);
        const std::vector<double> p = m->predict(fold_out);
        require(p.size() == out.size(), "ensemble: member \"" + members_[j].name + "\" returned the wrong count");
        for (size_t i = 0; i < out.size(); ++i) x[j][out[i]] = log_price(p[i], members_[j].name);
      }
    }
    add_spec_columns(train, x);
    stats_["fit"] = "cross-fitted on the training split";
    stats_["folds"] = opt_.folds;
  }
  std::vector<double> y;
  fit_items_.clear();
  for (const auto& it : *fit_items) {
    y.push_back(log_price(it.price, "truth"));
    fit_items_.insert(item_key(it));
  }
  weights_ = fit_stack_weights(x, y, opt_.ridge, members_.size());
  if (opt_.objective == StackObjective::DollarMae)
    weights_ = refine_stack_weights_for_mae(x, y, weights_, members_.size());
  stats_["objective"] = stack_objective_name(opt_.objective);
  std::vector<double> fit_pred(y.size(), weights_.intercept);
  for (size_t j = 0; j < x.size(); ++j)
    for (size_t i = 0; i < y.size(); ++i) fit_pred[i] += weights_.weights[j] * x[j][i];
  for (double& p : fit_pred) p = std::exp(p);
  stats_["fit_items"] = fit_items->size();
  stats_["fit_mae"] = mae_of(fit_pred, *fit_items);
  describe_weights();
}

// Weights per column (members by name, spec quantities as spec:NAME), intercept and the formula.
void EnsemblePricer::describe_weights() {
  std::vector<std::string> columns;
  for (const auto& m : members_) columns.push_back(m.name);
  if (opt_.spec_quantities)
    for (const auto& n : spec_quantity_names()) columns.push_back("spec:" + n);
  nlohmann::json w = nlohmann::json::object();
  std::ostringstream formula;
  formula << "exp(" << weights_.intercept;
  for (size_t j = 0; j < columns.size(); ++j) {
    w[columns[j]] = weights_.weights[j];
    formula << " + " << weights_.weights[j] << (j < members_.size() ? " log " : " ") << columns[j];
  }
  formula << ")";
  stats_["weights"] = w;
  stats_["intercept"] = weights_.intercept;
  stats_["formula"] = formula.str();
}

std::vector<double> EnsemblePricer::predict(const std::vector<Item>& items) {
  require(!fit_items_.empty(), "ensemble: predict before fit");
  size_t seen = 0;
  for (const auto& it : items) seen += fit_items_.contains(item_key(it));
  // A few items shared by two splits are the data's; most of them means the scored split is the
  // one the weights were fitted on.
  require(2 * seen <= items.size(), "ensemble: " + std::to_string(seen) + " of the " + std::to_string(items.size()) +
                                        " items to price are items its weights were fitted on");
  stats_["scored_items_in_fit"] = seen;
  const auto x = stack_columns(items);
  std::vector<double> out(items.size(), weights_.intercept);
  for (size_t j = 0; j < x.size(); ++j)
    for (size_t i = 0; i < items.size(); ++i) out[i] += weights_.weights[j] * x[j][i];
  for (double& p : out) p = std::exp(p);
  return out;
}

nlohmann::json EnsemblePricer::stats() const { return stats_; }

}  // namespace pricer::eval

namespace pricer::eval {

namespace {

std::vector<std::string> default_members(const PricerContext& ctx) {
  std::vector<std::string> names = {"tfidf"};
  if (pricer_factories().contains("xgboost")) names.push_back("xgboost");
  if (!ctx.param("adapter").empty() || !ctx.param("finetuned_model").empty()) {
    names.push_back("finetuned");
    names.push_back("finetuned-expected");
  }
  return names;
}

}  // namespace

std::unique_ptr<Pricer> make_ensemble_pricer(const PricerContext& ctx) {
  std::vector<std::string> names = ctx.list_param("ensemble");
  if (names.empty()) names = default_members(ctx);
  std::vector<EnsembleMember> members;
  for (const auto& n : names) {
    require(n != "ensemble", "ensemble: an ensemble cannot be its own member");
    members.push_back({n, [n, ctx] { return make_pricer(n, ctx); }});
  }
  EnsembleOptions o;
  o.seed = ctx.seed;
  const double folds = ctx.number_param("ensemble_folds", 5);
  require(folds == std::floor(folds) && folds >= 2 && folds <= 100,
          "--param ensemble_folds=" + ctx.param("ensemble_folds") + ": a whole number of folds, 2 to 100");
  o.folds = static_cast<int>(folds);
  o.objective = parse_stack_objective(ctx.param("ensemble_objective", "mae"));
  const std::string spec = ctx.param("ensemble_spec", "1");
  require(spec == "0" || spec == "1", "--param ensemble_spec=" + spec + ": 1 (the spec quantities as columns) or 0");
  o.spec_quantities = spec == "1";
  if (const std::string fit = ctx.param("ensemble_fit"); !fit.empty()) {
    const std::string split = ctx.param("ensemble_fit_split", "test");
    o.holdout = read_split(fit, split);
    require(!o.holdout.empty(), fit + ": no held-out items for the ensemble's weights");
    o.holdout_source = std::filesystem::is_directory(fit) ? fit + " (" + split + ")" : fit;
  }
  return std::make_unique<EnsemblePricer>(std::move(members), std::move(o));
}

}  // namespace pricer::eval
