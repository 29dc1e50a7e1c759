// The pricer registry: one line per pricer.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/error.h"
#include "core/suggest.h"
#include "eval/baselines.h"
#include "eval/ensemble.h"
#include "eval/frontier_pricer.h"
#include "eval/human.h"
#include "eval/llm_pricer.h"
#include "eval/pricer.h"
#include "eval/xgboost_pricer.h"

namespace pricer::eval {

const std::vector<std::string>& known_param_keys() {
  static const std::vector<std::string> keys = {"model",
                                                "adapter",
                                                "finetuned_model",
                                                "tokenizer",
                                                "base_dtype",
                                                "compute_dtype",
                                                "mode",
                                                "coverage",
                                                "batch",
                                                "max_prompt_tokens",
                                                "text_tokens",
                                                "prompt_template",
                                                "comparables_k",
                                                "ensemble",
                                                "ensemble_folds",
                                                "ensemble_objective",
                                                "ensemble_fit",
                                                "ensemble_fit_split",
                                                "ensemble_spec",
                                                "ensemble_stacker",
                                                "ensemble_tree_rounds",
                                                "ensemble_tree_depth",
                                                "cross_fit_models",
                                                "cross_fit_adapters",
                                                "ensemble_save",
                                                "ensemble_tree_loss"};
  return keys;
}

void check_param_keys(const std::map<std::string, std::string>& params) {
  const auto& keys = known_param_keys();
  for (const auto& [key, value] : params) {
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) continue;
    std::string list;
    for (const auto& k : keys) list += (list.empty() ? "" : ", ") + k;
    throw Error("--param " + key + "=" + value + ": no pricer reads '" + key + "'" + did_you_mean(key, keys) +
                " (keys: " + list + ")");
  }
}

std::string PricerContext::param(const std::string& key, const std::string& fallback) const {
  const auto& keys = known_param_keys();
  require(std::find(keys.begin(), keys.end(), key) != keys.end(),
          "internal: --param key '" + key + "' is read but not listed in known_param_keys()");
  auto it = params.find(key);
  return it == params.end() ? fallback : it->second;
}

double PricerContext::number_param(const std::string& key, double fallback) const {
  const std::string s = param(key);
  if (s.empty()) return fallback;
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  require(used == s.size() && std::isfinite(v), "--param " + key + "=" + s + " is not a number");
  return v;
}

