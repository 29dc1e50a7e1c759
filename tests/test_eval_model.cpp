// The LLM pricers of `pricer eval` on a tiny model built here: their --param settings, one model
// load shared by pricers with the same settings, the interval-coverage stats, and `pricer eval`
// end to end with finetuned and base next to the baselines (results.json, report.html, run db).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_test_util.h"
#include "core/error.h"
#include "data/cross_fit.h"
#include "eval/llm_pricer.h"
#include "monitor/run_db.h"
#include "predict/calibration.h"
#include "tiny_pricer_model.h"

namespace pricer::eval {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class EvalModel : public ::testing::Test {
 protected:
  void SetUp() override { w_ = tiny::make_world(tiny::temp_dir("eval_model")); }
  void TearDown() override { fs::remove_all(w_.dir); }
  PricerContext context() const {
    PricerContext c;
    c.params = {{"model", w_.base.string()}, {"adapter", w_.adapter.string()}, {"base_dtype", "f32"}};
    return c;
  }
  ModelPricerOptions options(bool adapter) const {
    ModelPricerOptions o;
    o.model = w_.base.string();
    if (adapter) o.adapter = w_.adapter.string();
    o.base_dtype = "f32";
    return o;
  }
  // Curate-style items: the prompt verbatim, prices spread over the model's 0-999 range.
  std::vector<Item> items(int n, uint32_t seed) const {
    ModelPricer mp(options(false));
    std::vector<Item> out;
    for (const auto& p : tiny::products(n, seed)) {
      Item it;
      it.title = p.text;
      it.prompt = mp.prompt_for(p.text);
      it.text = it.prompt;
      it.price = std::round(p.price * 40 * 100) / 100;
      it.category = out.size() % 2 ? "Tools" : "Home";
      out.push_back(it);
    }
    return out;
  }
  // A merged model of the tiny world's shape (weights from `seed`), marked as the twin that left
  // out fold `fold` of `folds` when folds > 0.
  std::string merged_model(const std::string& name, uint64_t seed, int folds = 0, int fold = 0) const {
    const LlamaModel m = LlamaModel::random(tiny::model_config(w_.bpe), seed, 0.3f);
    GgufExportOptions go;
    go.extra = tiny::tokenizer_kvs(w_.bpe);
    if (folds > 0) {
      go.extra.push_back({data::kCrossFitFoldsKey, GgufValue::u32(static_cast<uint32_t>(folds))});
      go.extra.push_back({data::kCrossFitFoldKey, GgufValue::u32(static_cast<uint32_t>(fold))});
    }
    const std::string path = (w_.dir / name).string();
    save_gguf(path, m.config(), export_tensors(m, false), go);
    return path;
  }
  void write_split(const fs::path& file, const std::vector<Item>& its) const {
    std::ofstream f(file);
    for (const auto& it : its)
      f << json{{"prompt", it.prompt},
                {"completion", "1.00"},
                {"price", it.price},
                {"category", it.category},
                {"title", it.title}}
               .dump()
        << "\n";
  }
  tiny::World w_;
};

TEST_F(EvalModel, PricersReadTheirParamsAndShareOneLoad) {
  const PricerContext c = context();
  auto tuned = make_pricer("finetuned", c);
  auto greedy = make_pricer("finetuned-greedy", c);
  auto base = make_pricer("base", c);
  EXPECT_EQ(tuned->name(), "finetuned");
  EXPECT_FALSE(tuned->needs_training());

  // Same settings, same loaded model: finetuned and finetuned-greedy hold one ModelPricer.
  ModelPricerOptions o = options(true);
  o.progress = true;
  auto a = shared_model_pricer(o), b = shared_model_pricer(o);
  EXPECT_EQ(a.get(), b.get());
  o.adapter.clear();
  EXPECT_NE(shared_model_pricer(o).get(), a.get());

  PricerContext no_adapter = c;
  no_adapter.params.erase("adapter");
  try {
    make_pricer("finetuned", no_adapter);
    ADD_FAILURE() << "finetuned without an adapter";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("adapter=PATH"), std::string::npos) << e.what();
  }
  // A merged model stands in for model + adapter.
  no_adapter.params["finetuned_model"] = w_.base.string();
  EXPECT_NO_THROW(make_pricer("finetuned", no_adapter));
  PricerContext none;
  EXPECT_THROW(make_pricer("base", none), Error);
  PricerContext bad_mode = c;
  bad_mode.params["mode"] = "mode-that-does-not-exist";
  EXPECT_THROW(make_pricer("base", bad_mode), Error);
  PricerContext bad_cov = c;
  bad_cov.params["coverage"] = "0.8x";
  EXPECT_THROW(make_pricer("base", bad_cov), Error);
  PricerContext missing = c;
  missing.params["model"] = (w_.dir / "nope.gguf").string();
  EXPECT_THROW(make_pricer("base", missing), Error);
}

