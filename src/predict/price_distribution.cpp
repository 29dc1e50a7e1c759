#include "predict/price_distribution.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "tokenizer/number_tokens.h"

namespace pricer {

PriceMode price_mode_from_name(const std::string& name) {
  if (name == "median") return PriceMode::Median;
  if (name == "expected") return PriceMode::Expected;
  if (name == "top3") return PriceMode::Top3;
  if (name == "greedy") return PriceMode::Greedy;
  throw Error("unknown price mode '" + name + "' (median, expected, top3 or greedy)");
}

const char* price_mode_name(PriceMode mode) {
  switch (mode) {
    case PriceMode::Median: return "median";
    case PriceMode::Expected: return "expected";
    case PriceMode::Top3: return "top3";
    case PriceMode::Greedy: return "greedy";
  }
  return "median";
}

const char* price_mode_description(PriceMode mode) {
  switch (mode) {
    case PriceMode::Median: return "median of the price distribution";
    case PriceMode::Expected: return "expected value of the price distribution";
    case PriceMode::Top3: return "mean of the three likeliest prices";
    case PriceMode::Greedy: return "greedy completion";
  }
  return "";
}

double read_price(const PriceEstimate& e, PriceMode mode) {
  if (mode == PriceMode::Median && e.number_mass > 0) return e.median;
  if (mode == PriceMode::Top3 && !e.top.empty()) {
    double num = 0, den = 0;
    for (size_t i = 0; i < std::min<size_t>(3, e.top.size()); ++i) {
      num += e.top[i].prob * e.top[i].value;
      den += e.top[i].prob;
    }
    if (den > 0) return num / den;
  }
  return e.expected;
}

PriceDistribution::PriceDistribution(const Tokenizer& tok) {
  NumberTokens numbers = number_tokens(tok);
  ids_ = std::move(numbers.ids);
  values_ = std::move(numbers.values);
  by_value_.resize(ids_.size());
  std::iota(by_value_.begin(), by_value_.end(), 0);
  std::stable_sort(by_value_.begin(), by_value_.end(), [&](size_t a, size_t b) { return values_[a] < values_[b]; });
}

std::vector<double> PriceDistribution::number_probs(const float* logits, int64_t vocab, double* mass) const {
  require(ids_.back() < vocab,  // ids_ ascend
          "number token id beyond the logits' vocabulary (" + std::to_string(vocab) + ")");
  // Softmax over the whole vocabulary for the number mass; then renormalise over numbers.
  float mx = -INFINITY;
  for (int64_t i = 0; i < vocab; ++i) mx = std::max(mx, logits[i]);
  double z = 0;
  for (int64_t i = 0; i < vocab; ++i) z += std::exp(static_cast<double>(logits[i] - mx));
  std::vector<double> p(ids_.size());
  double m = 0;
  for (size_t i = 0; i < ids_.size(); ++i) {
    p[i] = std::exp(static_cast<double>(logits[ids_[i]] - mx)) / z;
    m += p[i];
  }
  if (mass) *mass = m;
  if (m > 0) {
    for (double& x : p) x /= m;
  }
  return p;
}

std::pair<double, double> PriceDistribution::interval(const std::vector<double>& probs, double coverage) const {
  require(probs.size() == ids_.size(), "price interval: distribution has the wrong size");
  require(coverage > 0 && coverage < 1, "price interval: coverage must be in (0, 1)");
  const double q_lo = (1.0 - coverage) / 2.0, q_hi = 1.0 - q_lo;
  double cum = 0;
  bool have_lo = false;
  std::pair<double, double> r{values_[by_value_.front()], values_[by_value_.back()]};
  for (size_t k : by_value_) {
    cum += probs[k];
    if (!have_lo && cum >= q_lo) {
      r.first = values_[k];
      have_lo = true;
    }
    if (cum >= q_hi) {
      r.second = values_[k];
      break;
    }
  }
  return r;
}

PriceEstimate PriceDistribution::estimate(const float* logits, int64_t vocab, double coverage, int top_k) const {
  PriceEstimate e;
  const std::vector<double> p = number_probs(logits, vocab, &e.number_mass);
  if (e.number_mass <= 0) return e;
  size_t best = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    e.expected += p[i] * values_[i];
    if (p[i] > p[best]) best = i;
  }
  e.greedy = values_[best];
  std::tie(e.lo, e.hi) = interval(p, coverage);
  double cum = 0;
  for (size_t k : by_value_) {
    cum += p[k];
    if (cum >= 0.5) {
      e.median = values_[k];
      break;
    }
  }
  std::vector<size_t> by_p(p.size());
  std::iota(by_p.begin(), by_p.end(), 0);
  const size_t k = std::min<size_t>(static_cast<size_t>(std::max(top_k, 0)), by_p.size());
  std::partial_sort(by_p.begin(), by_p.begin() + static_cast<std::ptrdiff_t>(k), by_p.end(),
                    [&](size_t a, size_t b) { return p[a] > p[b]; });
  for (size_t i = 0; i < k; ++i) e.top.push_back({ids_[by_p[i]], values_[by_p[i]], p[by_p[i]]});
  return e;
}

}  // namespace pricer
