#pragma once
// Small self-contained SVG charts for reports (curation stats, evaluation, training curves).
// Every function returns a complete <svg> document as a string: no scripts, no external fonts
// or styles, all text XML-escaped, so files open in any browser and embed in Markdown/HTML.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pricer::report {

struct ChartOptions {
  std::string title;
  std::string x_label;
  std::string y_label;
  int width = 720;
  int height = 420;
  std::string color = "#4e79a7";  // bars, line and default point colour
};

// Escapes &, <, >, " and ' and drops bytes that XML 1.0 forbids (control characters).
std::string escape_xml(std::string_view s);

// A self-contained HTML page around `body` (already HTML): the report pages' shared head and
// style (readable tables, a flex row of charts), with `extra_css` after it.
std::string html_page(std::string_view title, std::string_view body, std::string_view extra_css = {});

// "Nice" axis ticks (steps of 1, 2 or 5 times a power of ten) covering [lo, hi] with about
// `target` intervals. lo == hi yields a small range around the value.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);

// Tick label: integers without decimals, thousands as "12k", small steps with the needed digits.
std::string format_tick(double v, double step);

// Histogram of values in `bins` equal-width bins over [lo, hi]; lo >= hi: the data's range.
// Non-finite values are ignored.
std::string histogram_svg(const std::vector<double>& values, int bins, const ChartOptions& opt, double lo = 0,
                          double hi = 0);

// Vertical bars with a category label each (labels are rotated when crowded).
struct Bar {
  std::string label;
  double value = 0;
};
std::string bar_chart_svg(const std::vector<Bar>& bars, const ChartOptions& opt);

// Scatter plot; each point may carry its own CSS colour (empty: opt.color). With identity_line a
// dashed y = x line is drawn and both axes share one range (predicted vs. true prices).
struct Point {
  double x = 0, y = 0;
  std::string color;
};
struct LegendEntry {
  std::string label;
  std::string color;
};
std::string scatter_svg(const std::vector<Point>& points, const ChartOptions& opt, bool identity_line = true,
                        const std::vector<LegendEntry>& legend = {});

// Line chart of one or more series over a shared x axis; a series with lo/hi (same length as y)
// gets a shaded band (e.g. min/max or a confidence interval).
struct Series {
  std::string name;
  std::vector<double> x, y;
  std::vector<double> lo, hi;  // optional band
  std::string color;  // empty: a palette colour
};
std::string line_chart_svg(const std::vector<Series>& series, const ChartOptions& opt);

// One-line text chart with block characters ▁▂▃▄▅▆▇█ (UTF-8), one per value; for terminals.
std::string sparkline(const std::vector<double>& values);

// The palette used for series without an explicit colour.
const std::string& palette_color(size_t i);

}  // namespace pricer::report