std::vector<std::string> split_comma_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream list(s);
  for (std::string item; std::getline(list, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<std::string> PricerContext::list_param(const std::string& key) const {
  return split_comma_list(param(key));
}

const std::map<std::string, PricerFactory>& pricer_factories() {
  static const std::map<std::string, PricerFactory> factories = {
      {"random", [](const PricerContext& c) { return std::make_unique<RandomPricer>(c.seed); }},
      {"mean", [](const PricerContext&) { return std::make_unique<MeanPricer>(); }},
      {"linear", [](const PricerContext&) { return std::make_unique<LinearPricer>(); }},
      {"tfidf", [](const PricerContext&) { return std::make_unique<TfidfRidgePricer>(); }},
      {"comparables",
       [](const PricerContext& c) {
         const double k = c.number_param("comparables_k", 5);
         require(k == std::floor(k) && k >= 1 && k <= retrieval::kMaxComparables,
                 "--param comparables_k=" + c.param("comparables_k") + ": a whole number from 1 to " +
                     std::to_string(retrieval::kMaxComparables));
         return std::make_unique<ComparablesPricer>(static_cast<int>(k));
       }},
#ifdef PRICER_HAVE_XGBOOST
      {"xgboost",
       [](const PricerContext& c) {
         XgboostOptions o;
         o.seed = c.seed;
         return std::make_unique<XgboostPricer>(o);
       }},
#endif
      {"human",
       [](const PricerContext& c) {
         require(!c.human_csv.empty(), "pricer \"human\" needs --human-import FILE.csv");
         return std::make_unique<HumanPricer>(c.human_csv);
       }},
      {"frontier", [](const PricerContext& c) { return std::make_unique<FrontierPricer>(c.frontier); }},
      // The LLMs (see llm_pricer.h for their --param keys): plain names read --param mode (default:
      // the default readout, kDefaultPriceMode).
      {"finetuned", [](const PricerContext& c) { return make_llm_pricer("finetuned", c); }},
      {"finetuned-expected", [](const PricerContext& c) { return make_llm_pricer("finetuned-expected", c); }},
      {"finetuned-top3", [](const PricerContext& c) { return make_llm_pricer("finetuned-top3", c); }},
      {"finetuned-greedy", [](const PricerContext& c) { return make_llm_pricer("finetuned-greedy", c); }},
      {"finetuned-median", [](const PricerContext& c) { return make_llm_pricer("finetuned-median", c); }},
      {"base", [](const PricerContext& c) { return make_llm_pricer("base", c); }},
      {"base-expected", [](const PricerContext& c) { return make_llm_pricer("base-expected", c); }},
      {"base-top3", [](const PricerContext& c) { return make_llm_pricer("base-top3", c); }},
      {"base-greedy", [](const PricerContext& c) { return make_llm_pricer("base-greedy", c); }},
      {"base-median", [](const PricerContext& c) { return make_llm_pricer("base-median", c); }},
      // Stacks the others (see ensemble.h for its --param keys).
      {"ensemble", [](const PricerContext& c) { return make_ensemble_pricer(c); }},
  };
  return factories;
}

nlohmann::json Pricer::save(const std::filesystem::path& dir) const {
  (void)dir;
  throw Error("pricer \"" + name() + "\" cannot be saved");
}

namespace {

using PricerLoader = std::function<std::unique_ptr<Pricer>(const nlohmann::json&, const std::filesystem::path&)>;

// The fitted pricers a saved ensemble can hold, with how each is read back.
const std::map<std::string, PricerLoader>& pricer_loaders() {
  static const std::map<std::string, PricerLoader> loaders = {
      {"random", RandomPricer::load},           {"mean", MeanPricer::load},
      {"linear", LinearPricer::load},           {"tfidf", TfidfRidgePricer::load},
      {"comparables", ComparablesPricer::load},
#ifdef PRICER_HAVE_XGBOOST
      {"xgboost", XgboostPricer::load},
#endif
  };
  return loaders;
}

bool is_llm_pricer(const std::string& name) { return name.starts_with("finetuned") || name.starts_with("base"); }

}  // namespace

bool savable_pricer(const std::string& name) { return pricer_loaders().contains(name) || is_llm_pricer(name); }

std::unique_ptr<Pricer> load_pricer(const std::string& name, const nlohmann::json& state,
                                    const std::filesystem::path& dir, const PricerContext& ctx) {
  const auto& loaders = pricer_loaders();
  const auto it = loaders.find(name);
  if (it == loaders.end()) {
    require(is_llm_pricer(name), dir.string() + ": a saved ensemble cannot hold pricer \"" + name +
                                     "\" (fitted ones this build reads, and the LLMs)");
    return make_pricer(name, ctx);
  }
  try {
    return it->second(state, dir);
  } catch (const nlohmann::json::exception& e) {
    throw Error(dir.string() + ": the saved \"" + name + "\" pricer is not one this build reads: " + e.what());
  }
}

std::unique_ptr<Pricer> make_pricer(const std::string& name, const PricerContext& ctx) {
  const auto& f = pricer_factories();
  auto it = f.find(name);
  if (it == f.end()) {
    std::string known;
    for (const auto& [k, v] : f) known += (known.empty() ? "" : ", ") + k;
    throw Error("unknown pricer \"" + name + "\" (known: " + known + ")");
  }
  return it->second(ctx);
}

}  // namespace pricer::eval