TEST_F(EvalModel, PredictionsAndStatsFollowTheModel) {
  const auto its = items(10, 21);
  auto tuned = make_pricer("finetuned", context());
  auto base = make_pricer("base", context());
  const auto pt = tuned->predict(its), pb = base->predict(its);
  ModelPricer direct(options(true));
  std::vector<std::string> prompts;
  for (const auto& it : its) prompts.push_back(it.prompt);
  // The plain name reads the one default readout, as training's validation MAE and predict do.
  const auto want = direct.predict(prompts, kDefaultPriceMode);
  size_t inside = 0;
  double max_diff = 0;
  for (size_t i = 0; i < its.size(); ++i) {
    EXPECT_NEAR(pt[i], want[i].price, 1e-9 * want[i].price) << i;
    inside += interval_holds(its[i].price, want[i].dist.lo, want[i].dist.hi);
    max_diff = std::max(max_diff, std::abs(pt[i] - pb[i]));
  }
  EXPECT_GT(max_diff, 1.0) << "the adapter changes the prices";
  const json s = tuned->stats();
  EXPECT_EQ(s["mode"], price_mode_name(kDefaultPriceMode));
  EXPECT_EQ(s["readout"], price_mode_description(kDefaultPriceMode));
  EXPECT_EQ(s["model"], w_.base.string());
  EXPECT_EQ(s["adapter"], w_.adapter.string());
  EXPECT_DOUBLE_EQ(s["interval_nominal"].get<double>(), 0.8);
  EXPECT_DOUBLE_EQ(s["interval_coverage"].get<double>(), static_cast<double>(inside) / 10);
  EXPECT_GT(s["mean_number_mass"].get<double>(), 0.0);
  EXPECT_LE(s["mean_number_mass"].get<double>(), 1.0);
  EXPECT_EQ(base->stats()["adapter"], "");

  // Plain product lines (no prompt) are templated; the greedy variant reports unparsed texts.
  std::vector<Item> plain = its;
  for (auto& it : plain) it.prompt.clear(), it.text = it.title;
  EXPECT_EQ(tuned->predict(plain), pt);
  auto greedy = make_pricer("finetuned-greedy", context());
  greedy->predict(its);
  EXPECT_EQ(greedy->stats()["mode"], "greedy");
  EXPECT_TRUE(greedy->stats().contains("greedy_unparsed"));
  // Every readout is available by name.
  const auto mean = direct.predict(prompts, PriceMode::Expected);
  const auto pe = make_pricer("finetuned-expected", context())->predict(its);
  for (size_t i = 0; i < its.size(); ++i) EXPECT_NEAR(pe[i], mean[i].price, 1e-9 * mean[i].price) << i;
}

