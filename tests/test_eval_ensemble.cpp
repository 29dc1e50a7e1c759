// The ensemble pricer: its non-negative stacking weights against known answers, cross-fitting
// that never lets a member price what it was fitted on (nor the scored split touch any fit), the
// held-out path for members trained elsewhere, and that stacking two noisy pricers beats both.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>

#include "core/error.h"
#include "data/cross_fit.h"
#include "eval/ensemble.h"

using namespace pricer::eval;

namespace {

std::vector<Item> make_items(int n, int first_id, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> price(3.5, 1.0);
  std::vector<Item> items;
  for (int i = 0; i < n; ++i) {
    Item it;
    it.title = "item " + std::to_string(first_id + i);
    it.text = it.title + " text";
    it.price = std::min(999.0, std::max(0.5, price(rng)));
    items.push_back(it);
  }
  return items;
}

// What every spy saw, across all instances.
struct Journal {
  std::vector<std::set<std::string>> fits;  // titles fitted on, per fit call
  std::vector<std::pair<size_t, std::set<std::string>>> predictions;  // (fit call or npos, titles)
};

// A pricer that knows the truth up to a planted multiplicative noise (a seeded hash of the
// title), and writes down what it is fitted on and asked to price.
class SpyPricer : public Pricer {
 public:
  SpyPricer(Journal* j, uint64_t salt, double noise, bool trains)
      : j_(j), salt_(salt), noise_(noise), trains_(trains) {}
  std::string name() const override { return "spy"; }
  bool needs_training() const override { return trains_; }
  void fit(const std::vector<Item>& train) override {
    std::set<std::string> t;
    for (const auto& it : train) t.insert(it.title);
    fit_call_ = j_->fits.size();
    j_->fits.push_back(std::move(t));
  }
  std::vector<double> predict(const std::vector<Item>& items) override {
    std::set<std::string> t;
    std::vector<double> out;
    for (const auto& it : items) {
      t.insert(it.title);
      std::mt19937_64 rng(std::hash<std::string>{}(it.title) ^ salt_);
      std::normal_distribution<double> e(0.0, noise_);
      out.push_back(it.price * std::exp(e(rng)));
    }
    j_->predictions.emplace_back(fit_call_, std::move(t));
    return out;
  }

 private:
  Journal* j_;
  uint64_t salt_;
  double noise_;
  bool trains_;
  size_t fit_call_ = static_cast<size_t>(-1);
};

EnsembleMember spy(Journal* j, uint64_t salt, double noise, bool trains = true) {
  return {"spy" + std::to_string(salt), [=] { return std::make_unique<SpyPricer>(j, salt, noise, trains); }, {}};
}

// Curate-style items: each with a prompt, which cross-fitting's folds are cut by.
std::vector<Item> with_prompts(std::vector<Item> items) {
  for (auto& it : items) it.prompt = "What does this cost?\n\n" + it.text + "\n\nPrice is $";
  return items;
}

// A fine-tuned model's fold twin: it learned from every item outside fold `fold`, and writes
// down which items it is asked to price.
class TwinSpy : public Pricer {
 public:
  TwinSpy(int fold, std::vector<std::pair<int, std::set<std::string>>>* priced) : fold_(fold), priced_(priced) {}
  std::string name() const override { return "twin"; }
  std::vector<double> predict(const std::vector<Item>& items) override {
    std::set<std::string> t;
    for (const auto& it : items) t.insert(it.prompt);
    priced_->emplace_back(fold_, std::move(t));
    std::vector<double> out;
    for (const auto& it : items) out.push_back(it.price * 1.1);
    return out;
  }

 private:
  int fold_;
  std::vector<std::pair<int, std::set<std::string>>>* priced_;
};

// Knows each price up to a noise whose size it reports per item ("interval_width"): sure of
// half the items (sigma 0.05), lost on the others (sigma 1.2).
class SignalSpy : public Pricer {
 public:
  std::string name() const override { return "signal"; }
  bool needs_training() const override { return true; }
  std::vector<double> predict(const std::vector<Item>& items) override {
    std::vector<double> out;
    width_.clear();
    for (const auto& it : items) {
      const size_t h = std::hash<std::string>{}(it.title);
      const double sigma = h % 2 ? 0.05 : 1.2;
      std::mt19937_64 rng(h ^ 77);
      out.push_back(it.price * std::exp(std::normal_distribution<double>(0.0, sigma)(rng)));
      width_.push_back(sigma);
    }
    return out;
  }
  std::map<std::string, std::vector<double>> item_signals() const override { return {{"interval_width", width_}}; }

