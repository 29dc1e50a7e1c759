#pragma once
// Accuracy metrics of one pricer over one item set. Errors are in dollars: err = pred - truth.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace pricer::eval {

// Hit-rate buckets: green when |err| < $40 or < 20% of the truth, orange when < $80 or < 40%,
// red otherwise.
enum class Bucket { green, orange, red };
Bucket bucket(double truth, double pred);
const char* bucket_name(Bucket b);

struct Interval {
  double lo = 0.0;
  double hi = 0.0;
};

// Percentile bootstrap interval of the mean of `values`: `resamples` resamples with replacement
// drawn from a splitmix64 stream seeded with `seed` (same inputs, same interval on every
// platform). level is the coverage, e.g. 0.95.
Interval bootstrap_mean_ci(const std::vector<double>& values, int resamples, uint64_t seed, double level = 0.95);

// Normal-approximation interval of the mean: mean ± z·sd/√n with the sample sd (n-1).
Interval normal_mean_ci(const std::vector<double>& values, double z = 1.959963984540054);

struct CategoryStat {
  std::size_t n = 0;
  double mae = 0.0;
};

struct MetricOptions {
  int bootstrap_resamples = 1000;
  uint64_t bootstrap_seed = 42;
};

struct Metrics {
  std::size_t n = 0;
  double mae = 0.0;
  Interval mae_ci_bootstrap;  // 95% percentile bootstrap
  Interval mae_ci_normal;  // 95% normal approximation
  double mse = 0.0;
  double rmse = 0.0;
  double rmsle = 0.0;  // sqrt(mean((log1p(max(pred,0)) - log1p(truth))^2))
  double r2 = 0.0;  // 1 - SS_res/SS_tot; NaN when every truth is equal
  std::size_t green = 0, orange = 0, red = 0;
  std::map<std::string, CategoryStat> per_category;  // key "" = items without a category
};

// Share of items whose error is green (under $40 or 20% of the price).
inline double hit_rate(const Metrics& m) { return static_cast<double>(m.green) / static_cast<double>(m.n); }
// How an item's category is shown: "(none)" for the items without one.
inline std::string category_label(const std::string& c) { return c.empty() ? "(none)" : c; }

// truth, pred and categories must have the same, non-zero length.
Metrics compute_metrics(const std::vector<double>& truth, const std::vector<double>& pred,
                        const std::vector<std::string>& categories, const MetricOptions& opt = {});

// Mean absolute error of the first k items for k = 1..n, with a 95% normal-approximation band
// (1.96 · sd of the first k errors / √k, floored at 0; zero width at k = 1). Shows how the
// estimate settles.
struct RunningPoint {
  double mean = 0.0;
  double lo = 0.0;
  double hi = 0.0;
};
std::vector<RunningPoint> running_mae(const std::vector<double>& truth, const std::vector<double>& pred);

}  // namespace pricer::eval
