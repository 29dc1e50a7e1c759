// Metrics against values worked out by hand, and the behaviour of the confidence intervals.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "eval/metrics.h"

using namespace pricer::eval;

TEST(EvalBucket, ThresholdsInDollarsAndPercent) {
  EXPECT_EQ(bucket(100, 139.9), Bucket::green);  // $39.9 off
  EXPECT_EQ(bucket(100, 140), Bucket::orange);  // $40 is not under $40, 40% is not under 20%
  EXPECT_EQ(bucket(300, 350), Bucket::green);  // $50 off but under 20% of $300
  EXPECT_EQ(bucket(100, 179.9), Bucket::orange);  // under $80
  EXPECT_EQ(bucket(100, 180), Bucket::red);  // $80 and 80%
  EXPECT_EQ(bucket(500, 690), Bucket::orange);  // $190 is under 40% of $500
  EXPECT_EQ(bucket(500, 700), Bucket::red);  // $200 is exactly 40%
  EXPECT_EQ(bucket(10, 0), Bucket::green);
  EXPECT_STREQ(bucket_name(Bucket::orange), "orange");
}

TEST(EvalMetrics, HandComputedValues) {
  const std::vector<double> truth = {100, 50, 10, 200};
  const std::vector<double> pred = {110, 20, 10, 100};
  const std::vector<std::string> cats = {"a", "b", "a", ""};
  const Metrics m = compute_metrics(truth, pred, cats);
  EXPECT_EQ(m.n, 4u);
  EXPECT_DOUBLE_EQ(m.mae, (10.0 + 30.0 + 0.0 + 100.0) / 4.0);  // 35
  EXPECT_DOUBLE_EQ(m.mse, (100.0 + 900.0 + 0.0 + 10000.0) / 4.0);  // 2750
  EXPECT_DOUBLE_EQ(m.rmse, std::sqrt(2750.0));
  // Truth mean 90: SS_tot = 100 + 1600 + 6400 + 12100 = 20200, SS_res = 11000.
  EXPECT_NEAR(m.r2, 1.0 - 11000.0 / 20200.0, 1e-12);
  const double l1 = std::log(111.0 / 101.0), l2 = std::log(21.0 / 51.0), l4 = std::log(101.0 / 201.0);
  EXPECT_NEAR(m.rmsle, std::sqrt((l1 * l1 + l2 * l2 + l4 * l4) / 4.0), 1e-12);
  EXPECT_EQ(m.green, 3u);
  EXPECT_EQ(m.orange, 0u);
  EXPECT_EQ(m.red, 1u);
  ASSERT_EQ(m.per_category.size(), 3u);
  EXPECT_EQ(m.per_category.at("a").n, 2u);
  EXPECT_DOUBLE_EQ(m.per_category.at("a").mae, 5.0);
  EXPECT_DOUBLE_EQ(m.per_category.at("b").mae, 30.0);
  EXPECT_DOUBLE_EQ(m.per_category.at("").mae, 100.0);
  // Normal interval: deviations from 35 are -25,-5,-35,65, so sd = sqrt(6100/3).
  const double half = 1.959963984540054 * std::sqrt(6100.0 / 3.0) / 2.0;
  EXPECT_NEAR(m.mae_ci_normal.lo, 35.0 - half, 1e-9);
  EXPECT_NEAR(m.mae_ci_normal.hi, 35.0 + half, 1e-9);
}

TEST(EvalMetrics, NegativePredictionsCountAsZeroInRmsle) {
  const Metrics m = compute_metrics({9.0}, {-5.0}, {""});
  EXPECT_NEAR(m.rmsle, std::log(10.0), 1e-12);
  EXPECT_DOUBLE_EQ(m.mae, 14.0);
}

TEST(EvalMetrics, ConstantTruthHasNoR2) {
  const Metrics m = compute_metrics({5, 5}, {4, 6}, {"", ""});
  EXPECT_TRUE(std::isnan(m.r2));
}

