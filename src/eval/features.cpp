#include "eval/features.h"

#include <algorithm>
#include <cctype>
#include <cmath>
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

void SimpleFeatures::fit(const std::vector<Item>& train) {
  std::unordered_set<std::string> seen;
  categories_.clear();
  for (const auto& it : train)
    if (!it.category.empty() && seen.insert(it.category).second) categories_.push_back(it.category);
  std::sort(categories_.begin(), categories_.end());
}

std::size_t SimpleFeatures::size() const { return 5 + keywords().size() + categories_.size(); }

std::vector<std::string> SimpleFeatures::names() const {
  std::vector<std::string> n = {"log_chars", "words", "digits", "numbers", "log_max_number"};
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
  std::unordered_set<std::string> present(tokens.begin(), tokens.end());
  for (const auto& k : keywords()) f.push_back(present.count(k) ? 1.0 : 0.0);
  for (const auto& c : categories_) f.push_back(item.category == c ? 1.0 : 0.0);
  return f;
}

}  // namespace pricer::eval
