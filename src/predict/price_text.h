#pragma once
// The price written in free text: a model's greedy completion, a hosted model's reply.
#include <optional>
#include <string>
#include <string_view>

namespace pricer {

// The first number in the text, thousands separators and a leading "$" allowed:
// "$1,299.99 each" -> 1299.99, "about .5" -> 0.5, "30-40 dollars" -> 30, "1.5e3" -> 1500.
// nullopt when there is none, or when it is no price: negative ("-$45", "$-45") or beyond
// data::kMaxPlausiblePrice ("1e999").
std::optional<double> price_in_text(std::string_view text);

// True once more text cannot change what price_in_text reads: the number is followed by a
// character that ends it, or it has its cents ("123.00", the completion format). Where greedy
// pricing and a served price reply stop generating.
bool number_complete(const std::string& text);

}  // namespace pricer