// Several fine-tuned models price as the log(1 + price) mean of their own prices; the stats name
// each model with its own MAE, so a report shows what the average bought.
TEST_F(EvalModel, SeveralModelsPriceAsTheAverageOfTheirLogPrices) {
  const fs::path other = w_.dir / "other.gguf";
  tiny::save_model(LlamaModel::random(tiny::model_config(w_.bpe), 12, 0.3f), w_.bpe, other.string());
  const auto its = items(12, 5);
  PricerContext c;
  c.params = {{"finetuned_model", w_.base.string() + "," + other.string()}, {"base_dtype", "f32"}};
  auto avg = make_pricer("finetuned", c);
  const auto got = avg->predict(its);

  std::vector<std::string> prompts;
  for (const auto& it : its) prompts.push_back(it.prompt);
  ModelPricerOptions a = options(false), b = options(false);
  b.model = other.string();
  const auto pa = ModelPricer(a).predict(prompts, kDefaultPriceMode);
  const auto pb = ModelPricer(b).predict(prompts, kDefaultPriceMode);
  double mae_a = 0, max_gap = 0;
  for (size_t i = 0; i < its.size(); ++i) {
    const double want = std::expm1((std::log1p(pa[i].price) + std::log1p(pb[i].price)) / 2);
    EXPECT_NEAR(got[i], want, 1e-9 * (1 + want)) << i;
    EXPECT_GE(got[i], std::min(pa[i].price, pb[i].price) - 1e-9) << i;
    EXPECT_LE(got[i], std::max(pa[i].price, pb[i].price) + 1e-9) << i;
    mae_a += std::abs(pa[i].price - its[i].price) / static_cast<double>(its.size());
    max_gap = std::max(max_gap, std::abs(pa[i].price - pb[i].price));
  }
  EXPECT_GT(max_gap, 1.0) << "two different models, two different prices";
  const json s = avg->stats();
  ASSERT_EQ(s["models"].size(), 2u);
  EXPECT_EQ(s["models"][0]["model"], w_.base.string());
  EXPECT_EQ(s["models"][1]["model"], other.string());
  EXPECT_NEAR(s["models"][0]["mae"].get<double>(), mae_a, 1e-9 * (1 + mae_a));
  EXPECT_NE(s["averaged"].get<std::string>().find("2 models"), std::string::npos);

  // The base stays the base when fine-tuned models are given beside it.
  PricerContext both = c;
  both.params["model"] = w_.base.string();
  PricerContext plain;
  plain.params = {{"model", w_.base.string()}, {"base_dtype", "f32"}};
  const auto base_alone = make_pricer("base", plain)->predict(its);
  EXPECT_EQ(make_pricer("base", both)->predict(its), base_alone);
  EXPECT_NE(make_pricer("base", both)->predict(its), got);

  // Adapters on one base average alike; several models and several adapters at once is an error.
  PricerContext adapters = context();
  adapters.params["adapter"] = w_.adapter.string() + "," + w_.adapter.string();
  const auto twice = make_pricer("finetuned", adapters)->predict(its);
  const auto once = make_pricer("finetuned", context())->predict(its);
  for (size_t i = 0; i < its.size(); ++i) EXPECT_NEAR(twice[i], once[i], 1e-9 * (1 + once[i])) << i;
  EXPECT_THROW(member_options(options(false), {"a.gguf", "b.gguf"}, {"x", "y"}), Error);
}

