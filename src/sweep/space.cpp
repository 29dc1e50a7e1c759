#include "sweep/space.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"
#include "core/random.h"

namespace pricer::sweep {

double ParamSpec::internal_low() const {
  const double lo = is_int() ? low - 0.5 : low;
  return is_log() ? std::log(lo) : lo;
}

double ParamSpec::internal_high() const {
  const double hi = is_int() ? high + 0.5 : high;
  return is_log() ? std::log(hi) : hi;
}

double ParamSpec::to_internal(double value) const { return is_log() ? std::log(value) : value; }

nlohmann::json ParamSpec::from_internal(double u) const {
  double v = is_log() ? std::exp(u) : u;
  v = std::clamp(v, low, high);
  if (is_int()) return static_cast<int64_t>(std::clamp(std::round(v), low, high));
  return v;
}

namespace {

int line_of(const YAML::Node& n) { return n.Mark().line + 1; }

[[noreturn]] void fail_at(const std::string& file, const std::string& key, const YAML::Node& n,
                          const std::string& what) {
  throw Error(file + ": space." + key + " (line " + std::to_string(line_of(n)) + "): " + what);
}

double read_number(const YAML::Node& n, const std::string& file, const std::string& key, const char* field) {
  if (!n || !n.IsScalar()) fail_at(file, key, n, std::string("'") + field + "' must be a number");
  try {
    const double v = n.as<double>();
    if (!std::isfinite(v)) fail_at(file, key, n, std::string("'") + field + "' must be finite");
    return v;
  } catch (const YAML::Exception&) {
    fail_at(file, key, n, std::string("'") + field + "' must be a number, not '" + n.Scalar() + "'");
  }
}

nlohmann::json read_choice(const YAML::Node& n, const std::string& file, const std::string& key) {
  if (!n.IsScalar()) fail_at(file, key, n, "choices must be numbers, strings or booleans");
  const std::string& s = n.Scalar();
  if (n.Tag() != "!") {  // unquoted: a number or boolean when it reads as one
    try {
      const auto i = n.as<int64_t>();
      return i;
    } catch (const YAML::Exception&) {
    }
    try {
      const auto d = n.as<double>();
      if (std::isfinite(d)) return d;
    } catch (const YAML::Exception&) {
    }
    if (s == "true" || s == "false") return s == "true";
  }
  return s;
}

ParamKind parse_kind(const std::string& s, const std::string& file, const std::string& key, const YAML::Node& n) {
  if (s == "uniform") return ParamKind::uniform;
  if (s == "log_uniform" || s == "loguniform") return ParamKind::log_uniform;
  if (s == "int" || s == "int_uniform") return ParamKind::int_uniform;
  if (s == "log_int") return ParamKind::log_int;
  if (s == "choice" || s == "categorical") return ParamKind::choice;
  fail_at(file, key, n, "unknown type '" + s + "' (expected uniform, log_uniform, int, log_int or choice)");
}

const char* kind_name(ParamKind k) {
  switch (k) {
    case ParamKind::uniform: return "uniform";
    case ParamKind::log_uniform: return "log_uniform";
    case ParamKind::int_uniform: return "int";
    case ParamKind::log_int: return "log_int";
    case ParamKind::choice: return "choice";
  }
  return "?";
}

}  // namespace

SearchSpace SearchSpace::from_yaml(const YAML::Node& node, const std::string& file) {
  if (!node || !node.IsMap() || node.size() == 0)
    throw Error(file + ": 'space' must be a mapping of parameter name to distribution (line " +
                std::to_string(node ? line_of(node) : 0) + ")");
  SearchSpace space;
  for (const auto& kv : node) {
    ParamSpec p;
    p.name = kv.first.as<std::string>();
    const YAML::Node& v = kv.second;
    if (space.find(p.name)) fail_at(file, p.name, kv.first, "given twice");
    if (v.IsSequence()) {  // shorthand: a list of choices
      p.kind = ParamKind::choice;
      for (const auto& c : v) p.choices.push_back(read_choice(c, file, p.name));
    } else if (v.IsMap()) {
      if (!v["type"]) fail_at(file, p.name, v, "missing 'type' (uniform, log_uniform, int, log_int or choice)");
      p.kind = parse_kind(v["type"].as<std::string>(), file, p.name, v["type"]);
      for (const auto& field : v) {
        const std::string f = field.first.as<std::string>();
        const bool known = f == "type" || (p.kind == ParamKind::choice ? f == "values" : (f == "low" || f == "high"));
        if (!known) fail_at(file, p.name, field.first, "unknown field '" + f + "' for type " + kind_name(p.kind));
      }
      if (p.kind == ParamKind::choice) {
        const YAML::Node values = v["values"];
        if (!values || !values.IsSequence()) fail_at(file, p.name, v, "a choice needs 'values', a list");
        for (const auto& c : values) p.choices.push_back(read_choice(c, file, p.name));
      } else {
        p.low = read_number(v["low"], file, p.name, "low");
        p.high = read_number(v["high"], file, p.name, "high");
        if (!(p.low < p.high)) fail_at(file, p.name, v, "'low' must be below 'high'");
        if (p.is_log() && p.low <= 0) fail_at(file, p.name, v, "a log distribution needs 'low' > 0");
        if (p.is_int() && (p.low != std::floor(p.low) || p.high != std::floor(p.high)))
          fail_at(file, p.name, v, "an integer distribution needs integer bounds");
      }
    } else {
      fail_at(file, p.name, v, "expected a mapping with 'type' (or a list of choices)");
    }
    if (p.kind == ParamKind::choice && p.choices.empty()) fail_at(file, p.name, v, "no choices given");
    space.params.push_back(std::move(p));
  }
  return space;
}

const ParamSpec* SearchSpace::find(const std::string& name) const {
  for (const auto& p : params)
    if (p.name == name) return &p;
  return nullptr;
}

nlohmann::json SearchSpace::to_json() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& p : params) {
    nlohmann::json j = {{"type", kind_name(p.kind)}};
    if (p.kind == ParamKind::choice) j["values"] = p.choices;
    else j["low"] = p.low, j["high"] = p.high;
    out[p.name] = j;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

uint64_t trial_seed(uint64_t sweep_seed, int64_t trial_number) {
  uint64_t x = sweep_seed ^ (static_cast<uint64_t>(trial_number) * 0xd1b54a32d192ed03ULL);
  return splitmix64(x);
}

nlohmann::json sample_uniformly(const SearchSpace& space, Rng& rng) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& p : space.params) {
    if (p.kind == ParamKind::choice) {
      out[p.name] = p.choices[rng.below(p.choices.size())];
    } else {
      const double lo = p.internal_low(), hi = p.internal_high();
      out[p.name] = p.from_internal(lo + (hi - lo) * rng.uniform());
    }
  }
  return out;
}

}  // namespace pricer::sweep
