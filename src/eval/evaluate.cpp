#include "core/format.h"
#include "eval/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>

#include "core/atomic_file.h"
#include "core/error.h"
#include "report/svg.h"

namespace pricer::eval {

using nlohmann::json;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// JSON has no NaN; an undefined figure (R² of a constant truth) is written as null.
json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

const char* bucket_color(Bucket b) {
  switch (b) {
    case Bucket::green: return "#2ca02c";
    case Bucket::orange: return "#ff7f0e";
    case Bucket::red: return "#d62728";
  }
  return "#d62728";
}

double hit_rate(const Metrics& m) { return static_cast<double>(m.green) / static_cast<double>(m.n); }

std::string category_label(const std::string& c) { return c.empty() ? "(none)" : c; }

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

// Fits and prices; what the pricer threw becomes the result's failure.
void run_pricer(Pricer& pricer, const std::vector<Item>& train, const std::vector<Item>& items, PricerResult& r) {
  auto t0 = std::chrono::steady_clock::now();
  if (pricer.needs_training()) {
    require(!train.empty(), "pricer \"" + r.name + "\" needs a training split (--train)");
    pricer.fit(train);
  }
  r.fit_seconds = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  r.predictions = pricer.predict(items);
  r.predict_seconds = seconds_since(t0);
  require(r.predictions.size() == items.size(),
          "pricer \"" + r.name + "\" returned " + std::to_string(r.predictions.size()) +
              " prices for " + std::to_string(items.size()) + " items");
}

}  // namespace

PricerResult evaluate_pricer(Pricer& pricer, const std::vector<Item>& train,
                             const std::vector<Item>& items, const MetricOptions& opt) {
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
  try {
    r.stats = pricer.stats();
  } catch (const std::exception&) {
    r.stats = json::object();  // a pricer that failed early may have no figures to give
  }
  return r;
}

void sort_by_mae(std::vector<PricerResult>& results) {
  auto tier = [](const PricerResult& r) { return r.complete() ? 0 : r.failed() ? 2 : 1; };
  std::sort(results.begin(), results.end(), [&](const PricerResult& a, const PricerResult& b) {
    if (tier(a) != tier(b)) return tier(a) < tier(b);
    return a.metrics.mae != b.metrics.mae ? a.metrics.mae < b.metrics.mae : a.name < b.name;
  });
}

