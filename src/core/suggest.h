#pragma once
// "Did you mean ...?" for mistyped names (commands, --param keys).
#include <string>
#include <vector>

namespace pricer {

// The name in `names` nearest to `word` (at most two edits away), or "" when none is that near.
std::string nearest_name(const std::string& word, const std::vector<std::string>& names);

// "; did you mean 'train'?" for a near miss, else "".
std::string did_you_mean(const std::string& word, const std::vector<std::string>& names);

}  // namespace pricer