 private:
  std::vector<double> width_;
};

double mae(const std::vector<Item>& items, const std::vector<double>& pred) {
  double s = 0;
  for (size_t i = 0; i < items.size(); ++i) s += std::abs(pred[i] - items[i].price);
  return s / static_cast<double>(items.size());
}

}  // namespace

TEST(StackWeights, RecoverAPlantedBlendAndStayNonNegative) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> n(0.0, 1.0);
  std::vector<std::vector<double>> x(3);
  std::vector<double> y;
  for (int i = 0; i < 500; ++i) {
    const double a = n(rng), b = n(rng);
    x[0].push_back(a);
    x[1].push_back(b);
    x[2].push_back(-a - b + 0.1 * n(rng));  // pulls against the answer: a negative weight would fit it
    y.push_back(0.3 + 0.6 * a + 0.4 * b);
  }
  const StackWeights w = fit_stack_weights(x, y, 0.0);
  EXPECT_NEAR(w.weights[0], 0.6, 1e-6);
  EXPECT_NEAR(w.weights[1], 0.4, 1e-6);
  EXPECT_EQ(w.weights[2], 0.0);
  EXPECT_NEAR(w.intercept, 0.3, 1e-6);
  // The ridge shrinks the weights toward zero, never past it.
  const StackWeights r = fit_stack_weights(x, y, 1.0);
  EXPECT_LT(r.weights[0] + r.weights[1], 1.0);
  EXPECT_GT(r.weights[0], 0.0);
  EXPECT_THROW(fit_stack_weights({}, y, 0.0), pricer::Error);
  EXPECT_THROW(fit_stack_weights({{1.0}}, y, 0.0), pricer::Error);
}

TEST(StackWeights, ColumnsPastTheMembersTakeEitherSign) {
  std::mt19937_64 rng(4);
  std::normal_distribution<double> n(0.0, 1.0);
  std::vector<std::vector<double>> x(2);
  std::vector<double> y;
  for (int i = 0; i < 400; ++i) {
    const double a = n(rng), s = n(rng);
    x[0].push_back(a);
    x[1].push_back(s);
    y.push_back(0.2 + 0.9 * a - 0.5 * s);
  }
  const StackWeights free = fit_stack_weights(x, y, 0.0, 1);
  EXPECT_NEAR(free.weights[0], 0.9, 1e-6);
  EXPECT_NEAR(free.weights[1], -0.5, 1e-6);
  EXPECT_EQ(fit_stack_weights(x, y, 0.0).weights[1], 0.0) << "every column a member: none negative";
  const StackWeights mae = refine_stack_weights_for_mae(x, y, free, 1);
  EXPECT_NEAR(mae.weights[1], -0.5, 1e-3) << "the search keeps the exact blend";
}

TEST(StackWeights, TheDollarObjectiveTrustsTheMemberRightOnExpensiveItems) {
  // Member 0 is close on expensive items and far off on cheap ones, member 1 the reverse: least
  // squares in log space weighs both alike, the dollar MAE is made on the expensive items.
  std::mt19937_64 rng(5);
  std::normal_distribution<double> n(0.0, 1.0);
  std::vector<std::vector<double>> x(2);
  std::vector<double> y;
  for (int i = 0; i < 600; ++i) {
    const bool expensive = i % 2 == 0;
    const double truth = expensive ? std::log(300.0) + 0.5 * n(rng) : std::log(5.0) + 0.5 * n(rng);
    x[0].push_back(truth + (expensive ? 0.05 : 0.8) * n(rng));
    x[1].push_back(truth + (expensive ? 0.8 : 0.05) * n(rng));
    y.push_back(truth);
  }
  const StackWeights ls = fit_stack_weights(x, y, 0.0);
  const StackWeights mae = refine_stack_weights_for_mae(x, y, ls);
  EXPECT_LT(stack_dollar_mae(x, y, mae), 0.8 * stack_dollar_mae(x, y, ls));
  EXPECT_GT(mae.weights[0], ls.weights[0] + 0.2);
  EXPECT_GE(mae.weights[1], 0.0);
  // An exact blend is already the optimum: the search keeps it.
  std::vector<double> blend;
  for (size_t i = 0; i < y.size(); ++i) blend.push_back(0.1 + 0.7 * x[0][i] + 0.3 * x[1][i]);
  const StackWeights exact = refine_stack_weights_for_mae(x, blend, fit_stack_weights(x, blend, 0.0));
  EXPECT_NEAR(exact.weights[0], 0.7, 1e-6);
  EXPECT_NEAR(stack_dollar_mae(x, blend, exact), 0.0, 1e-6);
  EXPECT_EQ(parse_stack_objective("log-ls"), StackObjective::LogSquares);
  EXPECT_THROW(parse_stack_objective("rmse"), pricer::Error);
}

