#include "eval/features.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <optional>
#include <string_view>
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

namespace {

// A cursor over lower-cased text for the spec quantities: each reader consumes what it accepts
// and reports whether it did. One pass per quantity, no allocation past the number's digits.
struct SpecCursor {
  std::string_view s;
  size_t i = 0;

  static bool word(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
  bool at_boundary() const { return i == 0 || i > s.size() || !word(s[i - 1]); }
  bool ends_word() const { return i >= s.size() || !word(s[i]); }
  bool take(std::string_view lit) {
    if (s.substr(i, lit.size()) != lit) return false;
    i += lit.size();
    return true;
  }
  // Up to `most` spaces (space, tab, newline, ...); more than that is refused.
  bool spaces(size_t most) {
    size_t n = 0;
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i, ++n;
    return n <= most;
  }
  size_t digits() {
    const size_t start = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    return i - start;
  }
  // A number of 1..whole digits with an optional fraction of 1..frac digits: bounded, so a
  // hostile run of digits is refused rather than parsed.
  std::optional<double> number(size_t whole, size_t frac) {
    const size_t start = i, w = digits();
    if (w == 0 || w > whole) return std::nullopt;
    if (i < s.size() && s[i] == '.' && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      ++i;
      if (digits() > frac) return std::nullopt;
    }
    return std::stod(std::string(s.substr(start, i - start)));
  }
  // The word (letters, digits, underscore) starting here.
  std::string_view next_word() {
    const size_t start = i;
    while (i < s.size() && word(s[i])) ++i;
    return s.substr(start, i - start);
  }
};

// "weight: 2.5 pounds" (ounces, kg, grams too) in pounds, at the first "weight:" that reads so.
std::optional<double> stated_pounds(std::string_view lower) {
  for (size_t at = lower.find("weight:"); at != std::string_view::npos; at = lower.find("weight:", at + 1)) {
    SpecCursor c{lower, at + 7};
    if (!c.spaces(8)) continue;
    const auto v = c.number(9, 6);
    if (!v || !c.spaces(8)) continue;
    const std::string_view u = c.next_word();
    if (u == "pound" || u == "pounds" || u == "lb" || u == "lbs") return *v;
    if (u == "ounce" || u == "ounces" || u == "oz") return *v / 16;
    if (u == "kilogram" || u == "kilograms" || u == "kg") return *v * 2.2046;
    if (u == "gram" || u == "grams" || u == "g") return *v / 453.6;
  }
  return std::nullopt;
}

// "dimensions: 10 x 2 x 5 inches" (cm, mm too; inches when no unit follows) in cubic inches, at
// the first "dimensions" whose colon (within 30 characters on its line) is followed so.
std::optional<double> stated_cubic_inches(std::string_view lower) {
  for (size_t at = lower.find("dimensions"); at != std::string_view::npos; at = lower.find("dimensions", at + 1)) {
    const size_t colon = lower.find_first_of(":\n", at + 10);
    if (colon == std::string_view::npos || lower[colon] != ':' || colon - (at + 10) > 30) continue;
    SpecCursor c{lower, colon + 1};
    double side[3] = {};
    bool ok = c.spaces(8);
    for (int d = 0; d < 3 && ok; ++d) {
      const auto v = c.number(6, 4);
      ok = v && (d == 2 || (c.spaces(4) && c.take("x") && c.spaces(4)));
      if (ok) side[d] = *v;
    }
    if (!ok) continue;
    // The unit may follow after up to 4 spaces; past that, or none of these, it is inches.
    const std::string_view rest = c.spaces(4) ? lower.substr(c.i) : std::string_view();
    const double to_inch = rest.starts_with("cm") || rest.starts_with("centimeters")   ? 1 / 2.54
                           : rest.starts_with("mm") || rest.starts_with("millimeters") ? 1 / 25.4
                                                                                       : 1.0;
    double volume = 1;
    for (double v : side) volume *= v * to_inch;
    return volume;
  }
  return std::nullopt;
}

// A pack's count: "pack of 12" (set, box, case of) or "12-pack" ("12 count", pcs, pieces), the
// first in the text; at most 4 digits.
std::optional<double> stated_count(std::string_view lower) {
  for (size_t at = 0; at < lower.size(); ++at) {
    SpecCursor c{lower, at};
    if (!c.at_boundary() || !SpecCursor::word(lower[at])) continue;
    if (c.take("pack of ") || c.take("set of ") || c.take("box of ") || c.take("case of ")) {
      const size_t n = c.digits();
      if (n >= 1 && n <= 4 && c.ends_word()) return std::stod(std::string(lower.substr(c.i - n, n)));
      c.i = at;
    }
    const size_t n = c.digits();
    if (n < 1 || n > 4) continue;
    if (c.i < lower.size() && (lower[c.i] == '-' || lower[c.i] == ' ')) ++c.i;
    const size_t unit = c.i;
    for (std::string_view u : {"pack", "count", "pcs", "pieces"}) {
      c.i = unit;
      if (c.take(u) && c.ends_word()) return std::stod(std::string(lower.substr(at, n)));
    }
  }
  return std::nullopt;
}

}  // namespace

std::vector<double> spec_quantities(const std::string& text) {
  std::string lower(text);
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  std::vector<double> f(6, 0.0);
  const std::optional<double> quantities[] = {stated_pounds(lower), stated_cubic_inches(lower), stated_count(lower)};
  for (size_t q = 0; q < 3; ++q) {
    if (!quantities[q]) continue;
    f[2 * q] = std::log1p(*quantities[q]);
    f[2 * q + 1] = 1;
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

std::size_t SimpleFeatures::size() const {
  return 5 + spec_quantity_names().size() + keywords().size() + categories_.size();
}

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

nlohmann::json tfidf_to_json(const TfidfVectorizer& v, const TfidfOptions& opt) {
  return {{"max_features", opt.max_features},
          {"min_df", opt.min_df},
          {"bigrams", opt.bigrams},
          {"vocabulary", v.vocabulary()}};
}

TfidfVectorizer tfidf_from_json(const nlohmann::json& j) {
  TfidfOptions opt;
  opt.max_features = j.at("max_features").get<std::size_t>();
  opt.min_df = j.at("min_df").get<std::size_t>();
  opt.bigrams = j.at("bigrams").get<bool>();
  return TfidfVectorizer::from_vocabulary(opt, j.at("vocabulary").get<std::vector<std::pair<uint64_t, double>>>());
}

}  // namespace pricer::eval
