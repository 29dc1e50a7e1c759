#include "sweep/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "core/progress.h"
#include "report/svg.h"

namespace pricer::sweep {

namespace {

std::string value_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", v.get<double>());
    return buf;
  }
  return v.dump();
}

std::string number(double v, const char* fmt = "%.4f") {
  char buf[32];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

Table trial_table(const SweepState& state, const SearchSpace& space, const std::string& objective, size_t limit) {
  Table t;
  t.header = {"rank", "trial", "status", objective, "steps"};
  for (const auto& p : space.params) t.header.push_back(p.name);
  t.header.push_back("time");
  auto row = [&](const TrialRecord& r, const std::string& rank) {
    std::vector<std::string> cells = {rank, std::to_string(r.number), std::string(to_string(r.status)),
                                      r.has_objective ? number(r.objective) : "-", std::to_string(r.steps)};
    for (const auto& p : space.params) cells.push_back(r.params.contains(p.name) ? value_text(r.params[p.name]) : "-");
    cells.push_back(format_duration(r.seconds));
    t.rows.push_back(std::move(cells));
  };
  const auto ranked = ranked_trials(state);
  for (size_t i = 0; i < ranked.size() && (limit == 0 || i < limit); ++i) row(*ranked[i], std::to_string(i + 1));
  for (const auto& r : state.trials)
    if (r.status == TrialStatus::failed || r.status == TrialStatus::running) row(r, "-");
  return t;
}

constexpr char kCompleteColor[] = "#4e79a7";
constexpr char kPrunedColor[] = "#bab0ac";
constexpr char kBestColor[] = "#e15759";

std::vector<report::LegendEntry> status_legend() {
  return {{"complete", kCompleteColor}, {"pruned (value at its last rung)", kPrunedColor}};
}

// The title and a paragraph of trial counts, the objective and the best trial.
std::string summary_html(const SweepState& state, const std::string& objective) {
  using report::escape_xml;
  const auto ranked = ranked_trials(state);
  const TrialRecord* best =
      ranked.empty() || ranked.front()->status != TrialStatus::complete ? nullptr : ranked.front();

  std::string html;
  html += "<h1>Sweep " + escape_xml(state.name) + "</h1>\n";
  size_t n_complete = 0, n_pruned = 0, n_failed = 0;
  for (const auto& t : state.trials) {
    n_complete += t.status == TrialStatus::complete;
    n_pruned += t.status == TrialStatus::pruned;
    n_failed += t.status == TrialStatus::failed;
  }
  html += "<p>" + std::to_string(state.trials.size()) + " trials: " + std::to_string(n_complete) + " complete, " +
          std::to_string(n_pruned) + " pruned, " + std::to_string(n_failed) + " failed; objective: validation " +
          escape_xml(objective) + " (lower is better)";
  if (best) html += "; best: trial " + std::to_string(best->number) + " with " + number(best->objective);
  html += ".</p>\n";
  return html;
}

// The objective per trial, with the best complete value so far.
std::string objective_charts_html(const SweepState& state, const std::string& objective) {
  std::vector<report::Point> points;
  report::Series best_line{"best so far", {}, {}, {}, {}, kBestColor};
  double best_so_far = INFINITY;
  for (const auto& t : state.trials) {
    if (!t.has_objective) continue;
    const bool complete = t.status == TrialStatus::complete;
    points.push_back({static_cast<double>(t.number), t.objective, complete ? kCompleteColor : kPrunedColor});
    if (complete) {
      best_so_far = std::min(best_so_far, t.objective);
      best_line.x.push_back(static_cast<double>(t.number));
      best_line.y.push_back(best_so_far);
    }
  }
  std::string html;
  if (!points.empty()) {
    report::ChartOptions o;
    o.title = "Validation " + objective + " per trial";
    o.x_label = "trial";
    o.y_label = objective;
    html += report::scatter_svg(points, o, false, status_legend()) + "\n";
  }
  if (best_line.x.size() >= 2) {
    report::ChartOptions o;
    o.title = "Best validation " + objective + " so far";
    o.x_label = "trial";
    o.y_label = objective;
    html += report::line_chart_svg({best_line}, o) + "\n";
  }
  return html;
}

// The size and y axis every chart of one parameter against the objective shares.
report::ChartOptions param_chart_options(const std::string& objective) {
  report::ChartOptions o;
  o.y_label = objective;
  o.width = 540;
  o.height = 340;
  return o;
}

// The best complete value reached with each choice; empty when no complete trial has one.
std::string choice_chart_html(const ParamSpec& p, const SweepState& state, const std::string& objective) {
  std::vector<report::Bar> bars;
  for (const auto& c : p.choices) {
    double v = INFINITY;
    for (const auto& t : state.trials)
      if (t.status == TrialStatus::complete && t.params.value(p.name, nlohmann::json()) == c)
        v = std::min(v, t.objective);
    if (std::isfinite(v)) bars.push_back({value_text(c), v});
  }
  if (bars.empty()) return "";
  report::ChartOptions o = param_chart_options(objective);
  o.title = "Best " + objective + " by " + p.name;
  o.x_label = p.name;
  return report::bar_chart_svg(bars, o) + "\n";
}

// Each trial's value of a numeric parameter (log10 for a log-scaled one) against its objective;
// empty when no trial has both.
std::string numeric_param_chart_html(const ParamSpec& p, const SweepState& state, const std::string& objective) {
  std::vector<report::Point> pts;
  for (const auto& t : state.trials)
    if (t.has_objective && t.params.contains(p.name) && t.params[p.name].is_number()) {
      const double x = t.params[p.name].get<double>();
      pts.push_back({p.is_log() ? std::log10(x) : x, t.objective,
                     t.status == TrialStatus::complete ? kCompleteColor : kPrunedColor});
    }
  if (pts.empty()) return "";
  report::ChartOptions o = param_chart_options(objective);
  o.title = p.name + " against " + objective;
  o.x_label = p.is_log() ? "log10 " + p.name : p.name;
  return report::scatter_svg(pts, o, false, status_legend()) + "\n";
}

// The rows of format_ranked_table, none left out, each with its trial's message as a note.
std::string trials_table_html(const SweepState& state, const SearchSpace& space, const std::string& objective) {
  using report::escape_xml;
  std::string html = "<h2>Trials</h2>\n<table>\n<tr>";
  const Table t = trial_table(state, space, objective, 0);
  for (const auto& h : t.header) html += "<th>" + escape_xml(h) + "</th>";
  html += "<th>note</th></tr>\n";
  for (const auto& r : t.rows) {
    html += "<tr>";
    for (const auto& c : r) html += "<td>" + escape_xml(c) + "</td>";
    const int64_t number = std::stoll(r[1]);
    html += "<td style=\"text-align:left\">" + escape_xml(state.trials[static_cast<size_t>(number)].message) +
            "</td></tr>\n";
  }
  html += "</table>\n";
  return html;
}

}  // namespace

