#include "eval/xgboost_pricer.h"

#ifdef PRICER_HAVE_XGBOOST
#include <xgboost/c_api.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/threads.h"
#include "eval/baselines.h"

namespace pricer::eval {

namespace {

void check(int rc, const char* what) {
  if (rc != 0) throw Error(std::string("xgboost: ") + what + ": " + XGBGetLastError());
}

// Owns a DMatrixHandle for the length of one call.
struct DMatrix {
  DMatrixHandle h = nullptr;
  DMatrix(const std::vector<float>& data, std::size_t rows, std::size_t cols) {
    // NaN marks missing; a zero TF-IDF weight is a real value (term absent).
    check(XGDMatrixCreateFromMat(data.data(), rows, cols, std::numeric_limits<float>::quiet_NaN(), &h),
          "creating the feature matrix");
  }
  ~DMatrix() { XGDMatrixFree(h); }
  DMatrix(const DMatrix&) = delete;
  DMatrix& operator=(const DMatrix&) = delete;
};

}  // namespace

XgboostPricer::XgboostPricer(XgboostOptions opt) : opt_(opt), tfidf_(TfidfOptions{opt.tfidf_terms, 2, true}) {}

XgboostPricer::~XgboostPricer() {
  if (booster_ != nullptr) XGBoosterFree(booster_);
}

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
  DMatrix dtrain(matrix(train), train.size(), cols);
  std::vector<float> labels;
  for (const auto& it : train) labels.push_back(static_cast<float>(std::log1p(it.price)));
  check(XGDMatrixSetFloatInfo(dtrain.h, "label", labels.data(), labels.size()), "setting labels");
  if (booster_ != nullptr) XGBoosterFree(booster_);
  booster_ = nullptr;
  check(XGBoosterCreate(&dtrain.h, 1, &booster_), "creating the booster");
  const std::pair<const char*, std::string> params[] = {
      {"objective", "reg:squarederror"},
      {"tree_method", "hist"},
      {"max_depth", std::to_string(opt_.max_depth)},
      {"eta", std::to_string(opt_.eta)},
      {"subsample", std::to_string(opt_.subsample)},
      {"seed", std::to_string(opt_.seed)},
      {"nthread", std::to_string(opt_.threads > 0 ? opt_.threads : threads())},
      {"verbosity", "0"},
  };
  for (const auto& [k, v] : params) check(XGBoosterSetParam(booster_, k, v.c_str()), k);
  for (int i = 0; i < opt_.rounds; ++i) check(XGBoosterUpdateOneIter(booster_, i, dtrain.h), "training");
}

std::vector<double> XgboostPricer::predict(const std::vector<Item>& items) {
  require(booster_ != nullptr, "xgboost: predict before fit");
  if (items.empty()) return {};
  const std::size_t cols = simple_.size() + tfidf_.vocabulary_size();
  DMatrix d(matrix(items), items.size(), cols);
  bst_ulong len = 0;
  const float* out = nullptr;
  check(XGBoosterPredict(booster_, d.h, 0, 0, 0, &len, &out), "predicting");
  require(len == items.size(),
          "xgboost: predicted " + std::to_string(len) + " values for " + std::to_string(items.size()) + " items");
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

}  // namespace pricer::eval
#endif