TEST(Ensemble, CrossFittingNeverPricesWhatAMemberWasFittedOnNorSeesTheScoredSplit) {
  Journal j;
  const auto train = make_items(200, 0, 1), scored = make_items(80, 1000, 2);
  EnsembleOptions o;
  o.folds = 4;
  EnsemblePricer ens({spy(&j, 1, 0.5), spy(&j, 2, 0.5)}, o);
  ens.fit(train);
  const auto pred = ens.predict(scored);

  std::set<std::string> scored_titles, oof;
  for (const auto& it : scored) scored_titles.insert(it.title);
  for (const auto& fit : j.fits)
    for (const auto& t : fit) EXPECT_FALSE(scored_titles.contains(t)) << t << ": a scored item in a fit";
  size_t oof_predictions = 0;
  for (const auto& [call, titles] : j.predictions) {
    ASSERT_LT(call, j.fits.size()) << "every member is fitted before it prices";
    const bool final_member = j.fits[call].size() == train.size();
    if (final_member) continue;  // the final members, fitted on the whole split, price the scored items
    ++oof_predictions;
    for (const auto& t : titles) {
      EXPECT_FALSE(j.fits[call].contains(t)) << t << " priced by a member fitted on it";
      EXPECT_FALSE(scored_titles.contains(t));
      oof.insert(t);
    }
  }
  EXPECT_EQ(oof_predictions, 8u) << "4 folds x 2 members";
  EXPECT_EQ(oof.size(), train.size()) << "every training item is priced out of fold";

  const auto s = ens.stats();
  EXPECT_EQ(s["fit_items"], train.size());
  EXPECT_EQ(s["folds"], 4);
  EXPECT_GT(s["weights"]["spy1"].get<double>(), 0.0);
  EXPECT_EQ(pred.size(), scored.size());
  // The split its weights were fitted on cannot be scored.
  EXPECT_THROW(ens.predict(train), pricer::Error);
}

TEST(Ensemble, StackingTwoIndependentlyNoisyPricersBeatsEach) {
  Journal j;
  const auto train = make_items(600, 0, 5), scored = make_items(400, 5000, 6);
  EnsembleOptions o;
  o.objective = StackObjective::LogSquares;
  EnsemblePricer ens({spy(&j, 7, 0.6), spy(&j, 8, 0.6)}, o);
  ens.fit(train);
  const double e = mae(scored, ens.predict(scored));
  SpyPricer a(&j, 7, 0.6, true), b(&j, 8, 0.6, true);
  const double ma = mae(scored, a.predict(scored)), mb = mae(scored, b.predict(scored));
  EXPECT_LT(e, 0.9 * std::min(ma, mb)) << "ensemble " << e << " members " << ma << ", " << mb;
  // Equally good members weigh alike; least squares on noisy features shrinks their sum below 1
  // (var y / (2 var y + noise) each: about 0.42 here).
  const double w7 = ens.stats()["weights"]["spy7"].get<double>(), w8 = ens.stats()["weights"]["spy8"].get<double>();
  EXPECT_NEAR(w7, w8, 0.1);
  EXPECT_NEAR(w7 + w8, 0.85, 0.1);
}

