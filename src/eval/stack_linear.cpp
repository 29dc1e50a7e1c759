#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "eval/stacker.h"

namespace pricer::eval {

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

void LinearStacker::fit(const StackTable& t, const std::vector<double>& log_prices) {
  names_ = t.names;
  members_ = t.members;
  weights_ = fit_stack_weights(t.columns, log_prices, ridge_, members_);
  if (objective_ == StackObjective::DollarMae)
    weights_ = refine_stack_weights_for_mae(t.columns, log_prices, weights_, members_);
}

std::vector<double> LinearStacker::predict(const StackTable& t) const {
  require(t.names == names_, "ensemble: the linear stack is asked for other columns than it was fitted on");
  std::vector<double> out(t.rows(), weights_.intercept);
  for (std::size_t j = 0; j < t.columns.size(); ++j)
    for (std::size_t i = 0; i < out.size(); ++i) out[i] += weights_.weights[j] * t.columns[j][i];
  return out;
}

// Weights per column (members by name, spec quantities as spec:NAME), intercept and the formula.
nlohmann::json LinearStacker::describe() const {
  nlohmann::json w = nlohmann::json::object();
  std::ostringstream formula;
  formula << "exp(" << weights_.intercept;
  for (std::size_t j = 0; j < names_.size(); ++j) {
    w[names_[j]] = weights_.weights[j];
    formula << " + " << weights_.weights[j] << (j < members_ ? " log " : " ") << names_[j];
  }
  formula << ")";
  return {{"stacker", name()},
          {"objective", stack_objective_name(objective_)},
          {"weights", w},
          {"intercept", weights_.intercept},
          {"formula", formula.str()}};
}

nlohmann::json LinearStacker::save(const std::filesystem::path&) const {
  return {{"stacker", name()},
          {"objective", stack_objective_name(objective_)},
          {"ridge", ridge_},
          {"names", names_},
          {"members", members_},
          {"weights", weights_.weights},
          {"intercept", weights_.intercept}};
}

std::unique_ptr<LinearStacker> LinearStacker::load(const nlohmann::json& state) {
  auto s = std::make_unique<LinearStacker>(parse_stack_objective(state.at("objective").get<std::string>()),
                                           state.at("ridge").get<double>());
  s->names_ = state.at("names").get<std::vector<std::string>>();
  s->members_ = state.at("members").get<std::size_t>();
  s->weights_.weights = state.at("weights").get<std::vector<double>>();
  s->weights_.intercept = state.at("intercept").get<double>();
  require(s->weights_.weights.size() == s->names_.size() && s->members_ <= s->names_.size(),
          "the saved linear stack's weights and columns do not fit together");
  return s;
}

std::unique_ptr<Stacker> load_stacker(const nlohmann::json& state, const std::filesystem::path& dir) {
  const std::string kind = state.at("stacker").get<std::string>();
  if (kind == "linear") return LinearStacker::load(state);
  if (kind == "trees") return load_tree_stacker(state, dir);
  throw Error(dir.string() + ": a saved stacker of unknown kind \"" + kind + "\"");
}

}  // namespace pricer::eval
