#include "report/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace pricer::report {

namespace {

// Plot area margins: room for tick labels on the left/bottom and the title on top.
constexpr double kLeft = 70, kRight = 20, kTop = 40, kBottom = 60;

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

struct Frame {
  double x0, x1, y0, y1;  // data ranges
  double px0, px1, py0, py1;  // pixel box (py0 is the bottom)
  double sx(double x) const { return px0 + (x - x0) / (x1 - x0) * (px1 - px0); }
  double sy(double y) const { return py0 - (y - y0) / (y1 - y0) * (py0 - py1); }
};

Frame make_frame(const ChartOptions& opt, double x0, double x1, double y0, double y1) {
  return Frame{x0, x1, y0, y1, kLeft, opt.width - kRight, opt.height - kBottom, kTop};
}

std::string open_svg(const ChartOptions& opt) {
  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(opt.width) + "\" height=\"" +
                  std::to_string(opt.height) + "\" viewBox=\"0 0 " + std::to_string(opt.width) + " " +
                  std::to_string(opt.height) +
                  "\" font-family=\"sans-serif\" font-size=\"12\">\n"
                  "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  if (!opt.title.empty())
    s += "<text x=\"" + num(opt.width / 2.0) +
         "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">" + escape_xml(opt.title) +
         "</text>\n";
  return s;
}

std::string text(double x, double y, std::string_view s, const char* anchor, const std::string& extra = "") {
  return "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" text-anchor=\"" + anchor + "\"" + extra + ">" +
         escape_xml(s) + "</text>\n";
}

std::string line(double x1, double y1, double x2, double y2, const std::string& style) {
  return "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" + num(y2) + "\" " + style +
         "/>\n";
}

// Axes with grid lines and tick labels; x ticks omitted when x_ticks is empty (bar charts).
std::string axes(const Frame& f, const ChartOptions& opt, const std::vector<double>& x_ticks,
                 const std::vector<double>& y_ticks) {
  std::string s;
  const double ystep = y_ticks.size() > 1 ? y_ticks[1] - y_ticks[0] : 1;
  for (double t : y_ticks) {
    const double y = f.sy(t);
    s += line(f.px0, y, f.px1, y, "stroke=\"#e0e0e0\"");
    s += text(f.px0 - 6, y + 4, format_tick(t, ystep), "end");
  }
  const double xstep = x_ticks.size() > 1 ? x_ticks[1] - x_ticks[0] : 1;
  for (double t : x_ticks) {
    const double x = f.sx(t);
    s += line(x, f.py0, x, f.py0 + 5, "stroke=\"#333\"");
    s += text(x, f.py0 + 18, format_tick(t, xstep), "middle");
  }
  s += line(f.px0, f.py0, f.px1, f.py0, "stroke=\"#333\"");
  s += line(f.px0, f.py0, f.px0, f.py1, "stroke=\"#333\"");
  if (!opt.x_label.empty()) s += text((f.px0 + f.px1) / 2, opt.height - 12.0, opt.x_label, "middle");
  if (!opt.y_label.empty()) {
    const double cy = (f.py0 + f.py1) / 2;
    s += "<text x=\"16\" y=\"" + num(cy) + "\" text-anchor=\"middle\" transform=\"rotate(-90 16 " + num(cy) + ")\">" +
         escape_xml(opt.y_label) + "</text>\n";
  }
  return s;
}

void finite_range(const std::vector<double>& v, double& lo, double& hi) {
  for (double x : v)
    if (std::isfinite(x)) {
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    }
}

std::string empty_note(const Frame& f) {
  return text((f.px0 + f.px1) / 2, (f.py0 + f.py1) / 2, "no data", "middle", " fill=\"#888\"");
}

}  // namespace

const std::string& palette_color(size_t i) {
  static const std::vector<std::string> colors = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                                  "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  return colors[i % colors.size()];
}

std::string html_page(std::string_view title, std::string_view body, std::string_view extra_css) {
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>";
  h += escape_xml(title);
  h += "</title>\n<style>\n"
       "body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}\n"
       "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
       "text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}\n"
       ".charts{display:flex;flex-wrap:wrap;gap:1em}\n";
  h += extra_css;
  h += "</style></head><body>\n";
  h += body;
  h += "</body></html>\n";
  return h;
}

std::string escape_xml(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') break;
        out += c;
    }
  }
  return out;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {0, 1};
  if (lo > hi) std::swap(lo, hi);
  if (hi - lo < 1e-12 * std::max(1.0, std::abs(hi))) {
    const double pad = lo == 0 ? 1 : std::abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  target = std::max(1, target);
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double r = raw / mag;
  const double step = (r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10) * mag;
  const double first = std::floor(lo / step + 1e-9) * step;
  const double last = std::ceil(hi / step - 1e-9) * step;
  std::vector<double> ticks;
  for (double t = first; t <= last + step * 0.5 && ticks.size() < 1000; t += step)
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  return ticks;
}

