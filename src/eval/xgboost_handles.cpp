#include "eval/xgboost_handles.h"

#ifdef PRICER_HAVE_XGBOOST
#include <limits>

#include "core/atomic_file.h"
#include "core/error.h"
#include "data/text.h"

namespace pricer::eval::xgb {

void check(int rc, const char* what) {
  if (rc != 0) throw Error(std::string("xgboost: ") + what + ": " + XGBGetLastError());
}

DMatrix::DMatrix(const std::vector<float>& data, std::size_t rows, std::size_t cols) {
  require(data.size() == rows * cols, "xgboost: a feature matrix of the wrong size");
  check(XGDMatrixCreateFromMat(data.data(), rows, cols, std::numeric_limits<float>::quiet_NaN(), &h_),
        "creating the feature matrix");
}

DMatrix::~DMatrix() { XGDMatrixFree(h_); }

void DMatrix::set_labels(const std::vector<float>& labels) {
  check(XGDMatrixSetFloatInfo(h_, "label", labels.data(), labels.size()), "setting labels");
}

void DMatrix::set_base_margin(const std::vector<float>& margin) {
  check(XGDMatrixSetFloatInfo(h_, "base_margin", margin.data(), margin.size()), "setting base margins");
}

Booster::Booster(const DMatrix& train, const std::vector<std::pair<std::string, std::string>>& params, int rounds) {
  DMatrixHandle m = train.get();
  check(XGBoosterCreate(&m, 1, &h_), "creating the booster");
  try {
    for (const auto& [k, v] : params) check(XGBoosterSetParam(h_, k.c_str(), v.c_str()), k.c_str());
    for (int i = 0; i < rounds; ++i) check(XGBoosterUpdateOneIter(h_, i, m), "training");
  } catch (...) {
    XGBoosterFree(h_);  // the destructor of a half-built object does not run
    throw;
  }
}

Booster::Booster(const std::string& bytes, int threads) {
  check(XGBoosterCreate(nullptr, 0, &h_), "creating the booster");
  try {
    check(XGBoosterLoadModelFromBuffer(h_, bytes.data(), bytes.size()), "reading a saved model");
    check(XGBoosterSetParam(h_, "nthread", std::to_string(threads).c_str()), "nthread");
  } catch (...) {
    XGBoosterFree(h_);
    throw;
  }
}

std::string Booster::to_bytes() const {
  bst_ulong len = 0;
  const char* data = nullptr;
  check(XGBoosterSaveModelToBuffer(h_, R"({"format": "ubj"})", &len, &data), "saving the model");
  return {data, data + len};
}

Booster::~Booster() { XGBoosterFree(h_); }

std::vector<float> Booster::predict(const DMatrix& m, std::size_t rows) const {
  bst_ulong len = 0;
  const float* out = nullptr;
  check(XGBoosterPredict(h_, m.get(), 0, 0, 0, &len, &out), "predicting");
  require(len == rows, "xgboost: predicted " + std::to_string(len) + " values for " + std::to_string(rows) + " rows");
  return {out, out + len};
}

std::vector<double> Booster::total_gain(std::size_t cols) const {
  bst_ulong n_features = 0, dim = 0;
  const char** names = nullptr;
  const bst_ulong* shape = nullptr;
  const float* scores = nullptr;
  check(XGBoosterFeatureScore(h_, R"({"importance_type": "total_gain"})", &n_features, &names, &dim, &shape, &scores),
        "reading feature importances");
  std::vector<double> gain(cols, 0.0);
  // Without feature names set, libxgboost names column j "fj" and lists only the columns used.
  for (bst_ulong i = 0; i < n_features; ++i) {
    const std::string name = names[i];
    const std::size_t j = name.size() > 1 && name[0] == 'f' ? std::stoul(name.substr(1)) : cols;
    require(j < cols, "xgboost: an importance for an unknown column \"" + name + "\"");
    gain[j] = scores[i];
  }
  return gain;
}

nlohmann::json save_booster(const Booster& b, const std::filesystem::path& path) {
  const std::string bytes = b.to_bytes();
  write_file_atomic(path, bytes);
  return {{"file", path.filename().string()}, {"bytes", bytes.size()}, {"hash", data::hash64(bytes)}};
}

std::unique_ptr<Booster> load_booster(const std::filesystem::path& path, const nlohmann::json& saved, int threads) {
  constexpr std::size_t kMaxModelBytes = std::size_t{1} << 30;
  const std::string bytes = read_file(path, kMaxModelBytes);
  require(
      bytes.size() == saved.at("bytes").get<std::size_t>() && data::hash64(bytes) == saved.at("hash").get<uint64_t>(),
      path.string() + ": not the model that was saved (its size or hash differs: damaged or replaced)");
  return std::make_unique<Booster>(bytes, threads);
}

}  // namespace pricer::eval::xgb
#endif
