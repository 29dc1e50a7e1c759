#include "eval/baselines.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/random.h"

namespace pricer::eval {

namespace {

void require_train(const std::vector<Item>& train, const std::string& who) {
  require(!train.empty(), who + ": the training split is empty");
}

std::vector<std::string> documents(const std::vector<Item>& items) {
  std::vector<std::string> docs;
  docs.reserve(items.size());
  for (const auto& it : items) docs.push_back(document_of(it));
  return docs;
}

}  // namespace

std::string document_of(const Item& item) {
  if (item.title.empty() || item.text.starts_with(item.title)) return item.text;
  return item.title + "\n" + item.text;
}

void RandomPricer::fit(const std::vector<Item>& train) {
  require_train(train, "random");
  auto [lo, hi] =
      std::minmax_element(train.begin(), train.end(), [](const Item& a, const Item& b) { return a.price < b.price; });
  lo_ = lo->price;
  hi_ = hi->price;
}

std::vector<double> RandomPricer::predict(const std::vector<Item>& items) {
  uint64_t state = seed_;
  std::vector<double> out(items.size());
  for (auto& p : out) {
    const double u = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
    p = lo_ + u * (hi_ - lo_);
  }
  return out;
}

void MeanPricer::fit(const std::vector<Item>& train) {
  require_train(train, "mean");
  double s = 0.0;
  for (const auto& it : train) s += it.price;
  mean_ = s / static_cast<double>(train.size());
}

std::vector<double> MeanPricer::predict(const std::vector<Item>& items) {
  return std::vector<double>(items.size(), mean_);
}

void LinearPricer::fit(const std::vector<Item>& train) {
  require_train(train, "linear");
  features_.fit(train);
  const std::size_t d = features_.size();
  const std::size_t n = train.size();
  std::vector<std::vector<double>> rows;
  rows.reserve(n);
  for (const auto& it : train) rows.push_back(features_.row(it));
  mean_.assign(d, 0.0);
  scale_.assign(d, 0.0);
  for (const auto& r : rows)
    for (std::size_t j = 0; j < d; ++j) mean_[j] += r[j];
  for (auto& m : mean_) m /= static_cast<double>(n);
  for (const auto& r : rows)
    for (std::size_t j = 0; j < d; ++j) scale_[j] += (r[j] - mean_[j]) * (r[j] - mean_[j]);
  // A constant column gets scale 1: centred it is all zeros and its weight stays 0.
  for (auto& s : scale_) s = s > 0.0 ? std::sqrt(s / static_cast<double>(n)) : 1.0;
  double ymean = 0.0;
  for (const auto& it : train) ymean += it.price;
  ymean /= static_cast<double>(n);
  std::vector<double> ata(d * d, 0.0), aty(d, 0.0), z(d);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < d; ++j) z[j] = (rows[i][j] - mean_[j]) / scale_[j];
    const double y = train[i].price - ymean;
    for (std::size_t j = 0; j < d; ++j) {
      aty[j] += z[j] * y;
      for (std::size_t k = 0; k <= j; ++k) ata[j * d + k] += z[j] * z[k];
    }
  }
  for (std::size_t j = 0; j < d; ++j) {
    for (std::size_t k = 0; k < j; ++k) ata[k * d + j] = ata[j * d + k];
    ata[j * d + j] += 1e-6 * static_cast<double>(n);
  }
  weights_ = solve_spd(std::move(ata), std::move(aty), d);
  intercept_ = ymean;
}

std::vector<double> LinearPricer::predict(const std::vector<Item>& items) {
  std::vector<double> out;
  out.reserve(items.size());
  for (const auto& it : items) {
    const auto r = features_.row(it);
    double p = intercept_;
    for (std::size_t j = 0; j < r.size(); ++j) p += weights_[j] * (r[j] - mean_[j]) / scale_[j];
    out.push_back(std::max(p, 0.0));
  }
  return out;
}

nlohmann::json LinearPricer::stats() const {
  // Weights in dollars per unit of each raw feature, for reading off what the fit learned.
  nlohmann::json w = nlohmann::json::object();
  const auto names = features_.names();
  for (std::size_t j = 0; j < weights_.size(); ++j) w[names[j]] = weights_[j] / scale_[j];
  return {{"intercept_at_feature_means", intercept_}, {"weights", w}};
}

void TfidfRidgePricer::fit(const std::vector<Item>& train) {
  require_train(train, "tfidf");
  const auto docs = documents(train);
  vectorizer_.fit(docs);
  const auto x = vectorizer_.transform(docs);
  std::vector<double> y;
  y.reserve(train.size());
  for (const auto& it : train) y.push_back(std::log1p(it.price));
  model_ = ridge_cg(x, y, opt_.alpha);
}

std::vector<double> TfidfRidgePricer::predict(const std::vector<Item>& items) {
  const auto x = vectorizer_.transform(documents(items));
  std::vector<double> logp;
  spmv(x, model_.weights, logp);
  for (auto& v : logp) v = std::max(std::expm1(v + model_.intercept), 0.0);
  return logp;
}

nlohmann::json TfidfRidgePricer::stats() const {
  return {{"vocabulary", vectorizer_.vocabulary_size()}, {"alpha", opt_.alpha}, {"cg_iterations", model_.iterations}};
}

namespace {

// What the comparables index reads of an item: its prompt as curated, as an LLM reads it.
std::string retrieval_text(const Item& it) { return it.prompt.empty() ? document_of(it) : it.prompt; }

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

void ComparablesPricer::fit(const std::vector<Item>& train) {
  require_train(train, "comparables");
  std::vector<std::string> docs;
  std::vector<double> prices;
  for (const auto& it : train) {
    if (!(it.price > 0)) continue;  // a free item is no price evidence
    docs.push_back(retrieval_text(it));
    prices.push_back(it.price);
  }
  require(!docs.empty(), "comparables: no training item has a positive price");
  index_ = std::make_unique<retrieval::ComparablesIndex>(docs, prices, k_);
  fallback_ = median_of(prices);
}

std::vector<double> ComparablesPricer::predict(const std::vector<Item>& items) {
  require(index_ != nullptr, "comparables: predict before fit");
  std::vector<double> out(items.size());
  without_ = 0;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto near = index_->nearest(retrieval_text(items[i]));
    std::vector<double> prices;
    for (const auto& c : near) prices.push_back(c.price);
    without_ += prices.empty();
    out[i] = prices.empty() ? fallback_ : median_of(prices);
  }
  return out;
}

nlohmann::json ComparablesPricer::stats() const {
  return {{"k", k_},
          {"indexed", index_ ? index_->size() : 0},
          {"without_comparables", without_},
          {"fallback_price", fallback_}};
}

}  // namespace pricer::eval
