#include "monitor/run_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "core/format.h"
#include "report/svg.h"

namespace pricer::monitor {
namespace {

std::string number(double v) {
  if (std::isfinite(v)) return fmt("%.4g", v);
  return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
}
std::string number(const std::optional<double>& v) { return v ? number(*v) : "-"; }

std::string local_time(double unix_seconds) {
  if (!std::isfinite(unix_seconds)) return "-";
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

// A run that died without a word lasted until its last heartbeat.
double run_duration(const RunInfo& r, double now) {
  if (r.ended) return *r.ended - r.started;
  if (r.status != RunStatus::running) return NAN;
  return (liveness(r, now) == RunLiveness::alive ? now : r.heartbeat.value_or(r.started)) - r.started;
}

// Column widths count code points, not bytes, so names with accents stay aligned.
std::size_t display_width(const std::string& s) {
  return static_cast<std::size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::string pad(const std::string& s, std::size_t width, bool right = false) {
  std::size_t w = display_width(s);
  std::string fill(w < width ? width - w : 0, ' ');
  return right ? fill + s : s + fill;
}

std::string clip(const std::string& s, std::size_t width) {
  if (display_width(s) <= width) return s;
  std::string out;
  std::size_t w = 0;
  for (char c : s) {
    bool starts = (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    if (starts && ++w > width - 1) break;
    out += c;
  }
  return out + "\u2026";
}

}  // namespace

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "-";
  auto total = static_cast<long long>(std::llround(s));
  long long d = total / 86400, h = total / 3600 % 24, m = total / 60 % 60, sec = total % 60;
  char buf[32];
  if (d > 0) std::snprintf(buf, sizeof buf, "%lldd%02lldh", d, h);
  else if (h > 0) std::snprintf(buf, sizeof buf, "%lldh%02lldm", h, m);
  else if (m > 0) std::snprintf(buf, sizeof buf, "%lldm%02llds", m, sec);
  else std::snprintf(buf, sizeof buf, "%llds", sec);
  return buf;
}

std::vector<double> downsample(const std::vector<double>& values, std::size_t width) {
  if (width == 0 || values.size() <= width) return values;
  std::vector<double> out(width);
  for (std::size_t b = 0; b < width; ++b) {
    std::size_t lo = b * values.size() / width, hi = (b + 1) * values.size() / width;
    double sum = 0;
    std::size_t n = 0;
    for (std::size_t i = lo; i < hi; ++i)
      if (std::isfinite(values[i])) sum += values[i], ++n;
    out[b] = n ? sum / static_cast<double>(n) : NAN;
  }
  return out;
}

std::string metric_sparkline(const std::vector<MetricPoint>& series, std::size_t width) {
  std::vector<double> v;
  v.reserve(series.size());
  for (const auto& p : series) v.push_back(p.value);
  return report::sparkline(downsample(v, width));
}

std::string format_run_table(const std::vector<RunSummary>& runs, double now) {
  if (runs.empty()) return "no runs recorded yet\n";
  std::vector<std::vector<std::string>> rows = {
      {"ID", "NAME", "KIND", "STATUS", "STEPS", "LAST LOSS", "BEST LOSS", "DURATION", "STARTED"}};
  for (const auto& s : runs) {
    rows.push_back({std::to_string(s.run.id), clip(s.run.name, 40), std::string(to_string(s.run.kind)),
                    std::string(shown_status(s.run, now)), s.last_step ? std::to_string(*s.last_step) : "-",
                    number(s.last_loss), number(s.best_loss), format_duration(run_duration(s.run, now)),
                    local_time(s.run.started)});
  }
  std::vector<std::size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows)
    for (std::size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], display_width(row[c]));
  const std::vector<bool> right = {true, false, false, false, true, true, true, true, false};
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      if (c) line += "  ";
      line += pad(row[c], widths[c], right[c]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string format_run_details(RunDb& db, std::int64_t id, double now) {
  RunInfo r = db.get_run(id);
  std::string out = "run " + std::to_string(r.id) + ": " + r.name + " (" + std::string(to_string(r.kind)) + ", " +
                    std::string(shown_status(r, now)) + ")\n";
  auto field = [&](const std::string& label, const std::string& value) {
    if (!value.empty()) out += "  " + pad(label, 12) + value + "\n";
  };
  field("started", local_time(r.started));
  if (r.ended) field("ended", local_time(*r.ended));
  if (liveness(r, now) == RunLiveness::crashed)
    field("crashed", "marked running, but its process (pid " + std::to_string(*r.pid) + " on " + r.host +
                         ") is gone; last heartbeat " + local_time(r.heartbeat.value_or(r.started)));
  else if (liveness(r, now) == RunLiveness::stale)
    field("stale", "no heartbeat since " + local_time(r.heartbeat.value_or(r.started)) +
                       ": it may have died on another machine, or hang");
  field("duration", format_duration(run_duration(r, now)));
  if (r.sweep_id) field("sweep", *r.sweep_id);
  field("message", r.message);
  field("command", r.command_line);
  field("base model", r.base_model);
  field("dataset", r.dataset);
  field("output dir", r.output_dir);
  field("log dir", r.log_dir);

  auto params = db.params(id);
  if (!params.empty()) {
    out += "\nhyperparameters:\n";
    for (const auto& [key, value] : params.items()) out += "  " + key + " = " + value.dump() + "\n";
  }

  auto names = db.metric_names(id);
  if (!names.empty()) {
    std::size_t w = 0;
    for (const auto& n : names) w = std::max(w, display_width(n));
    std::string header = "  " + pad("metric", w) + "  " + pad("last", 10, true) + " (step)" + pad("min", 11, true) +
                         " (step)" + pad("max", 11, true) + " (step)";
    out += "\n" + header + "\n";
    for (const auto& n : names) {
      auto series = db.metric_series(id, n);
      const MetricPoint* lo = nullptr;
      const MetricPoint* hi = nullptr;
      for (const auto& p : series) {
        if (std::isnan(p.value)) continue;
        if (!lo || p.value < lo->value) lo = &p;
        if (!hi || p.value > hi->value) hi = &p;
      }
      auto at = [](const MetricPoint* p) {
        return p ? pad(number(p->value), 10, true) + pad(" (" + std::to_string(p->step) + ")", 8)
                 : pad("-", 10, true) + std::string(8, ' ');
      };
      std::string line = "  " + pad(n, w) + "  " + at(&series.back()) + at(lo) + at(hi);
      while (line.back() == ' ') line.pop_back();
      out += line + "\n";
    }
    for (auto loss : {kTrainLoss, kEvalLoss}) {
      auto series = db.metric_series(id, loss);
      if (series.empty()) continue;
      out += "\n" + pad(std::string(loss), 11) + metric_sparkline(series) + "  steps " +
             std::to_string(series.front().step) + "-" + std::to_string(series.back().step) + ", " +
             number(series.front().value) + " -> " + number(series.back().value) + "\n";
    }
  }

  auto arts = db.artifacts(id);
  if (!arts.empty()) {
    out += "\nartifacts:\n";
    for (const auto& a : arts)
      out += "  " + pad(a.kind, 12) + a.path + (a.step ? "  (step " + std::to_string(*a.step) + ")" : "") + "\n";
  }
  return out;
}

std::string loss_chart_svg(RunDb& db, std::int64_t id) {
  std::vector<report::Series> series;
  for (auto [name, color] : {std::pair{kTrainLoss, "#4e79a7"}, std::pair{kEvalLoss, "#e15759"}}) {
    auto points = db.metric_series(id, name);
    if (points.empty()) continue;
    report::Series s;
    s.name = std::string(name);
    s.color = color;
    for (const auto& p : points) {
      s.x.push_back(static_cast<double>(p.step));
      s.y.push_back(p.value);
    }
    series.push_back(std::move(s));
  }
  if (series.empty()) return "";
  RunInfo r = db.get_run(id);
  report::ChartOptions opt;
  opt.title = "run " + std::to_string(id) + ": " + r.name + " - loss";
  opt.x_label = "step";
  opt.y_label = "loss";
  return report::line_chart_svg(series, opt);
}

}  // namespace pricer::monitor
