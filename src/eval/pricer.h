#pragma once
// A pricer turns product items into price estimates. Every pricer gets the whole batch at once,
// so one that loads a model (the LLM pricers) loads it once per evaluation and may batch freely.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/frontier.h"
#include "eval/item.h"

namespace pricer::eval {

class Pricer {
 public:
  virtual ~Pricer() = default;
  virtual std::string name() const = 0;
  // Whether fit() needs a training split (the classic baselines do; a model or a human not).
  virtual bool needs_training() const { return false; }
  virtual void fit(const std::vector<Item>& train) { (void)train; }
  // One price per item, in item order; NaN for an item the pricer could not price (a request that
  // failed, a reply without a price), never a made-up number.
  virtual std::vector<double> predict(const std::vector<Item>& items) = 0;
  // Why items went unpriced in the last predict() ("connection refused: 3 items"); empty when
  // the pricer has nothing to add.
  virtual std::string unpriced_reason() const { return ""; }
  // Per-item figures of the last predict() beside the prices, by name, one per item: how sure
  // the pricer was (an LLM's interval width), for a stacker to read. None by default.
  virtual std::map<std::string, std::vector<double>> item_signals() const { return {}; }
  // Writes what predict() needs of a fitted pricer into the empty directory `dir` (larger parts as
  // files there) and returns the rest as JSON, for a saved ensemble (load_pricer reads it back).
  // Pricers that cannot be saved throw Error naming themselves.
  virtual nlohmann::json save(const std::filesystem::path& dir) const;
  // Extra figures for results.json (tokens, cost, failed replies, model settings).
  virtual nlohmann::json stats() const { return nlohmann::json::object(); }
  // Whether items may be priced in shares (one per MPI rank) and the prices put together. A
  // pricer that may not (the human's guesses, read by item position; a paid API, called once per
  // item) prices them all on rank 0.
  virtual bool shardable() const { return true; }
  // The stats of a sharded evaluation from each share's stats() in rank order: the first by
  // default (settings, the same on every rank); pricers that count per item add up their counts.
  virtual nlohmann::json combine_stats(const std::vector<nlohmann::json>& shares) const { return shares.front(); }
};

// Everything a factory may need to build its pricer.
struct PricerContext {
  uint64_t seed = 42;
  std::string human_csv;  // guesses read by the "human" pricer (see human.h)
  FrontierConfig frontier;
  // Free-form settings from `--param key=value`, for pricers with their own options
  // (e.g. a model path); each pricer documents the keys it reads.
  std::map<std::string, std::string> params;

  // The --param value for key, or fallback when it was not given. Every key a pricer reads is
  // listed in known_param_keys() (asking for another is a bug, and throws).
  std::string param(const std::string& key, const std::string& fallback = "") const;
  // The --param value for key as a finite number, or fallback when it was not given; Error naming
  // the setting otherwise.
  double number_param(const std::string& key, double fallback) const;
  // The --param value for key as a comma-separated list (empty items dropped).
  std::vector<std::string> list_param(const std::string& key) const;
};

// Every --param key some pricer reads; check_param_keys() refuses others (a typo such as
// "cverage=0.9" would otherwise be ignored), suggesting the nearest.
const std::vector<std::string>& known_param_keys();
void check_param_keys(const std::map<std::string, std::string>& params);

// "a,b,,c" -> {a, b, c}: pricer names, model paths.
std::vector<std::string> split_comma_list(const std::string& s);

using PricerFactory = std::function<std::unique_ptr<Pricer>(const PricerContext&)>;

// Every pricer by name. Adding one is one line in registry.cpp.
const std::map<std::string, PricerFactory>& pricer_factories();

// Throws Error naming the known pricers when `name` is not one of them.
std::unique_ptr<Pricer> make_pricer(const std::string& name, const PricerContext& ctx);

// Whether a saved ensemble can hold the pricer: a fitted one load_pricer reads back, or an LLM,
// rebuilt from its settings.
bool savable_pricer(const std::string& name);

// A fitted pricer as save() wrote it (`state` and the files in `dir`); a pricer that needs no
// fitting (an LLM) is built from `ctx` as make_pricer builds it. Errors name `dir`.
std::unique_ptr<Pricer> load_pricer(const std::string& name, const nlohmann::json& state,
                                    const std::filesystem::path& dir, const PricerContext& ctx);

}  // namespace pricer::eval
