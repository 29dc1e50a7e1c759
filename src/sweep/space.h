#pragma once
// The search space of a sweep: named hyperparameters, each a distribution to draw from
// (uniform, log-uniform, integer, log-integer or a list of choices), and the random source the
// samplers share. Draws depend only on the seed (no std:: distributions, whose output differs
// between standard libraries), so a sweep is reproducible everywhere.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/random.h"

namespace YAML {
class Node;
}

namespace pricer::sweep {

enum class ParamKind { uniform, log_uniform, int_uniform, log_int, choice };

struct ParamSpec {
  std::string name;
  ParamKind kind = ParamKind::uniform;
  double low = 0, high = 0;  // numeric kinds, inclusive
  std::vector<nlohmann::json> choices;  // choice: numbers, strings or booleans

  bool is_log() const { return kind == ParamKind::log_uniform || kind == ParamKind::log_int; }
  bool is_int() const { return kind == ParamKind::int_uniform || kind == ParamKind::log_int; }
  // The numeric range in the space samplers work in (log for log kinds; integers widened by
  // half a step so each integer owns an equal share).
  double internal_low() const;
  double internal_high() const;
  double to_internal(double value) const;
  // Back to a parameter value: exp for log kinds, rounded and clamped for integers.
  nlohmann::json from_internal(double u) const;
};

struct SearchSpace {
  std::vector<ParamSpec> params;  // in file order

  // `node` is the `space` mapping of `file`; errors name the file, key and line.
  static SearchSpace from_yaml(const YAML::Node& node, const std::string& file);
  const ParamSpec* find(const std::string& name) const;
  nlohmann::json to_json() const;
};

// The seed of one trial's draws: a mix of the sweep seed and the trial number.
uint64_t trial_seed(uint64_t sweep_seed, int64_t trial_number);

// One value per parameter, each drawn uniformly in its internal space.
nlohmann::json sample_uniformly(const SearchSpace& space, Rng& rng);

}  // namespace pricer::sweep
