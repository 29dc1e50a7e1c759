#include "eval/ensemble.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/comm.h"
#include "core/error.h"
#include "data/cross_fit.h"
#include "data/text.h"
#include "eval/item.h"
#include "eval/llm_pricer.h"

namespace pricer::eval {

namespace {

uint64_t item_key(const Item& it) { return data::hash64(it.title + '\x1f' + it.text + '\x1f' + it.prompt); }

// The string an item's fold is cut by: its prompt, as `train --cross-fit-folds` cuts it; plain
// product lines carry none, so their title and text.
std::string fold_key(const Item& it) { return it.prompt.empty() ? it.title + '\x1f' + it.text : it.prompt; }

// Prices below a cent carry no log-price information a member could mean; they clamp there.
double log_price(double p, const std::string& member) {
  require(std::isfinite(p), "ensemble: member \"" + member + "\" returned a non-finite price");
  return std::log(std::max(p, 0.01));
}

std::vector<Item> pick(const std::vector<Item>& items, const std::vector<size_t>& idx) {
  std::vector<Item> out;
  out.reserve(idx.size());
  for (size_t i : idx) out.push_back(items[i]);
  return out;
}

double mae_of(const std::vector<double>& log_pred, const std::vector<Item>& items) {
  double s = 0;
  for (size_t i = 0; i < items.size(); ++i) s += std::abs(std::exp(log_pred[i]) - items[i].price);
  return s / static_cast<double>(std::max<size_t>(1, items.size()));
}

// The names of `t`'s columns less any non-member column equal to an earlier one (the interval
// width that two readouts of one model both report).
std::vector<std::string> distinct_columns(const StackTable& t) {
  std::vector<std::string> keep;
  for (size_t j = 0; j < t.columns.size(); ++j) {
    bool repeat = false;
    for (size_t e = t.members; e < j && j >= t.members && !repeat; ++e) repeat = t.columns[e] == t.columns[j];
    if (!repeat) keep.push_back(t.names[j]);
  }
  return keep;
}

}  // namespace

StackerKind parse_stacker_kind(const std::string& s) {
  if (s == "linear") return StackerKind::Linear;
  if (s == "trees") return StackerKind::Trees;
  throw Error("--param ensemble_stacker=" + s + ": linear or trees");
}

EnsemblePricer::EnsemblePricer(std::vector<EnsembleMember> members, EnsembleOptions opt)
    : members_(std::move(members)), opt_(std::move(opt)) {
  require(!members_.empty(), "ensemble: no members");
  require(opt_.folds >= 2 && opt_.folds <= data::kMaxCrossFitFolds,
          "ensemble: cross-fitting needs 2 to " + std::to_string(data::kMaxCrossFitFolds) + " folds");
  // The final members, built once here: a bad name or a missing setting fails before any fitting,
  // and a member that loads a model loads it once.
  for (const auto& m : members_) fitted_.push_back(m.make());
  if (opt_.stacker == StackerKind::Trees) stacker_ = make_tree_stacker(opt_.trees);
  else stacker_ = std::make_unique<LinearStacker>(opt_.objective, opt_.ridge);
}

bool EnsemblePricer::cross_fittable() const {
  for (size_t j = 0; j < members_.size(); ++j)
    if (!fitted_[j]->needs_training() && !members_[j].make_fold) return false;
  return true;
}

StackTable EnsemblePricer::member_columns(std::vector<std::unique_ptr<Pricer>>& pricers,
                                          const std::vector<Item>& items) const {
  StackTable t;
  for (size_t j = 0; j < pricers.size(); ++j) {
    const std::vector<double> p = pricers[j]->predict(items);
    require(p.size() == items.size(), "ensemble: member \"" + members_[j].name + "\" returned the wrong count");
    std::vector<double> col;
    col.reserve(p.size());
    for (double v : p) col.push_back(log_price(v, members_[j].name));
    t.names.push_back(members_[j].name);
    t.columns.push_back(std::move(col));
  }
  t.members = t.columns.size();
  if (!stacker_->reads_everything()) return t;
  for (size_t j = 0; j < pricers.size(); ++j) {
    for (auto& [signal, values] : pricers[j]->item_signals()) {
      require(values.size() == items.size(),
              "ensemble: member \"" + members_[j].name + "\" signal \"" + signal + "\" has the wrong count");
      t.names.push_back(members_[j].name + ":" + signal);
      t.columns.push_back(std::move(values));
    }
  }
  return t;
}

StackTable EnsemblePricer::fold_columns(int f, const std::vector<Item>& in, const std::vector<Item>& out) {
  // Every member of the fold is built before any prices, so members that share a model (two
  // readouts of one fine-tuned model) load it once.
  std::vector<std::unique_ptr<Pricer>> pricers;
  for (size_t j = 0; j < members_.size(); ++j) {
    if (fitted_[j]->needs_training()) {
      pricers.push_back(members_[j].make());
      pricers.back()->fit(in);
    } else {
      pricers.push_back(members_[j].make_fold(f));
    }
  }
  return member_columns(pricers, out);
}

StackTable EnsemblePricer::out_of_fold_columns(const std::vector<Item>& train) {
  const int k = opt_.folds;
  const bool twins = std::any_of(members_.begin(), members_.end(), [](const auto& m) { return bool(m.make_fold); });
  std::vector<std::vector<size_t>> outs(static_cast<size_t>(k));
  for (size_t i = 0; i < train.size(); ++i) {
    require(!twins || !train[i].prompt.empty(),
            "ensemble: the fold twins left out training items by their prompts, "
            "and training item " +
                std::to_string(i + 1) + " has none");
    outs[static_cast<size_t>(data::cross_fit_fold(fold_key(train[i]), k))].push_back(i);
  }
  stats_["fold_items"] = nlohmann::json::array();
  for (const auto& out : outs) stats_["fold_items"].push_back(out.size());
  StackTable all;
  for (int f = 0; f < k; ++f) {
    const std::vector<size_t>& out = outs[static_cast<size_t>(f)];
    require(!out.empty() && out.size() < train.size(), [&] {
      return "ensemble: fold " + std::to_string(f) + " of " + std::to_string(k) + " holds " +
             (out.empty() ? "none" : "all") + " of the " + std::to_string(train.size()) + " training items";
    });
    std::vector<size_t> in;
    for (size_t i = 0, o = 0; i < train.size(); ++i) {
      if (o < out.size() && out[o] == i) ++o;
      else in.push_back(i);
    }
    StackTable part = fold_columns(f, pick(train, in), pick(train, out));
    if (f == 0) {
      all.names = part.names;
      all.members = part.members;
      all.columns.assign(part.names.size(), std::vector<double>(train.size()));
    }
    require(part.names == all.names, "ensemble: fold " + std::to_string(f) + "'s members report other signals");
    for (size_t j = 0; j < all.columns.size(); ++j)
      for (size_t r = 0; r < out.size(); ++r) all.columns[j][out[r]] = part.columns[j][r];
  }
  return all;
}

void EnsemblePricer::add_item_columns(const std::vector<Item>& items, StackTable& t) const {
  if (!opt_.item_features) return;
  const bool all = stacker_->reads_everything();
  const std::vector<std::string> names = all ? features_.names() : spec_quantity_names();
  const size_t first = t.columns.size();
  t.columns.resize(first + names.size(), std::vector<double>(items.size()));
  for (const auto& n : names) t.names.push_back(all ? n : "spec:" + n);
  for (size_t i = 0; i < items.size(); ++i) {
    const std::vector<double> row = all ? features_.row(items[i]) : spec_quantities(items[i].text);
    for (size_t c = 0; c < row.size(); ++c) t.columns[first + c][i] = row[c];
  }
}

StackTable EnsemblePricer::select(StackTable t, const std::vector<std::string>& names) {
  StackTable out;
  out.members = t.members;
  for (const auto& n : names) {
    const auto at = std::find(t.names.begin(), t.names.end(), n);
    require(at != t.names.end(), "ensemble: column \"" + n + "\" is missing from the members' output");
    out.names.push_back(n);
    out.columns.push_back(std::move(t.columns[static_cast<size_t>(at - t.names.begin())]));
  }
  return out;
}

StackTable EnsemblePricer::fit_table(const std::vector<Item>& train, std::vector<Item>& rows) {
  if (!cross_fittable()) {
    std::string without;
    for (size_t j = 0; j < members_.size(); ++j)
      if (!fitted_[j]->needs_training() && !members_[j].make_fold)
        without += (without.empty() ? "" : ", ") + members_[j].name;
    require(!opt_.holdout.empty(),
            "ensemble: " + without +
                " trained outside this evaluation, on the training split, so its prices there "
                "are not what it does on new items: give its fold twins (--param cross_fit_models=...) or held-out "
                "items it did not train on (--param ensemble_fit=PATH)");
    rows = opt_.holdout;
    stats_["fit"] = "held-out items";
    stats_["fit_source"] = opt_.holdout_source;
    return member_columns(fitted_, opt_.holdout);
  }
  require(train.size() >= static_cast<size_t>(opt_.folds) * 2, "ensemble: too few training items to cross-fit");
  StackTable t = out_of_fold_columns(train);
  rows = train;
  stats_["fit"] = "cross-fitted on the training split";
  stats_["folds"] = opt_.folds;
  if (opt_.holdout.empty()) return t;
  // Items no member learned from, priced by the final members as the scored items are: more rows.
  const StackTable held = member_columns(fitted_, opt_.holdout);
  require(held.names == t.names, "ensemble: the held-out items' columns differ from the folds'");
  for (size_t j = 0; j < t.columns.size(); ++j)
    t.columns[j].insert(t.columns[j].end(), held.columns[j].begin(), held.columns[j].end());
  rows.insert(rows.end(), opt_.holdout.begin(), opt_.holdout.end());
  stats_["fit"] = "cross-fitted on the training split, and held-out items";
  stats_["fit_source"] = opt_.holdout_source;
  return t;
}

void EnsemblePricer::fit(const std::vector<Item>& train) {
  stats_ = nlohmann::json::object();
  for (auto& m : fitted_)
    if (m->needs_training()) m->fit(train);
  std::vector<Item> rows;
  StackTable t = fit_table(train, rows);
  if (opt_.item_features && stacker_->reads_everything()) features_.fit(rows);
  add_item_columns(rows, t);
  columns_ = distinct_columns(t);
  t = select(std::move(t), columns_);
  std::vector<double> y;
  fit_items_.clear();
  for (const auto& it : rows) {
    y.push_back(log_price(it.price, "truth"));
    fit_items_.insert(item_key(it));
  }
  stacker_->fit(t, y);
  stats_["fit_items"] = rows.size();
  stats_["fit_mae"] = mae_of(stacker_->predict(t), rows);
  stats_.update(stacker_->describe());
  if (!opt_.save_dir.empty() && comm::root()) {  // every rank fits the same; one writes
    write(opt_.save_dir);
    stats_["saved_to"] = opt_.save_dir.string();
  }
}

std::vector<double> EnsemblePricer::predict(const std::vector<Item>& items) {
  require(!fit_items_.empty(), "ensemble: predict before fit");
  size_t seen = 0;
  for (const auto& it : items) seen += fit_items_.contains(item_key(it));
  // A few items shared by two splits are the data's; most of them means the scored split is the
  // one the stack was fitted on.
  require(!refuse_fit_items_ || 2 * seen <= items.size(), "ensemble: " + std::to_string(seen) + " of the " +
                                                              std::to_string(items.size()) +
                                                              " items to price are items its stack was fitted on");
  stats_["scored_items_in_fit"] = seen;
  StackTable t = member_columns(fitted_, items);
  member_prices_.assign(members_.size(), {});
  for (size_t j = 0; j < members_.size(); ++j)
    for (double v : t.columns[j]) member_prices_[j].push_back(std::exp(v));
  add_item_columns(items, t);
  std::vector<double> out = stacker_->predict(select(std::move(t), columns_));
  for (double& p : out) p = std::exp(p);
  return out;
}

nlohmann::json EnsemblePricer::stats() const { return stats_; }

std::vector<std::string> EnsemblePricer::member_names() const {
  std::vector<std::string> out;
  for (const auto& m : members_) out.push_back(m.name);
  return out;
}

}  // namespace pricer::eval