std::string format_ranked_table(const SweepState& state, const SearchSpace& space, const std::string& objective,
                                size_t limit) {
  const Table t = trial_table(state, space, objective, limit);
  std::vector<size_t> width(t.header.size());
  for (size_t c = 0; c < t.header.size(); ++c) {
    width[c] = t.header[c].size();
    for (const auto& r : t.rows) width[c] = std::max(width[c], r[c].size());
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t c = 0; c < cells.size(); ++c) {
      out += cells[c];
      if (c + 1 < cells.size()) out += std::string(width[c] - cells[c].size() + 2, ' ');
    }
    out += "\n";
  };
  line(t.header);
  for (const auto& r : t.rows) line(r);
  const auto ranked = ranked_trials(state);
  if (limit > 0 && ranked.size() > limit) out += "(" + std::to_string(ranked.size() - limit) + " more in the report)\n";
  return out;
}

std::string sweep_report_html(const SweepState& state, const SearchSpace& space, const std::string& objective) {
  std::string html = summary_html(state, objective);
  html += "<div class=\"charts\">\n";
  html += objective_charts_html(state, objective);
  for (const auto& p : space.params)
    html += p.kind == ParamKind::choice ? choice_chart_html(p, state, objective)
                                        : numeric_param_chart_html(p, state, objective);
  html += "</div>\n";
  html += trials_table_html(state, space, objective);
  return report::html_page("sweep " + state.name, html, "table{font-size:13px}.charts svg{margin:0.5em 0}\n");
}

}  // namespace pricer::sweep
