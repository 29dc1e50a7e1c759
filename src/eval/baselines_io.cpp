// The classic baselines saved and loaded (for a saved ensemble): their fitted state as JSON, the
// comparables index as its own GGUF file. Loading checks that the parts fit together, so a
// damaged file is an error naming the directory rather than a read out of bounds.
#include <cmath>

#include "core/error.h"
#include "eval/baselines.h"

namespace pricer::eval {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void require_sizes(bool ok, const fs::path& dir, const std::string& what) {
  require(ok, dir.string() + ": the saved " + what + " do not fit together");
}

}  // namespace

json RandomPricer::save(const fs::path&) const { return {{"seed", seed_}, {"lo", lo_}, {"hi", hi_}}; }

std::unique_ptr<Pricer> RandomPricer::load(const json& state, const fs::path&) {
  auto p = std::make_unique<RandomPricer>(state.at("seed").get<uint64_t>());
  p->lo_ = state.at("lo").get<double>();
  p->hi_ = state.at("hi").get<double>();
  return p;
}

json MeanPricer::save(const fs::path&) const { return {{"mean", mean_}}; }

std::unique_ptr<Pricer> MeanPricer::load(const json& state, const fs::path&) {
  auto p = std::make_unique<MeanPricer>();
  p->mean_ = state.at("mean").get<double>();
  return p;
}

json LinearPricer::save(const fs::path&) const {
  return {{"categories", features_.categories()},
          {"mean", mean_},
          {"scale", scale_},
          {"weights", weights_},
          {"intercept", intercept_}};
}

std::unique_ptr<Pricer> LinearPricer::load(const json& state, const fs::path& dir) {
  auto p = std::make_unique<LinearPricer>();
  p->features_ = SimpleFeatures(state.at("categories").get<std::vector<std::string>>());
  p->mean_ = state.at("mean").get<std::vector<double>>();
  p->scale_ = state.at("scale").get<std::vector<double>>();
  p->weights_ = state.at("weights").get<std::vector<double>>();
  p->intercept_ = state.at("intercept").get<double>();
  const std::size_t d = p->features_.size();
  require_sizes(p->mean_.size() == d && p->scale_.size() == d && p->weights_.size() == d, dir,
                "linear features, means, scales and weights");
  return p;
}

json TfidfRidgePricer::save(const fs::path&) const {
  return {{"alpha", opt_.alpha},
          {"tfidf", tfidf_to_json(vectorizer_, opt_.tfidf)},
          {"weights", model_.weights},
          {"intercept", model_.intercept}};
}

std::unique_ptr<Pricer> TfidfRidgePricer::load(const json& state, const fs::path& dir) {
  auto p = std::make_unique<TfidfRidgePricer>();
  p->opt_.alpha = state.at("alpha").get<double>();
  p->vectorizer_ = tfidf_from_json(state.at("tfidf"));
  p->model_.weights = state.at("weights").get<std::vector<double>>();
  p->model_.intercept = state.at("intercept").get<double>();
  require_sizes(p->model_.weights.size() == p->vectorizer_.vocabulary_size(), dir, "TF-IDF vocabulary and weights");
  return p;
}

json ComparablesPricer::save(const fs::path& dir) const {
  require(index_ != nullptr, "comparables: save before fit");
  index_->save((dir / "comparables.gguf").string());
  return {{"k", k_}, {"fallback_price", fallback_}};
}

std::unique_ptr<Pricer> ComparablesPricer::load(const json& state, const fs::path& dir) {
  auto p = std::make_unique<ComparablesPricer>(state.at("k").get<int>());
  p->index_ = std::make_unique<retrieval::ComparablesIndex>(
      retrieval::ComparablesIndex::load((dir / "comparables.gguf").string()));
  p->fallback_ = state.at("fallback_price").get<double>();
  require_sizes(p->index_->k() == p->k_ && std::isfinite(p->fallback_), dir, "comparables index and settings");
  return p;
}

}  // namespace pricer::eval
