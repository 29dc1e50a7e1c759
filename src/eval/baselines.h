#pragma once
// Classic pricers fit on the training split: the bar any model has to clear.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "eval/features.h"
#include "eval/pricer.h"
#include "retrieval/comparables.h"

namespace pricer::eval {

// Uniform in [min, max] of the training prices, from a seeded splitmix64 stream.
class RandomPricer : public Pricer {
 public:
  explicit RandomPricer(uint64_t seed) : seed_(seed) {}
  std::string name() const override { return "random"; }
  bool needs_training() const override { return true; }
  void fit(const std::vector<Item>& train) override;
  std::vector<double> predict(const std::vector<Item>& items) override;
  nlohmann::json save(const std::filesystem::path& dir) const override;
  static std::unique_ptr<Pricer> load(const nlohmann::json& state, const std::filesystem::path& dir);

 private:
  uint64_t seed_;
  double lo_ = 0.0, hi_ = 0.0;
};

// The mean training price for every item.
class MeanPricer : public Pricer {
 public:
  std::string name() const override { return "mean"; }
  bool needs_training() const override { return true; }
  void fit(const std::vector<Item>& train) override;
  std::vector<double> predict(const std::vector<Item>& items) override;
  nlohmann::json save(const std::filesystem::path& dir) const override;
  static std::unique_ptr<Pricer> load(const nlohmann::json& state, const std::filesystem::path& dir);

 private:
  double mean_ = 0.0;
};

// Least squares on SimpleFeatures (standardised, solved by the normal equations with a tiny ridge
// so that collinear one-hot columns stay solvable). Predicts dollars; negatives clamp to 0.
class LinearPricer : public Pricer {
 public:
  std::string name() const override { return "linear"; }
  bool needs_training() const override { return true; }
  void fit(const std::vector<Item>& train) override;
  std::vector<double> predict(const std::vector<Item>& items) override;
  nlohmann::json stats() const override;
  nlohmann::json save(const std::filesystem::path& dir) const override;
  static std::unique_ptr<Pricer> load(const nlohmann::json& state, const std::filesystem::path& dir);

 private:
  SimpleFeatures features_;
  std::vector<double> mean_, scale_, weights_;
  double intercept_ = 0.0;
};

struct TfidfRidgeOptions {
  TfidfOptions tfidf;
  double alpha = 1.0;
};

// Ridge regression of log1p(price) on TF-IDF of title + text; predicts expm1 of the fit.
class TfidfRidgePricer : public Pricer {
 public:
  explicit TfidfRidgePricer(TfidfRidgeOptions opt = {}) : opt_(opt), vectorizer_(opt.tfidf) {}
  std::string name() const override { return "tfidf"; }
  bool needs_training() const override { return true; }
  void fit(const std::vector<Item>& train) override;
  std::vector<double> predict(const std::vector<Item>& items) override;
  nlohmann::json stats() const override;
  nlohmann::json save(const std::filesystem::path& dir) const override;
  static std::unique_ptr<Pricer> load(const nlohmann::json& state, const std::filesystem::path& dir);

 private:
  TfidfRidgeOptions opt_;
  TfidfVectorizer vectorizer_;
  RidgeModel model_;
};

// The median price of the k training items most similar to a product: TF-IDF cosine over the
// prompts, the comparables a model trained with `--comparables` reads; the training median when no
// training item shares a word. What retrieval alone prices at.
class ComparablesPricer : public Pricer {
 public:
  explicit ComparablesPricer(int k = 5) : k_(k) {}
  std::string name() const override { return "comparables"; }
  bool needs_training() const override { return true; }
  void fit(const std::vector<Item>& train) override;
  std::vector<double> predict(const std::vector<Item>& items) override;
  nlohmann::json stats() const override;
  nlohmann::json save(const std::filesystem::path& dir) const override;
  static std::unique_ptr<Pricer> load(const nlohmann::json& state, const std::filesystem::path& dir);

 private:
  int k_;
  std::unique_ptr<retrieval::ComparablesIndex> index_;
  double fallback_ = 0;
  std::size_t without_ = 0;  // items of the last predict() that no training item shares a word with
};

// The text a bag-of-words model reads: the title (when the text does not start with it) and text.
std::string document_of(const Item& item);

}  // namespace pricer::eval
