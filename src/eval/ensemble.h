#pragma once
// The ensemble pricer: stacks other pricers, as the course's last stage combined its pricers.
// Each member's price becomes a column log(price) of a table, beside (by default) the spec
// table's quantities; a stacker (eval/stacker.h: linear weights, or boosted trees that also read
// how sure each member was and the item's features) maps a row to a log price. It is fitted
// only ever on prices of items the member did not learn from:
//  - members fitted here (the classic baselines) are cross-fitted: the training split is cut
//    into K folds by a hash of each item's prompt (data/cross_fit.h) and each fold is priced by
//    a member fitted on the other folds;
//  - members trained elsewhere (the LLMs, which learned from the training split) are
//    cross-fitted when they come with fold twins: models trained with `train --cross-fit-folds K
//    --cross-fit-fold k`, each leaving out the items of fold k, which it then prices (the
//    folds cut alike, so no training item is priced by a model that saw it);
//  - otherwise the stack is fitted on held-out items no member saw (--param ensemble_fit=PATH):
//    the classic members, fitted on the whole training split, price them too. With every member
//    cross-fitted, held-out items given are added to the fit rows, priced by the final members.
// The final members (the classic ones fitted on the whole training split, the LLMs as given)
// price the scored items. The scored items are never the fit items: predicting a set that is
// mostly among them is an error.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "eval/features.h"
#include "eval/pricer.h"
#include "eval/stacker.h"

namespace pricer::eval {

struct EnsembleMember {
  std::string name;
  std::function<std::unique_ptr<Pricer>()> make;  // a fresh, unfitted instance per call
  // For a member trained elsewhere: its twin that never learned from fold k's items (empty when
  // it has none).
  std::function<std::unique_ptr<Pricer>(int fold)> make_fold;
};

enum class StackerKind { Linear, Trees };
StackerKind parse_stacker_kind(const std::string& s);  // "linear" | "trees"

struct EnsembleOptions {
  int folds = 5;  // of the cross-fitting (the fold twins' count when there are any)
  StackerKind stacker = StackerKind::Linear;
  StackObjective objective = StackObjective::DollarMae;  // the linear stack's
  TreeStackerOptions trees;
  double ridge = 1e-3;  // on the linear weights, relative to the number of fit items
  bool item_features = true;  // the spec quantities (linear) or all item features (trees) as columns
  std::vector<Item> holdout;  // items for the stack when a member was trained elsewhere
  std::string holdout_source;  // where they came from, for stats
  // Where the fitted ensemble is written (empty: nowhere), and what its members trained elsewhere
  // are built from when it is read back (their --param settings, paths made absolute).
  std::filesystem::path save_dir;
  PricerContext member_context;
};

class EnsemblePricer : public Pricer {
 public:
  EnsemblePricer(std::vector<EnsembleMember> members, EnsembleOptions opt);
  std::string name() const override { return "ensemble"; }
  bool needs_training() const override { return true; }
  void fit(const std::vector<Item>& train) override;
  std::vector<double> predict(const std::vector<Item>& items) override;
  // How the stack was fitted (cross-fit or held-out, on how many items), the fit items' MAE and
  // the stacker's settings and weights or importances.
  nlohmann::json stats() const override;
  // Writes the fitted ensemble into `dir` (swapped in whole): ensemble.json and a directory per
  // fitted member; members trained elsewhere are kept as the settings they are built from.
  void write(const std::filesystem::path& dir) const;
  // An ensemble write() wrote, ready to price any item (its fit items too: the refusal to score
  // them keeps an evaluation honest, not a catalogue); errors name the directory and what is wrong.
  static std::unique_ptr<EnsemblePricer> read(const std::filesystem::path& dir);
  // The members by name, and each one's prices of the last predict()'s items.
  std::vector<std::string> member_names() const;
  const std::vector<std::vector<double>>& member_prices() const { return member_prices_; }

 private:
  EnsemblePricer() = default;  // read() fills it
  // The members' columns for `items`, priced by `pricers` (in members_ order): each member's log
  // prices, then (when the stacker reads them) its signals.
  StackTable member_columns(std::vector<std::unique_ptr<Pricer>>& pricers, const std::vector<Item>& items) const;
  // The stack's fit table and the items of its rows (`rows`): the training split priced out of
  // fold, then the held-out items priced by the final members when there are any; or the
  // held-out items alone when a member trained elsewhere has no fold twins.
  StackTable fit_table(const std::vector<Item>& train, std::vector<Item>& rows);
  // The training split priced out of fold.
  StackTable out_of_fold_columns(const std::vector<Item>& train);
  // Out-of-fold prices of fold `f` of the training items (`out`), by members fitted on the others (`in`).
  StackTable fold_columns(int f, const std::vector<Item>& in, const std::vector<Item>& out);
  // The item columns after the members': spec quantities, or every item feature.
  void add_item_columns(const std::vector<Item>& items, StackTable& t) const;
  // Keeps the columns named in `names`, in that order (a signal two members share is kept once).
  static StackTable select(StackTable t, const std::vector<std::string>& names);
  bool cross_fittable() const;

  std::vector<EnsembleMember> members_;
  EnsembleOptions opt_;
  std::vector<std::unique_ptr<Pricer>> fitted_;  // the final members, in members_ order, built once
  std::unique_ptr<Stacker> stacker_;
  SimpleFeatures features_;  // fitted on the fit items (trees)
  std::vector<std::string> columns_;  // the stack's columns, as fitted
  std::unordered_set<uint64_t> fit_items_;  // hashes of the items the stack saw
  bool refuse_fit_items_ = true;  // predict() refuses a set that is mostly fit items
  std::vector<std::vector<double>> member_prices_;
  nlohmann::json stats_ = nlohmann::json::object();
};

// The ensemble of `pricer eval` from --param settings:
//   ensemble=tfidf,xgboost,finetuned  members (default: tfidf and xgboost, and finetuned with its
//                                     expected-value readout when a fine-tuned model is given)
//   ensemble_stacker=linear           linear (weights) or trees (boosted trees; needs fold twins
//                                     or many held-out items)
//   ensemble_fit=PATH                 held-out items for the stack (a JSON-lines file, or a
//                                     curate directory's ensemble_fit_split, default "test")
//   cross_fit_models=PATH,...         the fine-tuned members' fold twins: merged models (or, with
//   cross_fit_adapters=PATH,...       adapters on model=) trained with --cross-fit-folds K, one
//                                     per fold, in any order
//   ensemble_folds=5                  folds of the cross-fitting without fold twins
//   ensemble_objective=mae            what the linear weights minimise: mae (dollars) or log-ls
//   ensemble_spec=1                   item columns (0: members only)
//   ensemble_tree_rounds=300  ensemble_tree_depth=3  ensemble_tree_loss=squared|absolute
//   ensemble_save=DIR                 where the fitted ensemble is written, for `pricer predict
//                                     --ensemble DIR` (a new directory: an existing one is refused)
std::unique_ptr<Pricer> make_ensemble_pricer(const PricerContext& ctx);

}  // namespace pricer::eval
