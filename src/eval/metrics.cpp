#include "eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/random.h"

namespace pricer::eval {

namespace {

constexpr double kZ95 = 1.959963984540054;

// Index in [0, n) by multiply-shift; its bias is below 2^-32 for any n we can hold.
std::size_t draw_index(uint64_t& state, std::size_t n) {
  return static_cast<std::size_t>((static_cast<unsigned __int128>(splitmix64(state)) * n) >> 64);
}

double mean_of(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

// Linear interpolation between order statistics (numpy's default percentile method).
double quantile_sorted(const std::vector<double>& sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const auto i = static_cast<std::size_t>(std::floor(pos));
  const std::size_t j = std::min(i + 1, sorted.size() - 1);
  return sorted[i] + (pos - static_cast<double>(i)) * (sorted[j] - sorted[i]);
}

}  // namespace

Bucket bucket(double truth, double pred) {
  const double err = std::fabs(pred - truth);
  if (err < 40.0 || err < 0.2 * truth) return Bucket::green;
  if (err < 80.0 || err < 0.4 * truth) return Bucket::orange;
  return Bucket::red;
}

const char* bucket_name(Bucket b) {
  switch (b) {
    case Bucket::green: return "green";
    case Bucket::orange: return "orange";
    case Bucket::red: return "red";
  }
  return "red";
}

Interval bootstrap_mean_ci(const std::vector<double>& values, int resamples, uint64_t seed, double level) {
  require(!values.empty(), "bootstrap: no values");
  require(resamples > 0, "bootstrap: resamples must be positive");
  require(level > 0.0 && level < 1.0, "bootstrap: level must lie in (0, 1)");
  const std::size_t n = values.size();
  std::vector<double> means(static_cast<std::size_t>(resamples));
  uint64_t state = seed;
  for (auto& m : means) {
    double s = 0.0;
    for (std::size_t i = 0; i < n; ++i) s += values[draw_index(state, n)];
    m = s / static_cast<double>(n);
  }
  std::sort(means.begin(), means.end());
  const double tail = (1.0 - level) / 2.0;
  return {quantile_sorted(means, tail), quantile_sorted(means, 1.0 - tail)};
}

Interval normal_mean_ci(const std::vector<double>& values, double z) {
  require(!values.empty(), "normal interval: no values");
  const double m = mean_of(values);
  if (values.size() < 2) return {m, m};
  double ss = 0.0;
  for (double x : values) ss += (x - m) * (x - m);
  const double se =
      std::sqrt(ss / static_cast<double>(values.size() - 1)) / std::sqrt(static_cast<double>(values.size()));
  return {m - z * se, m + z * se};
}

Metrics compute_metrics(const std::vector<double>& truth, const std::vector<double>& pred,
                        const std::vector<std::string>& categories, const MetricOptions& opt) {
  require(!truth.empty(), "metrics: no items");
  require(truth.size() == pred.size() && truth.size() == categories.size(),
          "metrics: truth, predictions and categories differ in length");
  const std::size_t n = truth.size();
  Metrics m;
  m.n = n;
  std::vector<double> abs_err(n);
  double se = 0.0, sle = 0.0;
  std::map<std::string, double> cat_sum;
  for (std::size_t i = 0; i < n; ++i) {
    const double err = pred[i] - truth[i];
    abs_err[i] = std::fabs(err);
    se += err * err;
    // Negative predictions have no log; they count as a prediction of zero.
    const double le = std::log1p(std::max(pred[i], 0.0)) - std::log1p(truth[i]);
    sle += le * le;
    switch (bucket(truth[i], pred[i])) {
      case Bucket::green: ++m.green; break;
      case Bucket::orange: ++m.orange; break;
      case Bucket::red: ++m.red; break;
    }
    cat_sum[categories[i]] += abs_err[i];
    ++m.per_category[categories[i]].n;
  }
  const double dn = static_cast<double>(n);
  m.mae = mean_of(abs_err);
  m.mse = se / dn;
  m.rmse = std::sqrt(m.mse);
  m.rmsle = std::sqrt(sle / dn);
  const double tmean = mean_of(truth);
  double ss_tot = 0.0;
  for (double t : truth) ss_tot += (t - tmean) * (t - tmean);
  m.r2 = ss_tot > 0.0 ? 1.0 - se / ss_tot : std::numeric_limits<double>::quiet_NaN();
  for (auto& [cat, stat] : m.per_category) stat.mae = cat_sum[cat] / static_cast<double>(stat.n);
  m.mae_ci_bootstrap = bootstrap_mean_ci(abs_err, opt.bootstrap_resamples, opt.bootstrap_seed);
  m.mae_ci_normal = normal_mean_ci(abs_err, kZ95);
  return m;
}

std::vector<RunningPoint> running_mae(const std::vector<double>& truth, const std::vector<double>& pred) {
  require(truth.size() == pred.size(), "running MAE: truth and predictions differ in length");
  std::vector<RunningPoint> out;
  out.reserve(truth.size());
  // Welford's update keeps the running variance stable over thousands of items.
  double mean = 0.0, m2 = 0.0;
  for (std::size_t k = 0; k < truth.size(); ++k) {
    const double x = std::fabs(pred[k] - truth[k]);
    const double d = x - mean;
    mean += d / static_cast<double>(k + 1);
    m2 += d * (x - mean);
    double half = 0.0;
    if (k > 0) half = kZ95 * std::sqrt(m2 / static_cast<double>(k)) / std::sqrt(double(k + 1));
    // An absolute error is never negative, so neither is the band.
    out.push_back({mean, std::max(mean - half, 0.0), mean + half});
  }
  return out;
}

}  // namespace pricer::eval
