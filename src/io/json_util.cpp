#include "io/json_util.h"

#include <set>
#include <vector>

#include "core/error.h"

namespace pricer {

namespace {
constexpr int kMaxDepth = 64;  // model headers and configs nest a few levels at most
}

nlohmann::json parse_json_strict(std::string_view text, const std::string& source) {
  std::vector<std::set<std::string>> open_objects;
  auto callback = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (depth > kMaxDepth) throw Error(source + ": JSON nested deeper than " + std::to_string(kMaxDepth) + " levels");
    switch (event) {
      case E::object_start: open_objects.emplace_back(); break;
      case E::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case E::key:
        if (!open_objects.empty() && !open_objects.back().insert(parsed.get<std::string>()).second) {
          throw Error(source + ": duplicate JSON key '" + parsed.get<std::string>() + "'");
        }
        break;
      default: break;
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), callback);
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": invalid JSON: " + e.what());
  }
}

}  // namespace pricer