TEST_F(EvalModel, EvalCliRanksTheLlmsWithTheBaselines) {
  const fs::path data = w_.dir / "data", out = w_.dir / "eval", db = w_.dir / "runs.db";
  fs::create_directories(data);
  const auto test = items(12, 31);
  write_split(data / "train.jsonl", items(40, 30));
  write_split(data / "test.jsonl", test);
  const auto r =
      cli_test::run_cli("eval --data " + data.string() +
                        " --pricers finetuned,finetuned-greedy,base,tfidf,mean --param model=" + w_.base.string() +
                        " --param adapter=" + w_.adapter.string() + " --param base_dtype=f32 --bootstrap 50 --out " +
                        out.string() + " --runs-db " + db.string());
  ASSERT_EQ(r.rc, 0) << r.out;
  for (const char* name : {"finetuned ", "finetuned-greedy", "base ", "tfidf", "mean"})
    EXPECT_NE(r.out.find(name), std::string::npos) << name << "\n" << r.out;
  // The leaderboard names each LLM pricer's readout.
  EXPECT_NE(r.out.find(std::string("finetuned: ") + price_mode_description(kDefaultPriceMode)), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("finetuned-greedy: greedy completion"), std::string::npos) << r.out;

  const json res = json::parse(cli_test::slurp(out / "results.json"));
  std::map<std::string, json> by_name;
  for (const auto& p : res["pricers"]) by_name[p["name"]] = p;
  ASSERT_EQ(by_name.size(), 5u);
  const json& ft = by_name.at("finetuned");
  EXPECT_EQ(ft["stats"]["mode"], price_mode_name(kDefaultPriceMode));
  EXPECT_EQ(ft["stats"]["adapter"], w_.adapter.string());
  EXPECT_GE(ft["stats"]["interval_coverage"].get<double>(), 0.0);
  EXPECT_LE(ft["stats"]["interval_coverage"].get<double>(), 1.0);
  EXPECT_EQ(by_name.at("finetuned-greedy")["stats"]["mode"], "greedy");
  EXPECT_EQ(by_name.at("base")["stats"]["adapter"], "");
  EXPECT_EQ(ft["metrics"]["n"], 12);

  // The item predictions are the model's, read in process.
  ModelPricer direct(options(true));
  std::vector<std::string> prompts;
  for (const auto& it : test) prompts.push_back(it.prompt);
  // The plain name reads the one default readout, as training's validation MAE and predict do.
  const auto want = direct.predict(prompts, kDefaultPriceMode);
  ASSERT_EQ(res["items"].size(), 12u);
  double mae = 0;
  for (size_t i = 0; i < 12; ++i) {
    EXPECT_NEAR(res["items"][i]["predictions"]["finetuned"].get<double>(), want[i].price, 1e-6 * want[i].price);
    mae += std::abs(want[i].price - test[i].price) / 12;
  }
  EXPECT_NEAR(ft["metrics"]["mae"].get<double>(), mae, 1e-6 * mae);

  const std::string html = cli_test::slurp(out / "report.html");
  EXPECT_NE(html.find("<td>finetuned</td>"), std::string::npos);
  EXPECT_NE(html.find("<td>base</td>"), std::string::npos);
  EXPECT_NE(html.find("interval_coverage"), std::string::npos);
  EXPECT_NE(html.find("<svg"), std::string::npos);

  monitor::RunDb rdb(db);
  const auto runs = rdb.list_runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].kind, monitor::RunKind::eval);
  EXPECT_EQ(runs[0].status, monitor::RunStatus::finished);
  const auto names = rdb.metric_names(runs[0].id);
  EXPECT_NE(std::find(names.begin(), names.end(), "finetuned/mae"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "finetuned/interval_coverage"), names.end());
  const auto series = rdb.metric_series(runs[0].id, "finetuned/mae");
  ASSERT_EQ(series.size(), 1u);
  EXPECT_NEAR(series[0].value, mae, 1e-6 * mae);
  bool has_results = false;
  for (const auto& a : rdb.artifacts(runs[0].id)) has_results |= a.kind == "results";
  EXPECT_TRUE(has_results);
}

// The ensemble with the fine-tuned model's fold twins: they are read from their marks in any
// order, each prices the training items of its fold (as many as the prompts' hashes put there),
// and the trees read the model's interval width once for its two readouts.
TEST_F(EvalModel, EnsembleCrossFitsTheFineTunedModelThroughItsFoldTwins) {
  const std::string full = merged_model("full.gguf", 21), fold0 = merged_model("fold0.gguf", 22, 2, 0),
                    fold1 = merged_model("fold1.gguf", 23, 2, 1);
  const fs::path data = w_.dir / "data", out = w_.dir / "eval";
  fs::create_directories(data);
  const auto train = items(60, 40);
  write_split(data / "train.jsonl", train);
  write_split(data / "test.jsonl", items(12, 41));
  const auto r = cli_test::run_cli(
      "eval --data " + data.string() + " --pricers ensemble,finetuned --param model=" + w_.base.string() +
      " --param finetuned_model=" + full + " --param cross_fit_models=" + fold1 + "," + fold0 +
      " --param ensemble=tfidf,finetuned,finetuned-expected --param ensemble_stacker=trees"
      " --param ensemble_tree_rounds=20 --param base_dtype=f32 --bootstrap 20 --no-record --out " +
      out.string());
  ASSERT_EQ(r.rc, 0) << r.out;
  const json res = json::parse(cli_test::slurp(out / "results.json"));
  json st;
  for (const auto& p : res["pricers"])
    if (p["name"] == "ensemble") st = p["stats"];
  EXPECT_EQ(st["fit"], "cross-fitted on the training split");
  EXPECT_EQ(st["folds"], 2);
  EXPECT_EQ(st["fit_items"], 60);
  std::vector<size_t> want(2, 0);
  for (const auto& it : train) ++want[static_cast<size_t>(data::cross_fit_fold(it.prompt, 2))];
  EXPECT_EQ(st["fold_items"], json(want));
  std::vector<std::string> columns;
  for (const auto& c : st["importances"]) columns.push_back(c["column"]);
  EXPECT_EQ(std::count(columns.begin(), columns.end(), "finetuned:interval_width"), 1) << st.dump();
  EXPECT_EQ(std::count(columns.begin(), columns.end(), "finetuned-expected:interval_width"), 0) << st.dump();
  const std::string html = cli_test::slurp(out / "report.html");
  EXPECT_NE(html.find("what its trees split on"), std::string::npos);
  EXPECT_NE(html.find(st["top_columns"].get<std::string>()), std::string::npos);
}