json results_json(const std::vector<Item>& items, const std::vector<PricerResult>& results,
                  const json& meta) {
  json pricers = json::array();
  for (const auto& r : results) {
    json entry = {{"name", r.name},
                  {"status", r.status()},
                  {"unpriced", r.unpriced},
                  {"timing",
                   {{"fit_s", r.fit_seconds}, {"predict_s", r.predict_seconds}, {"items_per_s", r.items_per_second}}},
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
  std::snprintf(line.data(), line.size(), "%-4s %-*s %9s  %-19s %7s %7s %6s %10s\n", "rank", name_width,
                "pricer", "MAE $", "95% CI (bootstrap)", "RMSLE", "R2", "hits", "items/s");
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
    const std::string ci = "[" + fmt("%.2f", m.mae_ci_bootstrap.lo) + ", " +
                           fmt("%.2f", m.mae_ci_bootstrap.hi) + "]";
    // Trivial pricers run at hundreds of millions of items/s; keep the column narrow.
    const std::string speed = fmt(r.items_per_second < 1e6 ? "%.1f" : "%.2e", r.items_per_second);
    std::snprintf(line.data(), line.size(), "%-4s %-*s %9.2f  %-19s %7.3f %7s %5.1f%% %10s\n", rank.c_str(),
                  name_width, r.name.c_str(), m.mae, ci.c_str(), m.rmsle,
                  std::isfinite(m.r2) ? fmt("%.3f", m.r2).c_str() : "n/a", 100.0 * hit_rate(m), speed.c_str());
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

std::string report_html(const std::vector<Item>& items, const std::vector<PricerResult>& results,
                        const json& meta) {
  using report::escape_xml;
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n";
  h += "<title>pricer evaluation</title>\n<style>\n"
       "body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}\n"
       "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
       "text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}\n"
       ".charts{display:flex;flex-wrap:wrap;gap:1em}\n"
       "</style></head><body>\n<h1>pricer evaluation</h1>\n";
  h += "<p>" + std::to_string(items.size()) + " items";
  for (const auto& [k, v] : meta.items())
    h += " &middot; " + escape_xml(k) + ": " + escape_xml(v.is_string() ? v.get<std::string>() : v.dump());
  h += "</p>\n";

  std::vector<report::Bar> bars;
  for (const auto& r : results)
    if (r.complete()) bars.push_back({r.name, r.metrics.mae});
  report::ChartOptions lb;
  lb.title = "Leaderboard: mean absolute error (lower is better)";
  lb.y_label = "MAE ($)";
  h += "<h2>Leaderboard</h2>\n" + report::bar_chart_svg(bars, lb) + "\n";

  h += "<table><tr><th>pricer</th><th>MAE $</th><th>95% CI (bootstrap)</th><th>95% CI (normal)</th>"
       "<th>RMSLE</th><th>MSE</th><th>R&sup2;</th><th>green</th><th>orange</th><th>red</th>"
       "<th>fit s</th><th>items/s</th></tr>\n";
  for (const auto& r : results) {
    const auto& m = r.metrics;
    if (r.failed()) {
      h += "<tr class=\"failed\"><td>" + escape_xml(r.name) + "</td><td colspan=\"11\">failed: " +
           escape_xml(r.failure) + "</td></tr>\n";
      continue;
    }
    const std::string label = r.complete() ? escape_xml(r.name)
                                           : escape_xml(r.name) + " (incomplete: " + std::to_string(r.unpriced) +
                                                 " unpriced, not ranked)";
    h += "<tr><td>" + label + "</td><td>" + fmt("%.2f", m.mae) + "</td><td>" +
         fmt("%.2f", m.mae_ci_bootstrap.lo) + " &ndash; " + fmt("%.2f", m.mae_ci_bootstrap.hi) +
         "</td><td>" + fmt("%.2f", m.mae_ci_normal.lo) + " &ndash; " +
         fmt("%.2f", m.mae_ci_normal.hi) + "</td><td>" + fmt("%.3f", m.rmsle) + "</td><td>" +
         fmt("%.0f", m.mse) + "</td><td>" + (std::isfinite(m.r2) ? fmt("%.3f", m.r2) : "n/a") +
         "</td><td>" + fmt("%.1f%%", 100.0 * hit_rate(m)) + "</td><td>" +
         fmt("%.1f%%", 100.0 * static_cast<double>(m.orange) / static_cast<double>(m.n)) +
         "</td><td>" + fmt("%.1f%%", 100.0 * static_cast<double>(m.red) / static_cast<double>(m.n)) +
         "</td><td>" + fmt("%.2f", r.fit_seconds) + "</td><td>" + fmt("%.1f", r.items_per_second) +
         "</td></tr>\n";
  }
  h += "</table>\n<p>Hits: green when the error is under $40 or 20% of the true price, orange "
       "under $80 or 40%, red otherwise.</p>\n";

  std::map<std::string, std::size_t> categories;
  for (const auto& it : items) ++categories[it.category];
  h += "<h2>MAE by category</h2>\n<table><tr><th>category</th><th>items</th>";
  for (const auto& r : results)
    if (!r.failed()) h += "<th>" + escape_xml(r.name) + "</th>";
  h += "</tr>\n";
  for (const auto& [c, n] : categories) {
    h += "<tr><td>" + escape_xml(category_label(c)) + "</td><td>" + std::to_string(n) + "</td>";
    for (const auto& r : results) {
      if (r.failed()) continue;
      const auto it = r.metrics.per_category.find(c);
      h += "<td>" + (it == r.metrics.per_category.end() ? std::string("&ndash;") : fmt("%.2f", it->second.mae)) + "</td>";
    }
    h += "</tr>\n";
  }
  h += "</table>\n";

  const std::vector<report::LegendEntry> legend = {{"green", bucket_color(Bucket::green)},
                                                   {"orange", bucket_color(Bucket::orange)},
                                                   {"red", bucket_color(Bucket::red)}};
  for (const auto& r : results) {
    const auto& m = r.metrics;
    if (r.failed()) {
      h += "<h2>" + escape_xml(r.name) + "</h2>\n<p><strong>failed</strong>: " + escape_xml(r.failure) + "</p>\n";
      continue;
    }
    h += "<h2>" + escape_xml(r.name) + "</h2>\n";
    // What the pricer reports about itself (model settings, interval coverage, tokens, cost):
    // the scalar figures; nested ones (a linear model's weights) stay in results.json.
    std::string figures;
    for (const auto& [k, v] : r.stats.items()) {
      if (v.is_structured()) continue;
      std::string value = v.is_string() ? v.get<std::string>() : v.dump();
      if (v.is_number_float()) value = fmt("%.4g", v.get<double>());
      figures += (figures.empty() ? "" : " &middot; ") + escape_xml(k) + ": " + escape_xml(value);
    }
    if (!figures.empty()) h += "<p>" + figures + "</p>\n";
    if (!r.complete()) h += "<p><strong>incomplete</strong>: " + escape_xml(r.failure) + "</p>\n";
    h += "<div class=\"charts\">\n";
    std::vector<report::Point> pts;
    std::vector<double> truth, priced;
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (!std::isfinite(r.predictions[i])) continue;
      pts.push_back({items[i].price, r.predictions[i], bucket_color(bucket(items[i].price, r.predictions[i]))});
      truth.push_back(items[i].price);
      priced.push_back(r.predictions[i]);
    }
    report::ChartOptions sc;
    sc.title = r.name + ": MAE $" + fmt("%.2f", m.mae) + ", RMSLE " + fmt("%.2f", m.rmsle) +
               ", hits " + fmt("%.1f%%", 100.0 * hit_rate(m));
    sc.x_label = "true price ($)";
    sc.y_label = "predicted price ($)";
    sc.width = 540;
    sc.height = 480;
    h += report::scatter_svg(pts, sc, true, legend) + "\n";

    const auto run = running_mae(truth, priced);
    report::Series s;
    s.name = "running MAE";
    for (std::size_t k = 0; k < run.size(); ++k) {
      s.x.push_back(static_cast<double>(k + 1));
      s.y.push_back(run[k].mean);
      s.lo.push_back(run[k].lo);
      s.hi.push_back(run[k].hi);
    }
    report::ChartOptions lc;
    lc.title = r.name + ": running MAE with 95% band (normal approximation)";
    lc.x_label = "items seen";
    lc.y_label = "MAE ($)";
    lc.width = 540;
    lc.height = 480;
    h += report::line_chart_svg({s}, lc) + "\n</div>\n";
  }
  h += "</body></html>\n";
  return h;
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