// Items whose price follows their stated weight, priced by members blind to it: the spec
// quantities let the stack put the weight back; without them it cannot.
TEST(Ensemble, SpecQuantitiesCorrectWhatEveryMemberMissesAlike) {
  const auto weighted = [](int n, int first_id, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> pounds(0.1, 60.0);
    std::vector<Item> items = make_items(n, first_id, seed);
    for (auto& it : items) {
      const double w = pounds(rng);
      it.text = it.title + "\nItem Weight: " + std::to_string(w) + " pounds";
      it.price = std::min(999.0, it.price * std::pow(1.0 + w, 0.6));
    }
    return items;
  };
  const auto train = weighted(600, 0, 11), scored = weighted(400, 5000, 12);
  // Members that know each price up to its weight's share (and some noise).
  class Blind : public Pricer {
   public:
    explicit Blind(uint64_t salt) : salt_(salt) {}
    std::string name() const override { return "blind"; }
    bool needs_training() const override { return true; }
    void fit(const std::vector<Item>&) override {}
    std::vector<double> predict(const std::vector<Item>& items) override {
      std::vector<double> out;
      for (const auto& it : items) {
        std::mt19937_64 rng(std::hash<std::string>{}(it.title) ^ salt_);
        const double w = std::stod(it.text.substr(it.text.find(": ") + 2));
        out.push_back(it.price / std::pow(1.0 + w, 0.6) * std::exp(std::normal_distribution<double>(0.0, 0.3)(rng)));
      }
      return out;
    }

   private:
    uint64_t salt_;
  };
  const auto members = [] {
    return std::vector<EnsembleMember>{{"a", [] { return std::make_unique<Blind>(1); }, {}},
                                       {"b", [] { return std::make_unique<Blind>(2); }, {}}};
  };
  EnsembleOptions with, without;
  without.item_features = false;
  EnsemblePricer spec(members(), with), plain(members(), without);
  spec.fit(train);
  plain.fit(train);
  const double e_spec = mae(scored, spec.predict(scored)), e_plain = mae(scored, plain.predict(scored));
  EXPECT_LT(e_spec, 0.7 * e_plain) << "with the spec quantities " << e_spec << ", without " << e_plain;
  const auto w = spec.stats()["weights"];
  EXPECT_NEAR(w["spec:log_pounds"].get<double>(), 0.6, 0.15);
  EXPECT_EQ(w["spec:log_volume"].get<double>(), 0.0) << "no item states a volume";
  EXPECT_FALSE(plain.stats()["weights"].contains("spec:log_pounds"));
}

TEST(Ensemble, MembersTrainedElsewhereAreWeighedOnHeldOutItemsOnly) {
  Journal j;
  const auto train = make_items(200, 0, 1), holdout = make_items(60, 500, 3), scored = make_items(50, 1000, 2);
  // An LLM-like member (not fitted here) and a classic one.
  EnsemblePricer without({spy(&j, 1, 0.3, false), spy(&j, 2, 0.5)}, EnsembleOptions{});
  try {
    without.fit(train);
    FAIL() << "fitting weights on the split an outside member trained on must be refused";
  } catch (const pricer::Error& e) {
    EXPECT_NE(std::string(e.what()).find("ensemble_fit"), std::string::npos) << e.what();
  }

  Journal k;
  EnsembleOptions o;
  o.holdout = holdout;
  o.holdout_source = "held.jsonl";
  EnsemblePricer ens({spy(&k, 1, 0.3, false), spy(&k, 2, 0.5)}, o);
  ens.fit(train);
  std::set<std::string> train_titles;
  for (const auto& it : train) train_titles.insert(it.title);
  for (const auto& [call, titles] : k.predictions)
    for (const auto& t : titles) EXPECT_FALSE(train_titles.contains(t)) << "weights fitted on " << t;
  ASSERT_EQ(k.fits.size(), 1u) << "the classic member is fitted once, on the whole training split";
  EXPECT_EQ(k.fits[0].size(), train.size());
  EXPECT_EQ(ens.stats()["fit_items"], holdout.size());
  EXPECT_EQ(ens.stats()["fit_source"], "held.jsonl");
  // The less noisy member gets the larger weight.
  EXPECT_GT(ens.stats()["weights"]["spy1"].get<double>(), ens.stats()["weights"]["spy2"].get<double>());
  EXPECT_EQ(ens.predict(scored).size(), scored.size());
  EXPECT_THROW(ens.predict(holdout), pricer::Error);

  // Members are built once (a member that loads a model loads it once); only folds build more.
  int built = 0;
  EnsembleMember counted = spy(&k, 1, 0.3, false);
  counted.make = [&built, inner = counted.make] {
    ++built;
    return inner();
  };
  EnsemblePricer once({counted, spy(&k, 2, 0.5)}, o);
  once.fit(train);
  once.predict(scored);
  EXPECT_EQ(built, 1);
}