TEST(EvalMetrics, RejectsBadShapes) {
  EXPECT_THROW(compute_metrics({}, {}, {}), pricer::Error);
  EXPECT_THROW(compute_metrics({1, 2}, {1}, {"", ""}), pricer::Error);
  EXPECT_THROW(compute_metrics({1, 2}, {1, 2}, {""}), pricer::Error);
}

TEST(EvalBootstrap, DeterministicAndContainsTheMean) {
  std::mt19937 rng(7);
  std::exponential_distribution<double> dist(1.0 / 60.0);
  std::vector<double> errs(300);
  for (auto& e : errs) e = dist(rng);
  double mean = 0;
  for (double e : errs) mean += e;
  mean /= static_cast<double>(errs.size());
  const Interval a = bootstrap_mean_ci(errs, 1000, 42);
  const Interval b = bootstrap_mean_ci(errs, 1000, 42);
  const Interval c = bootstrap_mean_ci(errs, 1000, 43);
  EXPECT_EQ(a.lo, b.lo);
  EXPECT_EQ(a.hi, b.hi);
  EXPECT_TRUE(a.lo != c.lo || a.hi != c.hi);
  EXPECT_LT(a.lo, mean);
  EXPECT_GT(a.hi, mean);
  // With a few hundred values the percentile interval is close to the normal one.
  const Interval n = normal_mean_ci(errs);
  EXPECT_NEAR(a.hi - a.lo, n.hi - n.lo, 0.15 * (n.hi - n.lo));
  EXPECT_NEAR((a.lo + a.hi) / 2, mean, 0.1 * (n.hi - n.lo));
}

TEST(EvalBootstrap, ConstantValuesGiveAPoint) {
  const Interval a = bootstrap_mean_ci({3, 3, 3, 3}, 200, 1);
  EXPECT_DOUBLE_EQ(a.lo, 3.0);
  EXPECT_DOUBLE_EQ(a.hi, 3.0);
  EXPECT_THROW(bootstrap_mean_ci({}, 10, 1), pricer::Error);
  EXPECT_THROW(bootstrap_mean_ci({1.0}, 0, 1), pricer::Error);
}

TEST(EvalBootstrap, CoverageOfTheTrueMean) {
  // Over many samples from a known distribution, a 95% interval should cover the true mean
  // roughly 95% of the time (loosely: the percentile bootstrap under-covers a little).
  std::mt19937 rng(11);
  std::exponential_distribution<double> dist(1.0 / 50.0);
  int covered = 0;
  const int trials = 200;
  for (int t = 0; t < trials; ++t) {
    std::vector<double> v(100);
    for (auto& x : v) x = dist(rng);
    const Interval ci = bootstrap_mean_ci(v, 400, static_cast<uint64_t>(t));
    covered += ci.lo <= 50.0 && 50.0 <= ci.hi;
  }
  EXPECT_GE(covered, static_cast<int>(0.88 * trials));
  EXPECT_LE(covered, static_cast<int>(0.99 * trials));
}

TEST(EvalRunningMae, MeansAndBand) {
  const auto run = running_mae({0, 0, 0}, {1, 3, 2});
  ASSERT_EQ(run.size(), 3u);
  EXPECT_DOUBLE_EQ(run[0].mean, 1.0);
  EXPECT_DOUBLE_EQ(run[0].lo, 1.0);
  EXPECT_DOUBLE_EQ(run[0].hi, 1.0);
  EXPECT_DOUBLE_EQ(run[1].mean, 2.0);
  // sd of {1,3} is sqrt(2); over sqrt(2) items that is 1.
  EXPECT_NEAR(run[1].hi - run[1].mean, 1.959963984540054, 1e-12);
  EXPECT_DOUBLE_EQ(run[2].mean, 2.0);
  EXPECT_NEAR(run[2].mean - run[2].lo, 1.959963984540054 * 1.0 / std::sqrt(3.0), 1e-12);
  // Widely spread errors: the band's lower edge stops at zero.
  const auto wide = running_mae({0, 0}, {1, 100});
  EXPECT_DOUBLE_EQ(wide[1].lo, 0.0);
  EXPECT_GT(wide[1].hi, wide[1].mean);
}
