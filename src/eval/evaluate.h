#pragma once
// Runs pricers over an item set and writes what came out: results.json, report.html (rendered by
// eval/report.h) and a leaderboard for the terminal.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/item.h"
#include "eval/metrics.h"
#include "eval/pricer.h"

namespace pricer::eval {

struct PricerResult {
  std::string name;
  std::vector<double> predictions;  // NaN where the pricer could not price the item
  Metrics metrics;  // over the priced items only
  std::size_t unpriced = 0;  // items without a price
  std::string failure;  // why: the pricer's error, or its unpriced items' reason
  // Scored and ranked only when every item got a price; with some unpriced it is "incomplete"
  // (figures over the priced ones, not ranked), with none or an error "failed".
  bool complete() const { return unpriced == 0 && failure.empty(); }
  bool failed() const { return metrics.n == 0; }
  const char* status() const { return complete() ? "complete" : failed() ? "failed" : "incomplete"; }
  double fit_seconds = 0.0;
  double predict_seconds = 0.0;
  double items_per_second = 0.0;  // items / predict_seconds
  nlohmann::json stats;
};

// Fits the pricer on `train` (when it needs training), predicts `items` as one batch and scores
// the priced items. A pricer that throws, or prices no item, comes back failed with the reason:
// the other pricers' results are not lost to it.
PricerResult evaluate_pricer(Pricer& pricer, const std::vector<Item>& train, const std::vector<Item>& items,
                             const MetricOptions& opt = {});

// The leaderboard order: complete results by MAE (ties by name), then incomplete, then failed.
void sort_by_mae(std::vector<PricerResult>& results);

// results.json: `meta` as given, then per pricer metrics, timings and stats, then per item the
// truth and every pricer's prediction.
nlohmann::json results_json(const std::vector<Item>& items, const std::vector<PricerResult>& results,
                            const nlohmann::json& meta);

// Fixed-width leaderboard, one pricer a line, best first.
std::string leaderboard_text(const std::vector<PricerResult>& results);

// Writes <dir>/results.json and <dir>/report.html, creating dir.
void write_results(const std::filesystem::path& dir, const std::vector<Item>& items,
                   const std::vector<PricerResult>& results, const nlohmann::json& meta);

}  // namespace pricer::eval
