#pragma once
// Gradient-boosted trees (libxgboost) on text features: the SimpleFeatures plus the TF-IDF
// weights of the most frequent terms, fit to log1p(price). Only built when libxgboost is found
// (PRICER_HAVE_XGBOOST); the registry then offers "xgboost".
#include <filesystem>
#include <memory>

#include "eval/features.h"
#include "eval/pricer.h"

namespace pricer::eval {

namespace xgb {
class Booster;
}

struct XgboostOptions {
  int rounds = 200;
  int max_depth = 6;
  double eta = 0.1;
  double subsample = 0.8;
  std::size_t tfidf_terms = 300;
  uint64_t seed = 42;
  int threads = 0;  // 0: the project-wide setting (pricer::threads())
};

#ifdef PRICER_HAVE_XGBOOST
class XgboostPricer : public Pricer {
 public:
  explicit XgboostPricer(XgboostOptions opt = {});
  ~XgboostPricer() override;
  std::string name() const override { return "xgboost"; }
  bool needs_training() const override { return true; }
  void fit(const std::vector<Item>& train) override;
  std::vector<double> predict(const std::vector<Item>& items) override;
  nlohmann::json stats() const override;
  nlohmann::json save(const std::filesystem::path& dir) const override;
  static std::unique_ptr<Pricer> load(const nlohmann::json& state, const std::filesystem::path& dir);

 private:
  std::vector<float> matrix(const std::vector<Item>& items) const;
  XgboostOptions opt_;
  SimpleFeatures simple_;
  TfidfVectorizer tfidf_;
  std::unique_ptr<xgb::Booster> booster_;  // forward-declared: xgboost's header stays out of ours
};
#endif

}  // namespace pricer::eval
