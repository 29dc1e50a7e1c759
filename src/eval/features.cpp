#include "eval/features.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <regex>
#include <unordered_set>

#include "core/error.h"

namespace pricer::eval {

namespace {

// Keywords that move prices in product listings: bundles and sets cost more, parts and
// accessories less, premium materials and electronics more.
const std::vector<std::string>& keywords() {
  static const std::vector<std::string> k = {"pack",        "set",        "kit",  "professional", "premium",
                                             "replacement", "compatible", "oem",  "stainless",    "steel",
                                             "wireless",    "battery",    "usb",  "led",          "case",
                                             "cable",       "watt",       "inch", "heavy",        "digital"};
  return k;
}

}  // namespace

std::vector<double> spec_quantities(const std::string& text) {
  // Bounded repeats: libstdc++'s regex recurses per character matched, and a number needs no more.
  static const std::regex weight(
      R"(weight:\s{0,8}([0-9]{1,9}(?:\.[0-9]{1,6})?)\s{0,8}(pounds?|lbs?|ounces?|oz|kilograms?|kg|grams?|g)\b)",
      std::regex::icase);
  static const std::regex dims(
      R"(dimensions[^:\n]{0,30}:\s{0,8}([0-9]{1,6}(?:\.[0-9]{1,4})?)\s{0,4}x\s{0,4}([0-9]{1,6}(?:\.[0-9]{1,4})?)\s{0,4}x)"
      R"(\s{0,4}([0-9]{1,6}(?:\.[0-9]{1,4})?)\s{0,4}(inches|inch|in|cm|centimeters|mm|millimeters)?)",
      std::regex::icase);
  static const std::regex pack(
      R"(\b(?:pack|set|box|case) of ([0-9]{1,4})\b|\b([0-9]{1,4})[- ]?(?:pack|count|pcs|pieces)\b)", std::regex::icase);
  std::vector<double> f(6, 0.0);
  std::smatch m;
  if (std::regex_search(text, m, weight)) {
    const char u = static_cast<char>(std::tolower(static_cast<unsigned char>(m[2].str()[0])));
    const double v = std::stod(m[1].str());
    const double pounds = u == 'p' || u == 'l' ? v : u == 'o' ? v / 16 : u == 'k' ? v * 2.2046 : v / 453.6;
    f[0] = std::log1p(pounds);
    f[1] = 1;
  }
  if (std::regex_search(text, m, dims)) {
    const std::string unit = m[4].str();
    const double to_inch = unit.empty() || std::tolower(static_cast<unsigned char>(unit[0])) == 'i' ? 1.0
                           : std::tolower(static_cast<unsigned char>(unit[0])) == 'c'               ? 1 / 2.54
                                                                                                    : 1 / 25.4;
    double volume = 1;
    for (int i = 1; i <= 3; ++i) volume *= std::stod(m[i].str()) * to_inch;
    f[2] = std::log1p(volume);
    f[3] = 1;
  }
  if (std::regex_search(text, m, pack)) {
    f[4] = std::log1p(std::stod(m[1].matched ? m[1].str() : m[2].str()));
    f[5] = 1;
  }
  return f;
}

const std::vector<std::string>& spec_quantity_names() {
  static const std::vector<std::string> n = {"log_pounds", "has_weight", "log_volume",
                                             "has_volume", "log_count",  "has_count"};
  return n;
}

void SimpleFeatures::fit(const std::vector<Item>& train) {
  std::unordered_set<std::string> seen;
  categories_.clear();
  for (const auto& it : train)
    if (!it.category.empty() && seen.insert(it.category).second) categories_.push_back(it.category);
  std::sort(categories_.begin(), categories_.end());
}

std::size_t SimpleFeatures::size() const { return 11 + keywords().size() + categories_.size(); }

std::vector<std::string> SimpleFeatures::names() const {
  std::vector<std::string> n = {"log_chars", "words", "digits", "numbers", "log_max_number"};
  n.insert(n.end(), spec_quantity_names().begin(), spec_quantity_names().end());
  for (const auto& k : keywords()) n.push_back("kw:" + k);
  for (const auto& c : categories_) n.push_back("cat:" + c);
  return n;
}

std::vector<double> SimpleFeatures::row(const Item& item) const {
  const auto tokens = word_tokens(item.text);
  double digits = 0, numbers = 0, max_number = 0;
  for (unsigned char c : item.text) digits += std::isdigit(c) ? 1 : 0;
  for (const auto& t : tokens) {
    if (!std::all_of(t.begin(), t.end(), [](unsigned char c) { return std::isdigit(c); })) continue;
    ++numbers;
    // Long digit runs are part numbers, not quantities; cap what one can contribute.
    max_number = std::max(max_number, t.size() > 6 ? 1e6 : std::stod(t));
  }
  std::vector<double> f = {std::log1p(static_cast<double>(item.text.size())), static_cast<double>(tokens.size()),
                           digits, numbers, std::log1p(max_number)};
  const auto spec = spec_quantities(item.text);
  f.insert(f.end(), spec.begin(), spec.end());
  std::unordered_set<std::string> present(tokens.begin(), tokens.end());
  for (const auto& k : keywords()) f.push_back(present.count(k) ? 1.0 : 0.0);
  for (const auto& c : categories_) f.push_back(item.category == c ? 1.0 : 0.0);
  return f;
}

}  // namespace pricer::eval
