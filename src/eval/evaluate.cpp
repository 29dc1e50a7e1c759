#include "eval/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>

#include "core/atomic_file.h"
#include "core/comm.h"
#include "core/error.h"
#include "core/format.h"
#include "eval/report.h"

namespace pricer::eval {

using nlohmann::json;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// JSON has no NaN; an undefined figure (R² of a constant truth) is written as null.
json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json metrics_json(const Metrics& m) {
  json cats = json::object();
  for (const auto& [c, s] : m.per_category) cats[category_label(c)] = {{"n", s.n}, {"mae", s.mae}};
  return {{"n", m.n},
          {"mae", m.mae},
          {"mae_ci95_bootstrap", {m.mae_ci_bootstrap.lo, m.mae_ci_bootstrap.hi}},
          {"mae_ci95_normal", {m.mae_ci_normal.lo, m.mae_ci_normal.hi}},
          {"mse", m.mse},
          {"rmse", m.rmse},
          {"rmsle", m.rmsle},
          {"r2", number_or_null(m.r2)},
          {"hits", {{"green", m.green}, {"orange", m.orange}, {"red", m.red}}},
          {"hit_rate", hit_rate(m)},
          {"per_category", cats}};
}

}  // namespace

namespace {

json pricer_stats(const Pricer& pricer) {
  try {
    return pricer.stats();
  } catch (const std::exception&) {
    return json::object();  // a pricer that failed early may have no figures to give
  }
}

// Fits and prices; what the pricer threw becomes the result's failure. Under MPI every rank fits
// and prices its share of the items (a pricer that may not be sharded: rank 0 all of them) and
// the shares are put together in item order on every rank, with their stats; a failure on any
// rank fails the pricer on every rank (no rank is left waiting for the others).
void run_pricer(Pricer& pricer, const std::vector<Item>& train, const std::vector<Item>& items, PricerResult& r) {
  const bool job = comm::size() > 1;
  auto [begin, end] = comm::share(items.size());
  if (!pricer.shardable()) begin = 0, end = comm::root() ? items.size() : 0;
  std::string error;
  try {
    auto t0 = std::chrono::steady_clock::now();
    const std::vector<Item> mine(items.begin() + static_cast<std::ptrdiff_t>(begin),
                                 items.begin() + static_cast<std::ptrdiff_t>(end));
    if (pricer.needs_training() && !mine.empty()) {
      require(!train.empty(), "pricer \"" + r.name + "\" needs a training split (--train)");
      pricer.fit(train);
    }
    r.fit_seconds = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    r.predictions = mine.empty() ? std::vector<double>{} : pricer.predict(mine);
    r.predict_seconds = seconds_since(t0);
    require(r.predictions.size() == mine.size(), "pricer \"" + r.name + "\" returned " +
                                                     std::to_string(r.predictions.size()) + " prices for " +
                                                     std::to_string(mine.size()) + " items");
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!job) {
    if (!error.empty()) throw Error(error);
    r.stats = pricer_stats(pricer);
    return;
  }
  const std::vector<std::string> errors = comm::all_texts(error);
  for (std::size_t k = 0; k < errors.size(); ++k)
    if (!errors[k].empty()) throw Error("rank " + std::to_string(k) + ": " + errors[k]);
  // Each rank fills its share, the others add zeros.
  std::vector<double> all(items.size(), 0.0);
  std::copy(r.predictions.begin(), r.predictions.end(), all.begin() + static_cast<std::ptrdiff_t>(begin));
  comm::sum(all);
  r.predictions = std::move(all);
  double seconds[2] = {r.fit_seconds, r.predict_seconds};
  comm::sum(seconds);
  r.fit_seconds = seconds[0] / comm::size();  // the ranks' mean: they work side by side
  r.predict_seconds = seconds[1] / comm::size();
  std::vector<json> shares;
  for (const std::string& s : comm::all_texts(end > begin ? pricer_stats(pricer).dump() : ""))
    if (!s.empty()) shares.push_back(json::parse(s));
  r.stats = shares.empty() ? json::object() : pricer.combine_stats(shares);
}

}  // namespace

PricerResult evaluate_pricer(Pricer& pricer, const std::vector<Item>& train, const std::vector<Item>& items,
                             const MetricOptions& opt) {
  require(!items.empty(), "evaluate: no items to price");
  PricerResult r;
  r.name = pricer.name();
  try {
    run_pricer(pricer, train, items, r);
  } catch (const std::exception& e) {
    r.predictions.assign(items.size(), std::nan(""));
    r.failure = e.what();
  }
  r.items_per_second = static_cast<double>(items.size()) / std::max(r.predict_seconds, 1e-9);
  std::vector<double> truth, priced;
  std::vector<std::string> cats;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (!std::isfinite(r.predictions[i])) {
      r.predictions[i] = std::nan("");
      ++r.unpriced;
      continue;
    }
    truth.push_back(items[i].price);
    priced.push_back(r.predictions[i]);
    cats.push_back(items[i].category);
  }
  if (r.unpriced > 0 && r.failure.empty()) {
    const std::string why = pricer.unpriced_reason();
    r.failure = std::to_string(r.unpriced) + " of " + std::to_string(items.size()) + " items unpriced" +
                (why.empty() ? "" : ": " + why);
  }
  if (!priced.empty()) r.metrics = compute_metrics(truth, priced, cats, opt);
  if (r.stats.is_null()) r.stats = pricer_stats(pricer);
  return r;
}