std::string format_tick(double v, double step) {
  char buf[48];
  if (std::abs(v) >= 10000 && std::fmod(v, 1000) == 0) {
    std::snprintf(buf, sizeof buf, "%.0fk", v / 1000);
  } else if (step >= 1 && std::abs(v - std::round(v)) < 1e-9) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    const int digits = std::clamp(static_cast<int>(std::ceil(-std::log10(step))), 0, 10);
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  }
  return buf;
}

std::string histogram_svg(const std::vector<double>& values, int bins, const ChartOptions& opt, double lo, double hi) {
  bins = std::clamp(bins, 1, 10000);
  if (!(lo < hi)) {
    lo = std::numeric_limits<double>::infinity();
    hi = -lo;
    finite_range(values, lo, hi);
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (lo == hi) hi = lo + 1;
  }
  std::vector<double> counts(static_cast<size_t>(bins), 0);
  const double width = (hi - lo) / bins;
  for (double v : values) {
    if (!std::isfinite(v) || v < lo || v > hi) continue;
    auto b = static_cast<size_t>((v - lo) / width);
    counts[std::min(b, counts.size() - 1)] += 1;
  }
  const double top = *std::max_element(counts.begin(), counts.end());
  auto yt = nice_ticks(0, std::max(top, 1.0));
  Frame f = make_frame(opt, lo, hi, 0, yt.back());
  std::string s = open_svg(opt);
  // The x axis spans exactly [lo, hi]; nice_ticks may round outward, so drop ticks outside.
  std::vector<double> xt;
  for (double t : nice_ticks(lo, hi, 8))
    if (t >= lo - 1e-9 * width && t <= hi + 1e-9 * width) xt.push_back(t);
  s += axes(f, opt, xt, yt);
  for (size_t b = 0; b < counts.size(); ++b) {
    if (counts[b] == 0) continue;
    const double x0 = f.sx(lo + b * width), x1 = f.sx(lo + (b + 1) * width);
    const double y = f.sy(counts[b]);
    s += "<rect x=\"" + num(x0) + "\" y=\"" + num(y) + "\" width=\"" + num(std::max(0.5, x1 - x0 - 1)) +
         "\" height=\"" + num(f.py0 - y) + "\" fill=\"" + escape_xml(opt.color) + "\"><title>" +
         escape_xml(format_tick(lo + b * width, width)) + " to " +
         escape_xml(format_tick(lo + (b + 1) * width, width)) + ": " +
         std::to_string(static_cast<long long>(counts[b])) + "</title></rect>\n";
  }
  if (values.empty()) s += empty_note(f);
  return s + "</svg>\n";
}

std::string bar_chart_svg(const std::vector<Bar>& bars, const ChartOptions& opt) {
  double top = 0;
  for (auto& b : bars)
    if (std::isfinite(b.value)) top = std::max(top, b.value);
  auto yt = nice_ticks(0, std::max(top, 1.0));
  Frame f = make_frame(opt, 0, std::max<double>(1, bars.size()), 0, yt.back());
  std::string s = open_svg(opt);
  s += axes(f, opt, {}, yt);
  const double slot = (f.px1 - f.px0) / std::max<size_t>(1, bars.size());
  const bool rotate = slot < 60;  // long labels would collide when bars are narrow
  for (size_t i = 0; i < bars.size(); ++i) {
    const double v = std::isfinite(bars[i].value) ? std::max(0.0, bars[i].value) : 0;
    const double x = f.px0 + i * slot + slot * 0.15, y = f.sy(v);
    s += "<rect x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(slot * 0.7) + "\" height=\"" +
         num(f.py0 - y) + "\" fill=\"" + escape_xml(opt.color) + "\"><title>" + escape_xml(bars[i].label) + ": " +
         escape_xml(format_tick(v, 0.01)) + "</title></rect>\n";
    const double cx = f.px0 + (i + 0.5) * slot;
    if (rotate) {
      s += "<text x=\"" + num(cx) + "\" y=\"" + num(f.py0 + 12) +
           "\" text-anchor=\"end\" font-size=\"10\" transform=\"rotate(-35 " + num(cx) + " " + num(f.py0 + 12) +
           ")\">" + escape_xml(bars[i].label) + "</text>\n";
    } else {
      s += text(cx, f.py0 + 16, bars[i].label, "middle");
    }
  }
  if (bars.empty()) s += empty_note(f);
  return s + "</svg>\n";
}

