// `pricer eval` end to end through the built binary: baselines on a generated split, the human
// export/import round trip, and a clean error for bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "cli_test_util.h"

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

using pricer::cli_test::CliRun;
using pricer::cli_test::slurp;

// Runs go to a scratch database, not runs/ under the working directory.
CliRun run(const std::string& args) {
  const std::string db = (fs::temp_directory_path() / "pricer_eval_cli_runs.db").string();
  return pricer::cli_test::run_cli(args, "", "PRICER_RUNS_DB=" + db);
}

class EvalCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("pricer_eval_cli_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "data");
    // Prices follow the words an item mentions, so the text baselines have something to learn.
    std::mt19937 rng(9);
    const char* words[] = {"steel", "plastic", "deluxe", "mini", "pro", "basic", "kit", "spare"};
    const double value[] = {1.0, -0.5, 1.2, -0.8, 0.9, -0.6, 0.7, -0.9};
    const char* cats[] = {"Tools", "Toys", "Kitchen"};
    auto write = [&](const std::string& name, int n) {
      std::ofstream out(dir_ / "data" / name);
      std::uniform_int_distribution<int> w(0, 7), c(0, 2);
      for (int i = 0; i < n; ++i) {
        std::string text = "Item";
        double logp = 3.5;
        for (int k = 0; k < 4; ++k) {
          const int j = w(rng);
          text += std::string(" ") + words[j];
          logp += value[j];
        }
        const json line = {{"prompt", "How much does this cost?\n\n" + text + "\n\nPrice is $"},
                           {"completion", "0"},
                           {"price", std::round(std::exp(logp) * 100) / 100},
                           {"category", cats[c(rng)]},
                           {"title", text}};
        out << line.dump() << "\n";
      }
    };
    write("train.jsonl", 300);
    write("test.jsonl", 60);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

}  // namespace

TEST_F(EvalCli, BaselinesProduceResultsAndReport) {
  const fs::path out = dir_ / "out";
  const CliRun r = run("eval --data " + (dir_ / "data").string() +
                       " --pricers mean,random,linear,tfidf --bootstrap 200 --out " + out.string());
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("rank"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tfidf"), std::string::npos) << r.out;

  const json res = json::parse(slurp(out / "results.json"));
  EXPECT_EQ(res["meta"]["split"], "test");
  EXPECT_EQ(res["meta"]["train_items"], 300);
  ASSERT_EQ(res["pricers"].size(), 4u);
  ASSERT_EQ(res["items"].size(), 60u);
  double last = 0;
  for (const auto& p : res["pricers"]) {  // leaderboard order
    const double mae = p["metrics"]["mae"].get<double>();
    EXPECT_GE(mae, last);
    last = mae;
    EXPECT_LE(p["metrics"]["mae_ci95_bootstrap"][0].get<double>(), mae);
    EXPECT_GE(p["metrics"]["mae_ci95_bootstrap"][1].get<double>(), mae);
    const auto& h = p["metrics"]["hits"];
    EXPECT_EQ(h["green"].get<int>() + h["orange"].get<int>() + h["red"].get<int>(), 60);
    EXPECT_EQ(p["metrics"]["per_category"].size(), 3u);
    EXPECT_GT(p["timing"]["items_per_s"].get<double>(), 0.0);
  }
  // MAE in results.json is the mean of |prediction - price| over the per-item rows.
  const std::string best = res["pricers"][0]["name"];
  double sum = 0;
  for (const auto& it : res["items"])
    sum += std::fabs(it["predictions"][best].get<double>() - it["price"].get<double>());
  EXPECT_NEAR(sum / 60.0, res["pricers"][0]["metrics"]["mae"].get<double>(), 1e-9);
  // The word-price relationship is learnable: a text model beats the constant mean.
  EXPECT_NE(best, "mean");
  EXPECT_NE(best, "random");

  const std::string html = slurp(out / "report.html");
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("Leaderboard"), std::string::npos);
  EXPECT_NE(html.find("running MAE"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  EXPECT_EQ(html.find("href=\"http"), std::string::npos);
}

TEST_F(EvalCli, EnsembleReportsItsWeightsInResultsAndReport) {
  const fs::path out = dir_ / "out";
  const CliRun r =
      run("eval --data " + (dir_ / "data").string() +
          " --pricers ensemble,tfidf,linear --param ensemble=tfidf,linear --bootstrap 100 --out " + out.string());
  ASSERT_EQ(r.rc, 0) << r.out;
  const json res = json::parse(slurp(out / "results.json"));
  json ens;
  for (const auto& p : res["pricers"])
    if (p["name"] == "ensemble") ens = p;
  ASSERT_FALSE(ens.is_null());
  const json& st = ens["stats"];
  EXPECT_EQ(st["fit"], "cross-fitted on the training split");
  EXPECT_EQ(st["fit_items"], 300);
  // Four words of eight: a few test items repeat a training text; the count is reported.
  EXPECT_LT(st["scored_items_in_fit"].get<int>(), 30);
  EXPECT_GE(st["weights"]["tfidf"].get<double>(), 0.0);
  EXPECT_GE(st["weights"]["linear"].get<double>(), 0.0);
  EXPECT_GT(st["weights"]["tfidf"].get<double>() + st["weights"]["linear"].get<double>(), 0.0);
  const std::string html = slurp(out / "report.html");
  EXPECT_NE(html.find(st["formula"].get<std::string>()), std::string::npos) << "the report shows the blend";
  // A member that cannot be built fails the ensemble before any pricing.
  const CliRun bad =
      run("eval --data " + (dir_ / "data").string() +
          " --pricers ensemble --param ensemble=tfidf,finetuned --param finetuned_model=/nonexistent.gguf"
          " --out " +
          (dir_ / "bad").string());
  EXPECT_NE(bad.rc, 0);
}

// The ensemble an evaluation fitted, saved, prices with `predict --ensemble` exactly as it priced
// there, each member's price beside it.
TEST_F(EvalCli, ASavedEnsemblePricesInPredictAsInEval) {
  const fs::path out = dir_ / "out", saved = dir_ / "saved";
  const CliRun r =
      run("eval --data " + (dir_ / "data").string() +
          " --pricers ensemble --param ensemble=tfidf,linear,comparables --param ensemble_save=" + saved.string() +
          " --bootstrap 10 --out " + out.string());
  ASSERT_EQ(r.rc, 0) << r.out;
  const json res = json::parse(slurp(out / "results.json"));
  const CliRun p = run("predict --ensemble " + saved.string() + " --jsonl " + (dir_ / "data" / "test.jsonl").string());
  ASSERT_EQ(p.rc, 0) << p.out;
  std::istringstream lines(p.out);
  std::size_t n = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] != '{') continue;  // stderr's notes share the stream
    const json j = json::parse(line);
    ASSERT_LT(n, res["items"].size());
    EXPECT_EQ(j["price"].get<double>(), res["items"][n]["predictions"]["ensemble"].get<double>()) << line;
    EXPECT_EQ(j["line"], n + 1);
    EXPECT_TRUE(j["members"].contains("comparables")) << line;
    ++n;
  }
  EXPECT_EQ(n, res["items"].size());
  // One text, as a sentence; and the saved directory is never written over.
  const CliRun one = run("predict --ensemble " + saved.string() + " \"Item deluxe steel kit pro\"");
  ASSERT_EQ(one.rc, 0) << one.out;
  EXPECT_NE(one.out.find("(ensemble of tfidf $"), std::string::npos) << one.out;
  const CliRun again = run("eval --data " + (dir_ / "data").string() +
                           " --pricers ensemble --param ensemble=tfidf --param ensemble_save=" + saved.string() +
                           " --out " + (dir_ / "again").string());
  EXPECT_NE(again.rc, 0);
  EXPECT_NE(again.out.find("never replaced"), std::string::npos) << again.out;
  const CliRun both = run("predict --ensemble " + saved.string() + " --model x.gguf \"Item\"");
  EXPECT_NE(both.rc, 0);
  const CliRun neither = run("predict \"Item\"");
  EXPECT_NE(neither.rc, 0);
  EXPECT_NE(neither.out.find("--model is required"), std::string::npos) << neither.out;
}

