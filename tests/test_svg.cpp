// SVG charts: escaping, tick choice, and that each chart draws what its data says.
#include <gtest/gtest.h>

#include <cmath>
#include <regex>
#include <string>
#include <vector>

#include "report/svg.h"

using namespace pricer::report;

namespace {

size_t count_of(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) ++n;
  return n;
}

// Checks that tags nest properly: every <x ...> has its </x> unless self-closed, and that no
// stray '<' or '&' appears in text content (which would mean missing escaping).
void expect_well_formed(const std::string& svg) {
  std::vector<std::string> stack;
  size_t i = 0;
  while (i < svg.size()) {
    if (svg[i] == '&') {
      auto semi = svg.find(';', i);
      ASSERT_NE(semi, std::string::npos);
      std::string ent = svg.substr(i, semi - i + 1);
      EXPECT_TRUE(ent == "&amp;" || ent == "&lt;" || ent == "&gt;" || ent == "&quot;" || ent == "&apos;") << ent;
      i = semi + 1;
      continue;
    }
    if (svg[i] != '<') {
      ++i;
      continue;
    }
    auto end = svg.find('>', i);
    ASSERT_NE(end, std::string::npos);
    std::string tag = svg.substr(i + 1, end - i - 1);
    ASSERT_EQ(tag.find('<'), std::string::npos) << "unescaped '<' inside " << tag;
    if (tag[0] == '/') {
      ASSERT_FALSE(stack.empty()) << tag;
      EXPECT_EQ(stack.back(), tag.substr(1));
      stack.pop_back();
    } else if (tag.back() != '/') {
      stack.push_back(tag.substr(0, tag.find_first_of(" \n")));
    }
    i = end + 1;
  }
  EXPECT_TRUE(stack.empty());
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
}

}  // namespace

TEST(Svg, EscapesMarkupAndDropsControlBytes) {
  EXPECT_EQ(escape_xml("a<b & \"c\" 'd'>"), "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;");
  EXPECT_EQ(escape_xml(std::string("x\x01y\x1fz", 5)), "xyz");
  EXPECT_EQ(escape_xml("caf\xc3\xa9"), "caf\xc3\xa9");  // UTF-8 kept
}

TEST(Svg, NiceTicksCoverTheRangeWithRoundSteps) {
  struct Case {
    double lo, hi;
  };
  for (Case c : {Case{0, 999.49}, Case{0.5, 3.2}, Case{-7, 13}, Case{1234, 1299}, Case{0, 1e-3}}) {
    auto t = nice_ticks(c.lo, c.hi, 5);
    ASSERT_GE(t.size(), 2u);
    EXPECT_LE(t.front(), c.lo);
    EXPECT_GE(t.back(), c.hi);
    EXPECT_LE(t.size(), 12u);
    const double step = t[1] - t[0];
    const double mant = step / std::pow(10.0, std::floor(std::log10(step)));
    EXPECT_TRUE(std::abs(mant - 1) < 1e-6 || std::abs(mant - 2) < 1e-6 || std::abs(mant - 5) < 1e-6) << "step " << step;
  }
  auto flat = nice_ticks(5, 5);
  EXPECT_LT(flat.front(), 5);
  EXPECT_GT(flat.back(), 5);
  EXPECT_EQ(format_tick(200, 100), "200");
  EXPECT_EQ(format_tick(20000, 10000), "20k");
  EXPECT_EQ(format_tick(0.25, 0.05), "0.25");
}

TEST(Svg, HistogramCountsFallInTheRightBins) {
  // 3 values in [0,1), 1 in [1,2), none in [2,3), 5 in [3,4].
  std::vector<double> v = {0.1, 0.5, 0.9, 1.5, 3.0, 3.2, 3.5, 3.9, 4.0, NAN};
  ChartOptions opt;
  opt.title = "Prices <all>";
  std::string svg = histogram_svg(v, 4, opt, 0, 4);
  expect_well_formed(svg);
  EXPECT_NE(svg.find("Prices &lt;all&gt;"), std::string::npos);
  // One bar per non-empty bin, each with its count in the tooltip.
  EXPECT_EQ(count_of(svg, "<rect x="), 3u);
  EXPECT_NE(svg.find(": 3</title>"), std::string::npos);
  EXPECT_NE(svg.find(": 1</title>"), std::string::npos);
  EXPECT_NE(svg.find(": 5</title>"), std::string::npos);
  // The tallest bar (5) is taller than the one with 3.
  std::regex bar("<rect x=\"[0-9.]+\" y=\"[0-9.]+\" width=\"[0-9.]+\" height=\"([0-9.]+)\"");
  std::vector<double> heights;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), bar); it != std::sregex_iterator(); ++it)
    heights.push_back(std::stod((*it)[1]));
  ASSERT_EQ(heights.size(), 3u);
  EXPECT_NEAR(heights[0] / heights[2], 3.0 / 5.0, 1e-3);
  EXPECT_NEAR(heights[1] / heights[2], 1.0 / 5.0, 1e-3);
}

