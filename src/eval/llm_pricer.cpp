#include "eval/llm_pricer.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>

#include "core/error.h"
#include "data/cross_fit.h"
#include "io/gguf.h"
#include "predict/calibration.h"

namespace pricer::eval {

namespace {

std::string options_key(const ModelPricerOptions& o) {
  return nlohmann::json{{"model", o.model},
                        {"adapter", o.adapter},
                        {"tokenizer", o.tokenizer},
                        {"dtype", o.base_dtype},
                        {"compute", o.compute_dtype},
                        {"template", o.prompt_template},
                        {"max_prompt", o.max_prompt_tokens},
                        {"text_tokens", o.text_token_budget},
                        {"batch", o.batch},
                        {"coverage", o.coverage}}
      .dump();
}

// What one model is: its files and whether its prompts carry comparables.
nlohmann::json member_stats(const ModelPricer& mp) {
  const ModelPricerOptions& o = mp.options();
  nlohmann::json j = {
      {"model", o.model}, {"adapter", o.adapter}, {"comparables", mp.comparables() ? mp.comparables()->k() : 0}};
  if (mp.comparables()) j["comparables_index"] = mp.comparables_path();
  return j;
}

// A member's own MAE on these items, so a report shows what the average bought.
double mean_abs_error(const std::vector<PricePrediction>& preds, const std::vector<Item>& items) {
  double sum = 0;
  for (std::size_t i = 0; i < preds.size(); ++i) sum += std::abs(preds[i].price - items[i].price);
  return preds.empty() ? 0.0 : sum / static_cast<double>(preds.size());
}

}  // namespace

LlmPricer::LlmPricer(std::string name, std::vector<std::shared_ptr<ModelPricer>> models, PriceMode mode)
    : name_(std::move(name)), models_(std::move(models)), mode_(mode) {}

std::vector<double> LlmPricer::predict(const std::vector<Item>& items) {
  std::vector<std::string> prompts;
  prompts.reserve(items.size());
  for (const auto& it : items) prompts.push_back(it.prompt.empty() ? models_.prompt_for(it.text) : it.prompt);
  const std::vector<PricePrediction> preds = models_.predict(prompts, mode_);
  std::vector<double> prices;
  std::size_t inside = 0, unparsed = 0;
  double width = 0, mass = 0;
  interval_width_.clear();
  for (std::size_t i = 0; i < preds.size(); ++i) {
    const PricePrediction& p = preds[i];
    prices.push_back(p.price);
    interval_width_.push_back(std::log1p(p.dist.hi) - std::log1p(p.dist.lo));
    inside += interval_holds(items[i].price, p.dist.lo, p.dist.hi);
    width += p.dist.hi - p.dist.lo;
    mass += p.dist.number_mass;
    unparsed += !p.parsed;
  }
  const double n = static_cast<double>(std::max<std::size_t>(preds.size(), 1));
  const ModelPricerOptions& o = models_.members().front()->options();
  stats_ = {
      {"mode", price_mode_name(mode_)},
      {"readout", std::string(price_mode_description(mode_)) +
                      (models_.members().size() > 1
                           ? ", averaged over " + std::to_string(models_.members().size()) + " models in log(1 + price)"
                           : "")},
      {"interval_nominal", o.coverage},
      {"interval_coverage", static_cast<double>(inside) / n},
      {"interval_mean_width", width / n},
      {"mean_number_mass", mass / n}};
  if (models_.members().size() == 1) {
    stats_.update(member_stats(*models_.members().front()));
  } else {
    stats_["averaged"] = "log(1 + price) mean of " + std::to_string(models_.members().size()) + " models";
    stats_["models"] = nlohmann::json::array();
    for (std::size_t m = 0; m < models_.members().size(); ++m) {
      nlohmann::json j = member_stats(*models_.members()[m]);
      j["mae"] = mean_abs_error(models_.member_predictions()[m], items);
      stats_["models"].push_back(j);
    }
  }
  if (mode_ == PriceMode::Greedy) stats_["greedy_unparsed"] = unparsed;
  return prices;
}

nlohmann::json LlmPricer::stats() const { return stats_; }

std::map<std::string, std::vector<double>> LlmPricer::item_signals() const {
  return {{"interval_width", interval_width_}};
}

nlohmann::json LlmPricer::combine_stats(const std::vector<nlohmann::json>& shares) const {
  nlohmann::json all = shares.front();
  if (!all.contains("greedy_unparsed")) return all;
  int64_t unparsed = 0;
  for (const auto& s : shares) unparsed += s.value("greedy_unparsed", int64_t{0});
  all["greedy_unparsed"] = unparsed;
  return all;
}

std::shared_ptr<ModelPricer> shared_model_pricer(const ModelPricerOptions& opt) {
  static std::mutex mu;
  static std::map<std::string, std::weak_ptr<ModelPricer>> live;
  std::lock_guard<std::mutex> lock(mu);
  const std::string key = options_key(opt);
  if (auto p = live[key].lock()) return p;
  auto p = std::make_shared<ModelPricer>(opt);
  live[key] = p;
  return p;
}

std::unique_ptr<Pricer> make_llm_pricer(const std::string& name, const PricerContext& ctx) {
  const auto dash = name.find('-');
  const std::string kind = name.substr(0, dash);
  require(kind == "finetuned" || kind == "base", "not an LLM pricer: \"" + name + "\"");
  const PriceMode mode = price_mode_from_name(
      dash == std::string::npos ? ctx.param("mode", price_mode_name(kDefaultPriceMode)) : name.substr(dash + 1));
  ModelPricerOptions o;
  const std::string base = ctx.param("model");
  // The base reads neither the fine-tuned models nor the adapters: it is what they start from.
  const std::vector<std::string> merged =
      kind == "base" ? std::vector<std::string>{} : ctx.list_param("finetuned_model");
  std::vector<std::string> adapters;
  if (kind == "base") {
    require(!base.empty(), "pricer \"" + name + "\" needs --param model=PATH (the base model)");
    o.model = base;
  } else if (merged.empty()) {
    o.model = base;
    adapters = ctx.list_param("adapter");
    require(!o.model.empty() && !adapters.empty(),
            "pricer \"" + name + "\" needs --param model=PATH --param adapter=PATH (or --param finetuned_model=PATH)");
  }
  o.tokenizer = ctx.param("tokenizer");
  o.base_dtype = ctx.param("base_dtype", o.base_dtype);
  o.compute_dtype = ctx.param("compute_dtype", o.compute_dtype);
  o.prompt_template = ctx.param("prompt_template", o.prompt_template);
  o.coverage = ctx.number_param("coverage", o.coverage);
  o.batch = static_cast<int64_t>(ctx.number_param("batch", static_cast<double>(o.batch)));
  o.text_token_budget = static_cast<int64_t>(ctx.number_param("text_tokens", static_cast<double>(o.text_token_budget)));
  o.max_prompt_tokens =
      static_cast<int64_t>(ctx.number_param("max_prompt_tokens", static_cast<double>(o.max_prompt_tokens)));
  o.progress = true;
  std::vector<std::shared_ptr<ModelPricer>> models;
  for (const auto& m : member_options(o, merged, adapters)) models.push_back(shared_model_pricer(m));
  return std::make_unique<LlmPricer>(name, std::move(models), mode);
}

namespace {

// The (folds, fold) a model or adapter file was marked with by `train --cross-fit-folds`.
std::pair<int, int> cross_fit_mark(const std::string& path, bool adapter) {
  namespace fs = std::filesystem;
  const fs::path gguf = adapter && fs::is_directory(path) ? fs::path(path) / "adapter.gguf" : fs::path(path);
  require(gguf.extension() == ".gguf" && fs::is_regular_file(gguf),
          path + ": a fold twin must be a GGUF " +
              (adapter ? "adapter (or a directory holding adapter.gguf)" : "model") +
              ", whose metadata says which fold it left out");
  const GgufFile f = GgufFile::open(gguf.string());
  const std::optional<int64_t> folds = f.get_int_opt(data::kCrossFitFoldsKey),
                               fold = f.get_int_opt(data::kCrossFitFoldKey);
  require(folds && fold, gguf.string() + ": no cross-fitting marks (" + data::kCrossFitFoldsKey +
                             "): it learned from every training item, so it cannot price them out of fold");
  require(*folds >= 2 && *folds <= data::kMaxCrossFitFolds && *fold >= 0 && *fold < *folds,
          gguf.string() + ": cross-fitting marks out of range (fold " + std::to_string(*fold) + " of " +
              std::to_string(*folds) + ")");
  return {static_cast<int>(*folds), static_cast<int>(*fold)};
}

}  // namespace

std::vector<std::string> fold_twins_by_fold(const std::vector<std::string>& paths, bool adapters) {
  std::vector<std::string> by_fold;
  for (const auto& p : paths) {
    const auto [folds, fold] = cross_fit_mark(p, adapters);
    if (by_fold.empty()) by_fold.resize(static_cast<std::size_t>(folds));
    require(by_fold.size() == static_cast<std::size_t>(folds),
            p + ": left out fold " + std::to_string(fold) + " of " + std::to_string(folds) + ", while " +
                paths.front() + " was cut into " + std::to_string(by_fold.size()) + " folds");
    std::string& slot = by_fold[static_cast<std::size_t>(fold)];
    require(slot.empty(), p + " and " + slot + " both left out fold " + std::to_string(fold));
    slot = p;
  }
  for (std::size_t k = 0; k < by_fold.size(); ++k)
    require(!by_fold[k].empty(), "fold twins: none left out fold " + std::to_string(k) + " of " +
                                     std::to_string(by_fold.size()) + " (give one model per fold)");
  return by_fold;
}

}  // namespace pricer::eval
