#include "predict/price_text.h"

#include <cmath>
#include <cstdlib>
#include <string>

#include "data/record.h"

namespace pricer {

namespace {

bool is_digit(std::string_view s, std::size_t i) { return i < s.size() && s[i] >= '0' && s[i] <= '9'; }

// Copies the number starting at i into `num` (separators dropped); returns where it ends.
std::size_t read_number(std::string_view s, std::size_t i, std::string& num) {
  for (; i < s.size(); ++i) {
    if (is_digit(s, i)) num += s[i];
    else if (s[i] == ',' && !num.empty() && is_digit(s, i + 1)) continue;  // 1,299
    else break;
  }
  if (i < s.size() && s[i] == '.' && is_digit(s, i + 1)) {
    num += '.';
    for (++i; is_digit(s, i); ++i) num += s[i];
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    std::size_t k = i + 1;
    if (k < s.size() && (s[k] == '+' || s[k] == '-')) ++k;
    if (is_digit(s, k)) {
      num.append(s.substr(i, k - i));
      for (i = k; is_digit(s, i); ++i) num += s[i];
    }
  }
  return i;
}

}  // namespace

std::optional<double> price_in_text(std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (!is_digit(text, i) && !(text[i] == '.' && is_digit(text, i + 1))) continue;
    std::size_t before = i;
    while (before > 0 && text[before - 1] == '$') --before;
    if (before > 0 && text[before - 1] == '-') return std::nullopt;  // a negative amount is no price
    std::string num;
    read_number(text, i, num);
    const double v = std::strtod(num.c_str(), nullptr);
    if (!std::isfinite(v) || v > data::kMaxPlausiblePrice) return std::nullopt;
    return v;
  }
  return std::nullopt;
}

bool number_complete(const std::string& text) {
  bool digit = false;
  size_t dot = std::string::npos;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c >= '0' && c <= '9') {
      digit = true;
      if (dot != std::string::npos && i - dot >= 2) return true;
    } else if (c == '.' && digit && dot == std::string::npos) {
      dot = i;
    } else if (c == ',' && digit) {
      continue;
    } else if (digit) {
      return true;
    }
  }
  return false;
}

}  // namespace pricer