TEST(Svg, EmptyInputsStillGiveAValidDocument) {
  ChartOptions opt;
  for (const std::string& svg :
       {histogram_svg({}, 10, opt), bar_chart_svg({}, opt), scatter_svg({}, opt), line_chart_svg({}, opt)}) {
    expect_well_formed(svg);
    EXPECT_NE(svg.find("no data"), std::string::npos);
  }
}

TEST(Svg, BarChartLabelsAreEscaped) {
  std::vector<Bar> bars = {{"Tools & Home", 10}, {"Toys <kids>", 5}, {"Books", 0}};
  std::string svg = bar_chart_svg(bars, ChartOptions{});
  expect_well_formed(svg);
  EXPECT_NE(svg.find("Tools &amp; Home"), std::string::npos);
  EXPECT_NE(svg.find("Toys &lt;kids&gt;"), std::string::npos);
  EXPECT_EQ(count_of(svg, "<rect x="), 3u);
}

TEST(Svg, ScatterDrawsIdentityLineAndPointColours) {
  std::vector<Point> pts = {{10, 12, "#00aa00"}, {100, 40, "#ff0000"}, {50, 55, ""}};
  ChartOptions opt;
  opt.color = "#123456";
  std::string svg = scatter_svg(pts, opt, true, {{"good", "#00aa00"}, {"bad", "#ff0000"}});
  expect_well_formed(svg);
  EXPECT_EQ(count_of(svg, "<circle"), 3u);
  EXPECT_NE(svg.find("stroke-dasharray"), std::string::npos);
  EXPECT_EQ(count_of(svg, "fill=\"#00aa00\""), 2u);  // point + legend swatch
  EXPECT_NE(svg.find("fill=\"#123456\""), std::string::npos);
  // The identity line runs from bottom-left to top-right: x and y pixel extents are equal.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      svg, m, std::regex("<line x1=\"([0-9.]+)\" y1=\"([0-9.]+)\" x2=\"([0-9.]+)\" y2=\"([0-9.]+)\" stroke=\"#555\"")));
  EXPECT_LT(std::stod(m[1]), std::stod(m[3]));
  EXPECT_GT(std::stod(m[2]), std::stod(m[4]));
  EXPECT_NO_FATAL_FAILURE(expect_well_formed(scatter_svg(pts, opt, false)));
  EXPECT_EQ(scatter_svg(pts, opt, false).find("stroke-dasharray"), std::string::npos);
}

TEST(Svg, LineChartWithBand) {
  Series s;
  s.name = "train loss";
  s.x = {0, 1, 2, 3};
  s.y = {2.0, 1.5, 1.2, 1.1};
  s.lo = {1.8, 1.3, 1.1, 1.0};
  s.hi = {2.2, 1.7, 1.3, 1.2};
  Series t;
  t.name = "val";
  t.x = {0, 3};
  t.y = {2.1, 1.3};
  std::string svg = line_chart_svg({s, t}, ChartOptions{});
  expect_well_formed(svg);
  EXPECT_EQ(count_of(svg, "<polygon"), 1u);
  EXPECT_EQ(count_of(svg, "<polyline"), 2u);
  EXPECT_NE(svg.find("train loss"), std::string::npos);
  // The band polygon has 2 points per x (upper edge, then lower edge back).
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m, std::regex("<polygon points=\"([^\"]*)\"")));
  std::string pts = m[1];
  EXPECT_EQ(count_of(pts, ","), 8u);
}

TEST(Svg, SparklineMapsMinToLowestAndMaxToHighestBlock) {
  EXPECT_EQ(sparkline({0, 1, 2, 3, 4, 5, 6, 7}), "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588");
  EXPECT_EQ(sparkline({5, NAN, 5}), "\u2584 \u2584");
  EXPECT_EQ(sparkline({}), "");
}
