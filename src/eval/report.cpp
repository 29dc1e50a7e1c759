#include "eval/report.h"

#include <cmath>

#include "core/format.h"
#include "report/svg.h"

namespace pricer::eval {

using nlohmann::json;

namespace {

const char* bucket_color(Bucket b) {
  switch (b) {
    case Bucket::green: return "#2ca02c";
    case Bucket::orange: return "#ff7f0e";
    case Bucket::red: return "#d62728";
  }
  return "#d62728";
}

// The leaderboard: bars of the ranked pricers, then every pricer's figures (failed ones named).
std::string leaderboard_section(const std::vector<PricerResult>& results) {
  using report::escape_xml;
  std::vector<report::Bar> bars;
  for (const auto& r : results)
    if (r.complete()) bars.push_back({r.name, r.metrics.mae});
  report::ChartOptions lb;
  lb.title = "Leaderboard: mean absolute error (lower is better)";
  lb.y_label = "MAE ($)";
  std::string h = "<h2>Leaderboard</h2>\n" + report::bar_chart_svg(bars, lb) + "\n";
  h += "<table><tr><th>pricer</th><th>MAE $</th><th>95% CI (bootstrap)</th><th>95% CI (normal)</th>"
       "<th>RMSLE</th><th>MSE</th><th>R&sup2;</th><th>green</th><th>orange</th><th>red</th>"
       "<th>fit s</th><th>items/s</th></tr>\n";
  for (const auto& r : results) {
    const auto& m = r.metrics;
    if (r.failed()) {
      h += "<tr class=\"failed\"><td>" + escape_xml(r.name) +
           "</td><td colspan=\"11\">failed: " + escape_xml(r.failure) + "</td></tr>\n";
      continue;
    }
    const std::string label =
        r.complete() ? escape_xml(r.name)
                     : escape_xml(r.name) + " (incomplete: " + std::to_string(r.unpriced) + " unpriced, not ranked)";
    h += "<tr><td>" + label + "</td><td>" + fmt("%.2f", m.mae) + "</td><td>" + fmt("%.2f", m.mae_ci_bootstrap.lo) +
         " &ndash; " + fmt("%.2f", m.mae_ci_bootstrap.hi) + "</td><td>" + fmt("%.2f", m.mae_ci_normal.lo) +
         " &ndash; " + fmt("%.2f", m.mae_ci_normal.hi) + "</td><td>" + fmt("%.3f", m.rmsle) + "</td><td>" +
         fmt("%.0f", m.mse) + "</td><td>" + (std::isfinite(m.r2) ? fmt("%.3f", m.r2) : "n/a") + "</td><td>" +
         fmt("%.1f%%", 100.0 * hit_rate(m)) + "</td><td>" +
         fmt("%.1f%%", 100.0 * static_cast<double>(m.orange) / static_cast<double>(m.n)) + "</td><td>" +
         fmt("%.1f%%", 100.0 * static_cast<double>(m.red) / static_cast<double>(m.n)) + "</td><td>" +
         fmt("%.2f", r.fit_seconds) + "</td><td>" + fmt("%.1f", r.items_per_second) + "</td></tr>\n";
  }
  h += "</table>\n<p>Hits: green when the error is under $40 or 20% of the true price, orange "
       "under $80 or 40%, red otherwise.</p>\n";
  return h;
}

std::string category_section(const std::vector<Item>& items, const std::vector<PricerResult>& results) {
  using report::escape_xml;
  std::map<std::string, std::size_t> categories;
  for (const auto& it : items) ++categories[it.category];
  std::string h = "<h2>MAE by category</h2>\n<table><tr><th>category</th><th>items</th>";
  for (const auto& r : results)
    if (!r.failed()) h += "<th>" + escape_xml(r.name) + "</th>";
  h += "</tr>\n";
  for (const auto& [c, n] : categories) {
    h += "<tr><td>" + escape_xml(category_label(c)) + "</td><td>" + std::to_string(n) + "</td>";
    for (const auto& r : results) {
      if (r.failed()) continue;
      const auto it = r.metrics.per_category.find(c);
      h += "<td>" + (it == r.metrics.per_category.end() ? std::string("&ndash;") : fmt("%.2f", it->second.mae)) +
           "</td>";
    }
    h += "</tr>\n";
  }
  return h + "</table>\n";
}

// What the pricer reports about itself (model settings, interval coverage, tokens, cost): the
// scalar figures; nested ones (a linear model's weights) stay in results.json.
std::string self_reported_figures(const PricerResult& r) {
  using report::escape_xml;
  std::string figures;
  for (const auto& [k, v] : r.stats.items()) {
    if (v.is_structured()) continue;
    std::string value = v.is_string() ? v.get<std::string>() : v.dump();
    if (v.is_number_float()) value = fmt("%.4g", v.get<double>());
    figures += (figures.empty() ? "" : " &middot; ") + escape_xml(k) + ": " + escape_xml(value);
  }
  return figures.empty() ? "" : "<p>" + figures + "</p>\n";
}

// One pricer's predictions against the truth (coloured by hit bucket) and its running MAE.
std::string pricer_charts(const std::vector<Item>& items, const PricerResult& r) {
  const auto& m = r.metrics;
  const std::vector<report::LegendEntry> legend = {{"green", bucket_color(Bucket::green)},
                                                   {"orange", bucket_color(Bucket::orange)},
                                                   {"red", bucket_color(Bucket::red)}};
  std::vector<report::Point> pts;
  std::vector<double> truth, priced;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (!std::isfinite(r.predictions[i])) continue;
    pts.push_back({items[i].price, r.predictions[i], bucket_color(bucket(items[i].price, r.predictions[i]))});
    truth.push_back(items[i].price);
    priced.push_back(r.predictions[i]);
  }
  report::ChartOptions sc;
  sc.title = r.name + ": MAE $" + fmt("%.2f", m.mae) + ", RMSLE " + fmt("%.2f", m.rmsle) + ", hits " +
             fmt("%.1f%%", 100.0 * hit_rate(m));
  sc.x_label = "true price ($)";
  sc.y_label = "predicted price ($)";
  sc.width = 540;
  sc.height = 480;
  std::string h = "<div class=\"charts\">\n" + report::scatter_svg(pts, sc, true, legend) + "\n";
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
  return h + report::line_chart_svg({s}, lc) + "\n</div>\n";
}

// A stacking pricer's second level as bars: the trees' share of split gain per column, or the
// linear weights per column; nothing for other pricers.
std::string stack_chart(const PricerResult& r) {
  std::vector<report::Bar> bars;
  report::ChartOptions c;
  if (r.stats.contains("importances") && r.stats["importances"].is_array()) {
    for (const auto& col : r.stats["importances"])
      if (col.value("gain_share", 0.0) > 0) bars.push_back({col.value("column", ""), col.value("gain_share", 0.0)});
    c.title = r.name + ": what its trees split on (share of the total gain)";
    c.y_label = "share of gain";
  } else if (r.stats.contains("weights") && r.stats["weights"].is_object()) {
    // The members' weights (never negative); the spec columns' signed weights are in the formula.
    for (const auto& [k, v] : r.stats["weights"].items())
      if (v.is_number() && !k.starts_with("spec:")) bars.push_back({k, v.get<double>()});
    c.title = r.name + ": weights on its members' log prices";
    c.y_label = "weight";
  }
  return bars.empty() ? "" : report::bar_chart_svg(bars, c) + "\n";
}

std::string pricer_section(const std::vector<Item>& items, const PricerResult& r) {
  using report::escape_xml;
  if (r.failed())
    return "<h2>" + escape_xml(r.name) + "</h2>\n<p><strong>failed</strong>: " + escape_xml(r.failure) + "</p>\n";
  std::string h = "<h2>" + escape_xml(r.name) + "</h2>\n" + self_reported_figures(r);
  if (!r.complete()) h += "<p><strong>incomplete</strong>: " + escape_xml(r.failure) + "</p>\n";
  return h + stack_chart(r) + pricer_charts(items, r);
}

}  // namespace

std::string report_html(const std::vector<Item>& items, const std::vector<PricerResult>& results, const json& meta) {
  using report::escape_xml;
  std::string h = "<h1>pricer evaluation</h1>\n";
  h += "<p>" + std::to_string(items.size()) + " items";
  for (const auto& [k, v] : meta.items())
    h += " &middot; " + escape_xml(k) + ": " + escape_xml(v.is_string() ? v.get<std::string>() : v.dump());
  h += "</p>\n";
  h += leaderboard_section(results);
  h += category_section(items, results);
  for (const auto& r : results) h += pricer_section(items, r);
  return report::html_page("pricer evaluation", h);
}

}  // namespace pricer::eval