TEST(Ensemble, RegistryBuildsItFromParams) {
  PricerContext ctx;
  ctx.params["ensemble"] = "tfidf,mean";
  auto p = make_pricer("ensemble", ctx);
  EXPECT_EQ(p->name(), "ensemble");
  EXPECT_TRUE(p->needs_training());
  ctx.params["ensemble"] = "tfidf,ensemble";
  EXPECT_THROW(make_pricer("ensemble", ctx), pricer::Error);
  ctx.params["ensemble"] = "tfidf,nonesuch";
  EXPECT_THROW(make_pricer("ensemble", ctx), pricer::Error);
  ctx.params["ensemble"] = "tfidf";
  ctx.params["ensemble_folds"] = "x";
  EXPECT_THROW(make_pricer("ensemble", ctx), pricer::Error);
  ctx.params.erase("ensemble_folds");
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"ensemble_stacker", "forest"},
                                                        {"ensemble_tree_depth", "0"},
                                                        {"ensemble_tree_rounds", "1.5"},
                                                        {"cross_fit_models", "/none.gguf"}}) {
    PricerContext bad = ctx;
    bad.params[key] = value;
    EXPECT_THROW(make_pricer("ensemble", bad), pricer::Error) << key << "=" << value;
  }
}

// A member trained elsewhere with fold twins is cross-fitted like the classic ones: twin f prices
// exactly the training items of fold f (those it never learned from), cut by the prompt's hash as
// `train --cross-fit-folds` cuts them; the member as given prices only the scored items.
TEST(Ensemble, FoldTwinsPriceOnlyTheFoldTheyLeftOut) {
  Journal j;
  const auto train = with_prompts(make_items(300, 0, 1)), scored = with_prompts(make_items(60, 1000, 2));
  std::vector<std::pair<int, std::set<std::string>>> twins;
  EnsembleMember llm = spy(&j, 1, 0.2, false);
  llm.make_fold = [&twins](int f) { return std::make_unique<TwinSpy>(f, &twins); };
  EnsembleOptions o;
  o.folds = 3;
  o.holdout = make_items(20, 700, 3);
  o.holdout_source = "held.jsonl";
  EnsemblePricer ens({llm, spy(&j, 2, 0.5)}, o);
  ens.fit(train);
  ens.predict(scored);

  std::map<std::string, int> fold_of;
  for (const auto& it : train) fold_of[it.prompt] = pricer::data::cross_fit_fold(it.prompt, 3);
  ASSERT_EQ(twins.size(), 3u) << "one twin per fold";
  std::map<std::string, int> times_priced;
  for (const auto& [fold, prompts] : twins) {
    for (const auto& p : prompts) {
      ASSERT_TRUE(fold_of.contains(p)) << "a twin priced an item outside the training split";
      EXPECT_EQ(fold_of[p], fold) << "twin " << fold << " priced an item it learned from";
      ++times_priced[p];
    }
  }
  EXPECT_EQ(times_priced.size(), train.size()) << "every training item is priced by a twin";
  for (const auto& [p, n] : times_priced) EXPECT_EQ(n, 1) << p;
  // The classic member's folds are the same: each out-of-fold call prices one hash fold.
  std::set<std::string> scored_titles;
  for (const auto& it : scored) scored_titles.insert(it.title);
  std::map<std::string, int> fold_by_title;
  for (const auto& it : train) fold_by_title[it.title] = fold_of[it.prompt];
  std::set<std::string> held_titles;
  for (const auto& it : o.holdout) held_titles.insert(it.title);
  for (const auto& [call, titles] : j.predictions) {
    if (call >= j.fits.size()) {  // the LLM member as given: the held-out (fit) or scored items only
      EXPECT_TRUE(titles == scored_titles || titles == held_titles);
      continue;
    }
    if (j.fits[call].size() == train.size()) continue;  // the final classic member
    std::set<int> folds;
    for (const auto& t : titles) {
      EXPECT_FALSE(j.fits[call].contains(t));
      folds.insert(fold_by_title.at(t));
    }
    EXPECT_EQ(folds.size(), 1u) << "an out-of-fold call prices one fold";
  }
  const auto st = ens.stats();
  EXPECT_EQ(st["fit"], "cross-fitted on the training split, and held-out items");
  EXPECT_EQ(st["folds"], 3);
  EXPECT_EQ(st["fit_items"], train.size() + o.holdout.size()) << "the held-out items are fit rows too";
  EXPECT_EQ(st["fit_source"], "held.jsonl");

  // Twins cut the folds by prompt, so training items without one are refused.
  EnsemblePricer plain({llm, spy(&j, 2, 0.5)}, o);
  EXPECT_THROW(plain.fit(make_items(300, 0, 1)), pricer::Error);
  // Without twins or held-out items, the member trained elsewhere is named in the refusal.
  EnsembleMember bare = spy(&j, 1, 0.2, false);
  bare.name = "finetuned";
  EnsemblePricer none({bare, spy(&j, 2, 0.5)}, EnsembleOptions{});
  try {
    none.fit(train);
    FAIL() << "no way to fit the stack without leaking";
  } catch (const pricer::Error& e) {
    EXPECT_NE(std::string(e.what()).find("finetuned trained outside"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cross_fit_models"), std::string::npos) << e.what();
  }
}

#ifdef PRICER_HAVE_XGBOOST
// A member that knows when it knows (its interval width) is worth following only there: trees
// reading the width learn it, a linear blend cannot.
TEST(Ensemble, TreesLearnWhereToTrustAMemberFromItsSignal) {
  Journal j;
  const auto train = make_items(3000, 0, 21), scored = make_items(1000, 50000, 22);
  const auto members = [&j] {
    return std::vector<EnsembleMember>{{"sure", [] { return std::make_unique<SignalSpy>(); }, {}}, spy(&j, 9, 0.35)};
  };
  EnsembleOptions linear, trees;
  linear.item_features = trees.item_features = false;
  trees.stacker = StackerKind::Trees;
  EnsemblePricer lin(members(), linear), tree(members(), trees);
  lin.fit(train);
  tree.fit(train);
  const double e_lin = mae(scored, lin.predict(scored)), e_tree = mae(scored, tree.predict(scored));
  EXPECT_LT(e_tree, 0.8 * e_lin) << "trees " << e_tree << ", linear " << e_lin;
  const auto st = tree.stats();
  EXPECT_EQ(st["stacker"], "trees");
  EXPECT_EQ(st["rounds"], 300);
  std::map<std::string, double> share;
  for (const auto& c : st["importances"]) share[c["column"]] = c["gain_share"].get<double>();
  // Two members, one signal, the blend and each member's distance from it.
  EXPECT_EQ(share.size(), 6u) << st.dump();
  EXPECT_GT(share.at("sure:interval_width"), 0.1);
  EXPECT_GT(share.at("sure - blend"), 0.1);
  double total = 0;
  for (const auto& [name, v] : share) total += v;
  EXPECT_NEAR(total, 1.0, 1e-9);
  EXPECT_NE(st["top_columns"].get<std::string>().find("sure"), std::string::npos);
  EXPECT_FALSE(lin.stats().contains("importances"));
  EXPECT_TRUE(lin.stats()["weights"].contains("sure"));
}
#else
TEST(Ensemble, TreesNeedLibxgboost) { EXPECT_THROW(make_tree_stacker(TreeStackerOptions{}), pricer::Error); }
#endif

namespace {

// Items whose price follows the words they mention, with a prompt and a category, so every
// classic member has something to learn.
std::vector<Item> worded_items(int n, int first_id, uint32_t seed) {
  static const char* words[] = {"steel", "plastic", "deluxe", "mini", "pro", "basic", "kit", "spare"};
  static const double value[] = {1.0, -0.5, 1.2, -0.8, 0.9, -0.6, 0.7, -0.9};
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> w(0, 7);
  std::vector<Item> items;
  for (int i = 0; i < n; ++i) {
    Item it;
    it.title = "Item " + std::to_string(first_id + i);
    double logp = 3.5;
    it.text = it.title;
    for (int k = 0; k < 4; ++k) {
      const int j = w(rng);
      it.text += std::string(" ") + words[j];
      logp += value[j];
    }
    it.text += "\nItem Weight: " + std::to_string(1 + i % 7) + " pounds";
    it.prompt = "What does this cost?\n\n" + it.text + "\n\nPrice is $";
    it.category = i % 3 ? "Tools" : "Toys";
    it.price = std::round(std::exp(logp) * 100) / 100;
    items.push_back(it);
  }
  return items;
}

void rewrite_json(const std::filesystem::path& file, const std::function<void(nlohmann::json&)>& change) {
  std::ifstream in(file);
  nlohmann::json j = nlohmann::json::parse(in);
  change(j);
  std::ofstream(file) << j.dump();
}

template <typename F>
void expect_error(F&& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one naming " << part;
  } catch (const pricer::Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

}  // namespace

// A fitted ensemble written and read back prices every item as it did, bit for bit (each
// stacker, every classic member); it is never written over an existing directory; a damaged
// part is an error naming it.
TEST(Ensemble, ASavedEnsembleReadsBackToTheSamePrices) {
  namespace fs = std::filesystem;
  const auto train = worded_items(400, 0, 31), scored = worded_items(100, 5000, 32);
  const fs::path root = fs::temp_directory_path() / "pricer_ensemble_saved";
  fs::remove_all(root);
  std::vector<std::string> kinds = {"linear"};
  std::string members = "tfidf,comparables,linear,mean";
#ifdef PRICER_HAVE_XGBOOST
  kinds.push_back("trees");
  members += ",xgboost";
#endif
  for (const auto& kind : kinds) {
    PricerContext ctx;
    ctx.params = {{"ensemble", members}, {"ensemble_stacker", kind}, {"ensemble_save", (root / kind).string()}};
    auto fitted = make_pricer("ensemble", ctx);
    fitted->fit(train);
    EXPECT_EQ(fitted->stats()["saved_to"], (root / kind).string());
    const auto want = fitted->predict(scored);
    const auto back = EnsemblePricer::read(root / kind);
    const auto got = back->predict(scored);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], want[i]) << kind << " item " << i;
    ASSERT_EQ(back->member_names().size(), split_comma_list(members).size());
    EXPECT_EQ(back->member_prices().front().size(), scored.size());
    EXPECT_EQ(back->predict(train).size(), train.size()) << "a saved ensemble prices its fit items too";
    EXPECT_THROW(make_pricer("ensemble", ctx), pricer::Error) << "an existing directory is never replaced";
  }
  // Damage, one part at a time, on copies of the saved linear ensemble.
  const auto damaged = [&](const std::string& name, const std::function<void(const fs::path&)>& harm) {
    const fs::path d = root / name;
    fs::copy(root / "linear", d, fs::copy_options::recursive);
    harm(d);
    return d;
  };
  expect_error([&] { EnsemblePricer::read(root / "nowhere"); }, "ensemble.json is missing");
  const fs::path cut = damaged("cut", [](const fs::path& d) {
    std::ofstream(d / "ensemble.json", std::ios::trunc) << "{\"format\": \"pricer-ensemble\", \"vers";
  });
  expect_error([&] { EnsemblePricer::read(cut); }, "ensemble.json");
  const fs::path escape = damaged("escape", [](const fs::path& d) {
    rewrite_json(d / "ensemble.json", [](nlohmann::json& j) { j["members"][0]["dir"] = "../elsewhere"; });
  });
  expect_error([&] { EnsemblePricer::read(escape); }, "outside the ensemble's");
  const fs::path weights = damaged("weights", [](const fs::path& d) {
    rewrite_json(d / "ensemble.json", [](nlohmann::json& j) { j["members"][0]["state"]["weights"].erase(0); });
  });
  expect_error([&] { EnsemblePricer::read(weights); }, "do not fit together");
  const fs::path missing = damaged("missing", [](const fs::path& d) {
    rewrite_json(d / "ensemble.json", [](nlohmann::json& j) { j["stacker"].erase("weights"); });
  });
  expect_error([&] { EnsemblePricer::read(missing); }, "weights");
  const fs::path outsider = damaged("outsider", [](const fs::path& d) {
    rewrite_json(d / "ensemble.json", [](nlohmann::json& j) {
      j["members"][0]["name"] = "frontier";
      j["members"][0].erase("dir");
    });
  });
  expect_error([&] { EnsemblePricer::read(outsider); }, "cannot hold pricer \"frontier\"");
#ifdef PRICER_HAVE_XGBOOST
  fs::copy(root / "trees", root / "flipped", fs::copy_options::recursive);
  {
    std::fstream f(root / "flipped" / "stacker" / "stacker.ubj", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('\x7f');
  }
  expect_error([&] { EnsemblePricer::read(root / "flipped"); }, "stacker.ubj: not the model that was saved");
#endif
  fs::remove_all(root);
}