std::string scatter_svg(const std::vector<Point>& points, const ChartOptions& opt, bool identity_line,
                        const std::vector<LegendEntry>& legend) {
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (auto& p : points) {
    if (!std::isfinite(p.x) || !std::isfinite(p.y)) continue;
    x0 = std::min(x0, p.x), x1 = std::max(x1, p.x);
    y0 = std::min(y0, p.y), y1 = std::max(y1, p.y);
  }
  if (!(x0 <= x1)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (identity_line) {  // one shared range so the y = x line is the diagonal
    x0 = y0 = std::min(x0, y0);
    x1 = y1 = std::max(x1, y1);
  }
  auto xt = nice_ticks(x0, x1), yt = nice_ticks(y0, y1);
  Frame f = make_frame(opt, xt.front(), xt.back(), yt.front(), yt.back());
  std::string s = open_svg(opt);
  s += axes(f, opt, xt, yt);
  if (identity_line) {
    const double a = std::max(f.x0, f.y0), b = std::min(f.x1, f.y1);
    s += line(f.sx(a), f.sy(a), f.sx(b), f.sy(b), "stroke=\"#555\" stroke-dasharray=\"6 4\" stroke-width=\"1.5\"");
  }
  for (auto& p : points) {
    if (!std::isfinite(p.x) || !std::isfinite(p.y)) continue;
    s += "<circle cx=\"" + num(f.sx(p.x)) + "\" cy=\"" + num(f.sy(p.y)) + "\" r=\"3\" fill-opacity=\"0.7\" fill=\"" +
         escape_xml(p.color.empty() ? opt.color : p.color) + "\"/>\n";
  }
  for (size_t i = 0; i < legend.size(); ++i) {
    const double y = f.py1 + 8 + 18.0 * i;
    s += "<rect x=\"" + num(f.px0 + 12) + "\" y=\"" + num(y) + "\" width=\"10\" height=\"10\" fill=\"" +
         escape_xml(legend[i].color) + "\"/>\n";
    s += text(f.px0 + 28, y + 9, legend[i].label, "start");
  }
  if (points.empty()) s += empty_note(f);
  return s + "</svg>\n";
}

std::string line_chart_svg(const std::vector<Series>& series, const ChartOptions& opt) {
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (auto& se : series) {
    finite_range(se.x, x0, x1);
    finite_range(se.y, y0, y1);
    if (se.lo.size() == se.y.size()) finite_range(se.lo, y0, y1);
    if (se.hi.size() == se.y.size()) finite_range(se.hi, y0, y1);
  }
  if (!(x0 <= x1)) x0 = 0, x1 = 1;
  if (!(y0 <= y1)) y0 = 0, y1 = 1;
  auto xt = nice_ticks(x0, x1), yt = nice_ticks(y0, y1);
  Frame f = make_frame(opt, xt.front(), xt.back(), yt.front(), yt.back());
  std::string s = open_svg(opt);
  s += axes(f, opt, xt, yt);
  for (size_t k = 0; k < series.size(); ++k) {
    const Series& se = series[k];
    const std::string color = escape_xml(se.color.empty() ? palette_color(k) : se.color);
    const size_t n = std::min(se.x.size(), se.y.size());
    if (se.lo.size() == se.y.size() && se.hi.size() == se.y.size() && n > 0) {
      std::string pts;
      for (size_t i = 0; i < n; ++i)
        if (std::isfinite(se.x[i]) && std::isfinite(se.hi[i]))
          pts += num(f.sx(se.x[i])) + "," + num(f.sy(se.hi[i])) + " ";
      for (size_t i = n; i-- > 0;)
        if (std::isfinite(se.x[i]) && std::isfinite(se.lo[i]))
          pts += num(f.sx(se.x[i])) + "," + num(f.sy(se.lo[i])) + " ";
      s += "<polygon points=\"" + pts + "\" fill=\"" + color + "\" fill-opacity=\"0.2\" stroke=\"none\"/>\n";
    }
    std::string pts;
    for (size_t i = 0; i < n; ++i)
      if (std::isfinite(se.x[i]) && std::isfinite(se.y[i])) pts += num(f.sx(se.x[i])) + "," + num(f.sy(se.y[i])) + " ";
    s += "<polyline points=\"" + pts + "\" fill=\"none\" stroke=\"" + color + "\" stroke-width=\"2\"/>\n";
    if (!se.name.empty()) {
      const double y = f.py1 + 8 + 18.0 * k;
      s += line(f.px1 - 150, y + 5, f.px1 - 130, y + 5, "stroke=\"" + color + "\" stroke-width=\"3\"");
      s += text(f.px1 - 124, y + 9, se.name, "start");
    }
  }
  if (series.empty()) s += empty_note(f);
  return s + "</svg>\n";
}

std::string sparkline(const std::vector<double>& values) {
  static const char* blocks[] = {"\u2581", "\u2582", "\u2583", "\u2584", "\u2585", "\u2586", "\u2587", "\u2588"};
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  finite_range(values, lo, hi);
  std::string s;
  for (double v : values) {
    if (!std::isfinite(v)) {
      s += ' ';
      continue;
    }
    const int level = hi > lo ? static_cast<int>(std::lround((v - lo) / (hi - lo) * 7)) : 3;
    s += blocks[std::clamp(level, 0, 7)];
  }
  return s;
}

}  // namespace pricer::report
