#pragma once
// libxgboost's C API as owned handles, for the pricers that train boosted trees (the xgboost
// baseline, the ensemble's tree stacker). Empty unless libxgboost was found (PRICER_HAVE_XGBOOST).
#ifdef PRICER_HAVE_XGBOOST
#include <xgboost/c_api.h>

#include <cstddef>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace pricer::eval::xgb {

// Throws Error("xgboost: WHAT: <libxgboost's message>") when rc is not 0.
void check(int rc, const char* what);

// A row-major float matrix; NaN marks a missing value.
class DMatrix {
 public:
  DMatrix(const std::vector<float>& data, std::size_t rows, std::size_t cols);
  ~DMatrix();
  DMatrix(const DMatrix&) = delete;
  DMatrix& operator=(const DMatrix&) = delete;
  DMatrixHandle get() const { return h_; }
  void set_labels(const std::vector<float>& labels);
  // Each row's starting prediction, which the trees then correct (predictions include it).
  void set_base_margin(const std::vector<float>& margin);

 private:
  DMatrixHandle h_ = nullptr;
};

// A booster trained on one matrix: `params` as XGBoosterSetParam takes them, then `rounds`
// boosting rounds.
class Booster {
 public:
  Booster(const DMatrix& train, const std::vector<std::pair<std::string, std::string>>& params, int rounds);
  // A booster saved by to_bytes() (libxgboost's UBJSON model), predicting with `threads` threads.
  Booster(const std::string& bytes, int threads);
  ~Booster();
  Booster(const Booster&) = delete;
  Booster& operator=(const Booster&) = delete;
  // One value per row of `m`.
  std::vector<float> predict(const DMatrix& m, std::size_t rows) const;
  // Total gain of the splits on each column (0 for a column no split uses), in column order.
  std::vector<double> total_gain(std::size_t cols) const;
  std::string to_bytes() const;

 private:
  BoosterHandle h_ = nullptr;
};

// Writes `b` to `path` (atomically) and returns what to keep beside it: the file's size and hash.
nlohmann::json save_booster(const Booster& b, const std::filesystem::path& path);
// The booster save_booster wrote to `path`, checked against its size and hash before libxgboost
// parses it: a damaged file is an error naming it.
std::unique_ptr<Booster> load_booster(const std::filesystem::path& path, const nlohmann::json& saved, int threads);

}  // namespace pricer::eval::xgb
#endif
