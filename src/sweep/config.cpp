#include "sweep/config.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "sweep/train_trial.h"

namespace fs = std::filesystem;

namespace pricer::sweep {

double parse_duration(const std::string& text, const std::string& what) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    throw Error(what + ": '" + text + "' is not a duration (e.g. 900, 15m, 2h)");
  }
  const std::string unit = text.substr(used);
  double scale = 0;
  if (unit.empty() || unit == "s") scale = 1;
  else if (unit == "m" || unit == "min") scale = 60;
  else if (unit == "h") scale = 3600;
  else if (unit == "d") scale = 86400;
  if (scale == 0 || !std::isfinite(v) || v < 0)
    throw Error(what + ": '" + text + "' is not a duration (e.g. 900, 15m, 2h)");
  return v * scale;
}

namespace {

std::string at_line(const YAML::Node& n) { return " (line " + std::to_string(n.Mark().line + 1) + ")"; }

template <typename T>
T read_as(const YAML::Node& n, const std::string& file, const std::string& key) {
  try {
    return n.as<T>();
  } catch (const YAML::Exception&) {
    throw Error(file + ": key '" + key + "'" + at_line(n) + ": '" + (n.IsScalar() ? n.Scalar() : std::string("?")) +
                "' is not a valid value");
  }
}

}  // namespace

SweepConfig SweepConfig::load(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw Error(path + ": " + e.what());
  }
  require(root && root.IsMap(), path + ": expected a mapping of sweep settings");
  SweepConfig c;
  c.file = path;
  c.name = fs::path(path).stem().string();
  bool have_space = false, have_train = false;
  YAML::Node space_node;
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    const YAML::Node& v = kv.second;
    if (key == "name") c.name = read_as<std::string>(v, path, key);
    else if (key == "out_dir") c.out_dir = read_as<std::string>(v, path, key);
    else if (key == "train") {
      have_train = true;
      if (v.IsScalar()) c.train.apply_yaml_file(v.Scalar());
      else if (v.IsMap()) c.train.apply_yaml(v, path + ": key 'train'");
      else throw Error(path + ": key 'train'" + at_line(v) + ": a pricer train config file or a mapping of its keys");
    } else if (key == "objective") c.objective = read_as<std::string>(v, path, key);
    else if (key == "algorithm") c.search.algorithm = read_as<std::string>(v, path, key);
    else if (key == "seed") c.search.seed = read_as<uint64_t>(v, path, key);
    else if (key == "trials") c.search.trials = read_as<int64_t>(v, path, key);
    else if (key == "time_budget")
      c.search.time_budget_s = parse_duration(read_as<std::string>(v, path, key), path + ": key 'time_budget'");
    else if (key == "parallel") c.search.parallel = read_as<int>(v, path, key);
    else if (key == "startup_trials") c.search.tpe.startup_trials = read_as<int64_t>(v, path, key);
    else if (key == "candidates") c.search.tpe.candidates = read_as<int64_t>(v, path, key);
    else if (key == "pruning") {
      if (!v.IsMap())
        throw Error(path + ": key 'pruning'" + at_line(v) + ": expected a mapping (min_steps, reduction_factor)");
      for (const auto& p : v) {
        const std::string pk = p.first.as<std::string>();
        if (pk == "min_steps") c.search.pruning.min_steps = read_as<int64_t>(p.second, path, "pruning." + pk);
        else if (pk == "reduction_factor")
          c.search.pruning.reduction_factor = read_as<int64_t>(p.second, path, "pruning." + pk);
        else
          throw Error(path + ": unknown key 'pruning." + pk + "'" + at_line(p.first) +
                      " (expected min_steps, reduction_factor)");
      }
    } else if (key == "space") {
      have_space = true;
      space_node = v;
    } else {
      throw Error(path + ": unknown key '" + key + "'" + at_line(kv.first) +
                  " (expected name, out_dir, train, objective, algorithm, seed, trials, time_budget, parallel, "
                  "startup_trials, candidates, pruning, space)");
    }
  }
  require(have_train, path + ": missing key 'train' (a pricer train config file, or a mapping of its keys)");
  require(have_space, path + ": missing key 'space' (the parameters to search)");
  c.space = SearchSpace::from_yaml(space_node, path);
  if (c.out_dir.empty()) c.out_dir = (fs::path("runs") / "sweeps" / c.name).string();
  require(c.objective == "loss" || c.objective == "mae",
          path + ": key 'objective': loss or mae, not '" + c.objective + "'");
  try {
    c.search.validate();
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  require(!c.train.model.empty(), path + ": the train settings name no model");
  require(!c.train.dataset.empty(), path + ": the train settings name no dataset");
  check_space_keys(c, space_node);
  return c;
}

}  // namespace pricer::sweep
