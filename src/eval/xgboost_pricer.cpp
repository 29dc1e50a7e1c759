#include "eval/xgboost_pricer.h"

#ifdef PRICER_HAVE_XGBOOST
#include <cmath>

#include "core/error.h"
#include "core/threads.h"
#include "eval/baselines.h"
#include "eval/xgboost_handles.h"

namespace pricer::eval {

XgboostPricer::XgboostPricer(XgboostOptions opt) : opt_(opt), tfidf_(TfidfOptions{opt.tfidf_terms, 2, true}) {}

XgboostPricer::~XgboostPricer() = default;

std::vector<float> XgboostPricer::matrix(const std::vector<Item>& items) const {
  std::vector<std::string> docs;
  docs.reserve(items.size());
  for (const auto& it : items) docs.push_back(document_of(it));
  const auto sparse = tfidf_.transform(docs);
  const std::size_t cols = simple_.size() + sparse.cols;
  std::vector<float> data(items.size() * cols, 0.0f);
  for (std::size_t r = 0; r < items.size(); ++r) {
    float* row = data.data() + r * cols;
    const auto f = simple_.row(items[r]);
    for (std::size_t j = 0; j < f.size(); ++j) row[j] = static_cast<float>(f[j]);
    for (std::size_t p = sparse.indptr[r]; p < sparse.indptr[r + 1]; ++p)
      row[simple_.size() + sparse.indices[p]] = sparse.values[p];
  }
  return data;
}

void XgboostPricer::fit(const std::vector<Item>& train) {
  require(!train.empty(), "xgboost: the training split is empty");
  simple_.fit(train);
  std::vector<std::string> docs;
  for (const auto& it : train) docs.push_back(document_of(it));
  tfidf_.fit(docs);
  const std::size_t cols = simple_.size() + tfidf_.vocabulary_size();
  xgb::DMatrix dtrain(matrix(train), train.size(), cols);
  std::vector<float> labels;
  for (const auto& it : train) labels.push_back(static_cast<float>(std::log1p(it.price)));
  dtrain.set_labels(labels);
  booster_.reset();
  booster_ =
      std::make_unique<xgb::Booster>(dtrain,
                                     std::vector<std::pair<std::string, std::string>>{
                                         {"objective", "reg:squarederror"},
                                         {"tree_method", "hist"},
                                         {"max_depth", std::to_string(opt_.max_depth)},
                                         {"eta", std::to_string(opt_.eta)},
                                         {"subsample", std::to_string(opt_.subsample)},
                                         {"seed", std::to_string(opt_.seed)},
                                         {"nthread", std::to_string(opt_.threads > 0 ? opt_.threads : threads())},
                                         {"verbosity", "0"},
                                     },
                                     opt_.rounds);
}

std::vector<double> XgboostPricer::predict(const std::vector<Item>& items) {
  require(booster_ != nullptr, "xgboost: predict before fit");
  if (items.empty()) return {};
  const std::size_t cols = simple_.size() + tfidf_.vocabulary_size();
  const xgb::DMatrix d(matrix(items), items.size(), cols);
  const std::vector<float> out = booster_->predict(d, items.size());
  std::vector<double> prices(items.size());
  for (std::size_t i = 0; i < prices.size(); ++i) prices[i] = std::max(std::expm1(double(out[i])), 0.0);
  return prices;
}

nlohmann::json XgboostPricer::stats() const {
  return {{"rounds", opt_.rounds},
          {"max_depth", opt_.max_depth},
          {"eta", opt_.eta},
          {"subsample", opt_.subsample},
          {"tfidf_terms", tfidf_.vocabulary_size()},
          {"features", simple_.size() + tfidf_.vocabulary_size()}};
}

nlohmann::json XgboostPricer::save(const std::filesystem::path& dir) const {
  require(booster_ != nullptr, "xgboost: save before fit");
  return {{"rounds", opt_.rounds},
          {"max_depth", opt_.max_depth},
          {"eta", opt_.eta},
          {"subsample", opt_.subsample},
          {"seed", opt_.seed},
          {"categories", simple_.categories()},
          {"tfidf", tfidf_to_json(tfidf_, TfidfOptions{opt_.tfidf_terms, 2, true})},
          {"booster", xgb::save_booster(*booster_, dir / "booster.ubj")}};
}

std::unique_ptr<Pricer> XgboostPricer::load(const nlohmann::json& state, const std::filesystem::path& dir) {
  XgboostOptions o;
  o.rounds = state.at("rounds").get<int>();
  o.max_depth = state.at("max_depth").get<int>();
  o.eta = state.at("eta").get<double>();
  o.subsample = state.at("subsample").get<double>();
  o.seed = state.at("seed").get<uint64_t>();
  o.tfidf_terms = state.at("tfidf").at("max_features").get<std::size_t>();
  auto p = std::make_unique<XgboostPricer>(o);
  p->simple_ = SimpleFeatures(state.at("categories").get<std::vector<std::string>>());
  p->tfidf_ = tfidf_from_json(state.at("tfidf"));
  p->booster_ = xgb::load_booster(dir / "booster.ubj", state.at("booster"), threads());
  return p;
}

}  // namespace pricer::eval
#endif