// Readouts after the first on the same prompts read the kept distributions: every figure as a
// pricer that runs the model for that readout alone.
TEST_F(EvalModel, ASecondReadoutOfTheSamePromptsIsWhatAFreshPricerReads) {
  std::vector<std::string> prompts, others;
  for (const auto& it : items(9, 50)) prompts.push_back(it.prompt);
  for (const auto& it : items(9, 51)) others.push_back(it.prompt);
  ModelPricer kept(options(true));
  kept.predict(prompts, PriceMode::Median);
  for (PriceMode mode : {PriceMode::Expected, PriceMode::Top3, PriceMode::Median}) {
    const auto again = kept.predict(prompts, mode);
    const auto fresh = ModelPricer(options(true)).predict(prompts, mode);
    ASSERT_EQ(again.size(), fresh.size());
    for (size_t i = 0; i < fresh.size(); ++i) {
      EXPECT_EQ(again[i].price, fresh[i].price) << price_mode_name(mode) << " item " << i;
      EXPECT_EQ(again[i].dist.lo, fresh[i].dist.lo);
      EXPECT_EQ(again[i].dist.hi, fresh[i].dist.hi);
      EXPECT_EQ(again[i].dist.top.size(), fresh[i].dist.top.size());
    }
  }
  // Other prompts run the model.
  const auto other = kept.predict(others, PriceMode::Expected);
  const auto fresh = ModelPricer(options(true)).predict(others, PriceMode::Expected);
  for (size_t i = 0; i < fresh.size(); ++i) EXPECT_EQ(other[i].price, fresh[i].price);
}

TEST_F(EvalModel, FoldTwinsAreCheckedByTheirMarks) {
  const std::string a0 = merged_model("a0.gguf", 22, 2, 0), a1 = merged_model("a1.gguf", 23, 2, 1),
                    b0 = merged_model("b0.gguf", 24, 2, 0), c1 = merged_model("c1.gguf", 25, 3, 1);
  EXPECT_EQ(fold_twins_by_fold({a1, a0}, false), (std::vector<std::string>{a0, a1}));
  EXPECT_TRUE(fold_twins_by_fold({}, false).empty());
  const auto refused = [](const std::vector<std::string>& paths, bool adapters, const std::string& why) {
    try {
      fold_twins_by_fold(paths, adapters);
      ADD_FAILURE() << "accepted: " << why;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  };
  refused({a0}, false, "none left out fold 1 of 2");
  refused({a0, b0, a1}, false, "both left out fold 0");
  refused({a0, c1}, false, "was cut into 2 folds");
  refused({a0, w_.base.string()}, false, "no cross-fitting marks");
  refused({w_.adapter.string()}, true, "a fold twin must be a GGUF adapter");
  refused({(w_.dir / "none.gguf").string()}, false, "none.gguf");
}

TEST_F(EvalModel, EvalCliFailsCleanlyOnAMissingAdapter) {
  std::ofstream(w_.dir / "items.jsonl") << json{{"text", "Item mug"}, {"price", 12.5}}.dump() << "\n";
  const auto r = cli_test::run_cli(
      "eval --data " + (w_.dir / "items.jsonl").string() + " --pricers finetuned --param model=" + w_.base.string() +
      " --param adapter=" + (w_.dir / "nowhere").string() + " --no-record --out " + (w_.dir / "o").string());
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("nowhere"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(w_.dir / "o" / "results.json"));
}

}  // namespace
}  // namespace pricer::eval