void sort_by_mae(std::vector<PricerResult>& results) {
  auto tier = [](const PricerResult& r) { return r.complete() ? 0 : r.failed() ? 2 : 1; };
  std::sort(results.begin(), results.end(), [&](const PricerResult& a, const PricerResult& b) {
    if (tier(a) != tier(b)) return tier(a) < tier(b);
    return a.metrics.mae != b.metrics.mae ? a.metrics.mae < b.metrics.mae : a.name < b.name;
  });
}

json results_json(const std::vector<Item>& items, const std::vector<PricerResult>& results, const json& meta) {
  json pricers = json::array();
  for (const auto& r : results) {
    json entry = {
        {"name", r.name},
        {"status", r.status()},
        {"unpriced", r.unpriced},
        {"timing", {{"fit_s", r.fit_seconds}, {"predict_s", r.predict_seconds}, {"items_per_s", r.items_per_second}}},
        {"stats", r.stats}};
    if (!r.failure.empty()) entry["failure"] = r.failure;
    entry["metrics"] = r.failed() ? json(nullptr) : metrics_json(r.metrics);
    pricers.push_back(entry);
  }
  json rows = json::array();
  for (std::size_t i = 0; i < items.size(); ++i) {
    json preds = json::object();
    for (const auto& r : results) preds[r.name] = number_or_null(r.predictions[i]);
    rows.push_back({{"id", i},
                    {"title", items[i].title},
                    {"category", items[i].category.empty() ? json(nullptr) : json(items[i].category)},
                    {"price", items[i].price},
                    {"predictions", preds}});
  }
  return {{"meta", meta}, {"pricers", pricers}, {"items", rows}};
}

std::string leaderboard_text(const std::vector<PricerResult>& results) {
  // The name column is as wide as the longest pricer name, so the columns stay aligned.
  int name_width = 14;
  for (const auto& r : results) name_width = std::max(name_width, static_cast<int>(r.name.size()));
  std::vector<char> line(static_cast<std::size_t>(name_width) + 128);
  std::snprintf(line.data(), line.size(), "%-4s %-*s %9s  %-19s %7s %7s %6s %10s\n", "rank", name_width, "pricer",
                "MAE $", "95% CI (bootstrap)", "RMSLE", "R2", "hits", "items/s");
  std::string out = line.data();
  for (std::size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    const auto& m = r.metrics;
    const std::string rank = r.complete() ? std::to_string(i + 1) : "-";
    if (r.failed()) {
      std::snprintf(line.data(), line.size(), "%-4s %-*s %9s  (could not price any item)\n", rank.c_str(), name_width,
                    r.name.c_str(), "FAILED");
      out += line.data();
      continue;
    }
    const std::string ci = "[" + fmt("%.2f", m.mae_ci_bootstrap.lo) + ", " + fmt("%.2f", m.mae_ci_bootstrap.hi) + "]";
    // Trivial pricers run at hundreds of millions of items/s; keep the column narrow.
    const std::string speed = fmt(r.items_per_second < 1e6 ? "%.1f" : "%.2e", r.items_per_second);
    std::snprintf(line.data(), line.size(), "%-4s %-*s %9.2f  %-19s %7.3f %7s %5.1f%% %10s\n", rank.c_str(), name_width,
                  r.name.c_str(), m.mae, ci.c_str(), m.rmsle, std::isfinite(m.r2) ? fmt("%.3f", m.r2).c_str() : "n/a",
                  100.0 * hit_rate(m), speed.c_str());
    out += line.data();
  }
  // Why a pricer is out of the ranking.
  for (const auto& r : results) {
    if (r.complete()) continue;
    out += "     " + r.name + ": " + r.status() + " - " + r.failure;
    if (!r.failed()) out += " (figures over the " + std::to_string(r.metrics.n) + " priced items, not ranked)";
    out += "\n";
  }
  // The LLM pricers name how they read a price off the model.
  for (const auto& r : results)
    if (r.stats.is_object() && r.stats.contains("readout") && r.stats["readout"].is_string())
      out += "     " + r.name + ": " + r.stats["readout"].get<std::string>() + "\n";
  return out;
}

void write_results(const std::filesystem::path& dir, const std::vector<Item>& items,
                   const std::vector<PricerResult>& results, const json& meta) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  require(!ec, dir.string() + ": cannot create directory: " + ec.message());
  write_file_atomic(dir / "results.json", results_json(items, results, meta).dump(2) + "\n");
  write_file_atomic(dir / "report.html", report_html(items, results, meta));
}

}  // namespace pricer::eval