TEST_F(EvalCli, HumanExportThenImport) {
  const fs::path csv = dir_ / "todo.csv";
  CliRun r = run("eval --data " + (dir_ / "data/test.jsonl").string() + " --limit 5 --human-export " + csv.string());
  ASSERT_EQ(r.rc, 0) << r.out;
  const std::string exported = slurp(csv);
  EXPECT_EQ(exported.rfind("id,text\n0,\"How much", 0), 0u) << exported;

  {
    std::ofstream g(dir_ / "guesses.csv");
    g << "id,price\n";
    for (int i = 0; i < 5; ++i) g << i << "," << 10 * (i + 1) << "\n";
  }
  const fs::path out = dir_ / "out";
  r = run("eval --data " + (dir_ / "data/test.jsonl").string() + " --limit 5 --pricers human " + "--human-import " +
          (dir_ / "guesses.csv").string() + " --out " + out.string());
  ASSERT_EQ(r.rc, 0) << r.out;
  const json res = json::parse(slurp(out / "results.json"));
  ASSERT_EQ(res["items"].size(), 5u);
  EXPECT_EQ(res["items"][3]["predictions"]["human"], 40.0);

  // Guesses for a different item set are refused with the file and line.
  r = run("eval --data " + (dir_ / "data/test.jsonl").string() + " --limit 3 --pricers human " + "--human-import " +
          (dir_ / "guesses.csv").string() + " --out " + out.string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("guesses.csv:5: id 3 out of range"), std::string::npos) << r.out;
}

TEST_F(EvalCli, BadInputIsACleanError) {
  {
    std::ofstream bad(dir_ / "bad.jsonl");
    bad << "{\"text\": \"ok\", \"price\": 5}\n{\"text\": \"no price\"}\n";
  }
  CliRun r = run("eval --data " + (dir_ / "bad.jsonl").string() + " --pricers mean --train " +
                 (dir_ / "data").string() + " --out " + (dir_ / "o").string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("bad.jsonl:2: missing \"price\""), std::string::npos) << r.out;

  r = run("eval --data " + (dir_ / "data").string() + " --pricers mean,nosuch --out " + (dir_ / "o").string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("unknown pricer \"nosuch\""), std::string::npos) << r.out;

  r = run("eval --data " + (dir_ / "data/test.jsonl").string() + " --pricers mean --out " + (dir_ / "o").string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("need training data"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "o" / "results.json"));
}
