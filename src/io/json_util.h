#pragma once
// Strict JSON parsing for untrusted headers and configs: syntax errors, duplicate object keys
// (which nlohmann::json would silently collapse) and absurd nesting all become pricer::Error
// naming the source.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace pricer {

nlohmann::json parse_json_strict(std::string_view text, const std::string& source);

}  // namespace pricer