namespace pricer::eval {

namespace fs = std::filesystem;

namespace {

std::vector<std::string> default_members(const PricerContext& ctx) {
  std::vector<std::string> names = {"tfidf"};
  if (pricer_factories().contains("xgboost")) names.push_back("xgboost");
  if (!ctx.param("adapter").empty() || !ctx.param("finetuned_model").empty()) {
    names.push_back("finetuned");
    names.push_back("finetuned-expected");
  }
  return names;
}

// A whole-number --param in [lo, hi].
int whole_param(const PricerContext& ctx, const std::string& key, int fallback, int lo, int hi) {
  const double v = ctx.number_param(key, fallback);
  require(v == std::floor(v) && v >= lo && v <= hi, "--param " + key + "=" + ctx.param(key) + ": a whole number, " +
                                                        std::to_string(lo) + " to " + std::to_string(hi));
  return static_cast<int>(v);
}

// What a saved ensemble's LLM members are built from: the settings they read, with paths made
// absolute so the ensemble can be read from anywhere.
PricerContext member_context(const PricerContext& ctx) {
  static const std::vector<std::string> keys = {
      "model",    "adapter", "finetuned_model",   "tokenizer",   "base_dtype",      "compute_dtype", "mode",
      "coverage", "batch",   "max_prompt_tokens", "text_tokens", "prompt_template", "comparables_k"};
  static const std::vector<std::string> paths = {"model", "adapter", "finetuned_model", "tokenizer"};
  PricerContext out;
  out.seed = ctx.seed;
  for (const auto& k : keys) {
    std::string v = ctx.param(k);
    if (v.empty()) continue;
    if (std::find(paths.begin(), paths.end(), k) != paths.end()) {
      std::string joined;
      for (const auto& p : split_comma_list(v)) {
        if (!joined.empty()) joined += ',';
        joined += fs::absolute(p).string();
      }
      v = joined;
    }
    out.params[k] = v;
  }
  return out;
}

// The fine-tuned members' fold twins (cross_fit_models or cross_fit_adapters), by fold.
std::vector<std::string> fold_twins(const PricerContext& ctx, bool& adapters) {
  const std::vector<std::string> models = ctx.list_param("cross_fit_models"),
                                 adapter_list = ctx.list_param("cross_fit_adapters");
  require(models.empty() || adapter_list.empty(), "--param cross_fit_models and cross_fit_adapters: one or the other");
  adapters = !adapter_list.empty();
  return adapters ? fold_twins_by_fold(adapter_list, true) : fold_twins_by_fold(models, false);
}

}  // namespace

std::unique_ptr<Pricer> make_ensemble_pricer(const PricerContext& ctx) {
  std::vector<std::string> names = ctx.list_param("ensemble");
  if (names.empty()) names = default_members(ctx);
  EnsembleOptions o;
  o.folds = whole_param(ctx, "ensemble_folds", 5, 2, data::kMaxCrossFitFolds);
  bool adapters = false;
  const std::vector<std::string> twins = fold_twins(ctx, adapters);
  if (!twins.empty()) {
    require(ctx.param("ensemble_folds").empty() || o.folds == static_cast<int>(twins.size()),
            "--param ensemble_folds=" + ctx.param("ensemble_folds") + ": the fold twins were trained with " +
                std::to_string(twins.size()) + " folds");
    o.folds = static_cast<int>(twins.size());
  }
  std::vector<EnsembleMember> members;
  for (const auto& n : names) {
    require(n != "ensemble", "ensemble: an ensemble cannot be its own member");
    EnsembleMember m{n, [n, ctx] { return make_pricer(n, ctx); }, {}};
    // A fine-tuned member's twin for fold f: the same pricer on the model that left fold f out.
    if (!twins.empty() && n.starts_with("finetuned")) {
      m.make_fold = [n, ctx, twins, adapters](int f) {
        PricerContext c = ctx;
        c.params.erase(adapters ? "finetuned_model" : "adapter");
        c.params[adapters ? "adapter" : "finetuned_model"] = twins.at(static_cast<size_t>(f));
        return make_pricer(n, c);
      };
    }
    members.push_back(std::move(m));
  }
  o.trees.seed = ctx.seed;
  o.stacker = parse_stacker_kind(ctx.param("ensemble_stacker", "linear"));
  o.trees.rounds = whole_param(ctx, "ensemble_tree_rounds", o.trees.rounds, 1, 10000);
  o.trees.depth = whole_param(ctx, "ensemble_tree_depth", o.trees.depth, 1, 12);
  o.trees.loss = ctx.param("ensemble_tree_loss", o.trees.loss);
  require(o.trees.loss == "squared" || o.trees.loss == "absolute",
          "--param ensemble_tree_loss=" + o.trees.loss + ": squared or absolute");
  o.objective = parse_stack_objective(ctx.param("ensemble_objective", "mae"));
  const std::string spec = ctx.param("ensemble_spec", "1");
  require(spec == "0" || spec == "1", "--param ensemble_spec=" + spec + ": 1 (item columns) or 0 (members only)");
  o.item_features = spec == "1";
  if (const std::string save = ctx.param("ensemble_save"); !save.empty()) {
    require(!fs::exists(save), "--param ensemble_save=" + save +
                                   ": it exists (a saved ensemble is never replaced; "
                                   "remove it or choose another)");
    for (const auto& n : names)
      require(savable_pricer(n), "--param ensemble_save: member \"" + n + "\" cannot be saved");
    o.save_dir = save;
    o.member_context = member_context(ctx);
  }
  if (const std::string fit = ctx.param("ensemble_fit"); !fit.empty()) {
    const std::string split = ctx.param("ensemble_fit_split", "test");
    o.holdout = read_split(fit, split);
    require(!o.holdout.empty(), fit + ": no held-out items for the ensemble's stack");
    o.holdout_source = std::filesystem::is_directory(fit) ? fit + " (" + split + ")" : fit;
  }
  return std::make_unique<EnsemblePricer>(std::move(members), std::move(o));
}

}  // namespace pricer::eval
