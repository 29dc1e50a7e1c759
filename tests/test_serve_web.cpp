// The web app of `pricer serve` in a real browser: Debian's chromium, headless, loads each page
// (its JavaScript runs, it calls the server's API, Chart.js draws) and the test reads the DOM it
// leaves. Pages can be addressed by their URL, so a description is priced through the Price
// page's own code path by opening #price?text=...; a run's curve is seen growing while a tiny
// training writes to the run database. Screenshots of every page go to the test output
// ($PRICER_TEST_OUTPUT, else the temp directory). Skipped where chromium is not installed.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <thread>

#include "cli_test_util.h"
#include "monitor/run_db.h"
#include "serve/server.h"
#include "tiny_pricer_model.h"
#include "train_test_util.h"

using namespace pricer;
using namespace pricer::serve;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string chromium() {
  if (const char* c = std::getenv("PRICER_CHROMIUM")) return c;
  for (const char* c : {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"})
    if (::access(c, X_OK) == 0) return c;
  return "";
}

fs::path output_dir() {
  const char* o = std::getenv("PRICER_TEST_OUTPUT");
  const fs::path dir = fs::path(o ? o : fs::temp_directory_path().string()) / "pricer-web";
  fs::create_directories(dir);
  return dir;
}

std::string browser(const std::string& what, const std::string& url) {
  const std::string cmd = "timeout 120 '" + chromium() +
                          "' --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,1400 "
                          "--virtual-time-budget=6000 " +
                          what + " '" + url + "' 2>/dev/null";
  std::string out;
  if (std::FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[8192];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    ::pclose(p);
  }
  return out;
}
std::string dom(const std::string& url) { return browser("--dump-dom", url); }
void screenshot(const std::string& url, const std::string& name) {
  const fs::path file = output_dir() / (name + ".png");
  browser("--screenshot='" + file.string() + "'", url);
  EXPECT_TRUE(fs::exists(file) && fs::file_size(file) > 10000) << file;
  std::printf("screenshot: %s\n", file.c_str());
}

// The value of attribute `attr` on the element whose tag holds `marker` ("" when absent).
std::string attribute(const std::string& html, const std::string& marker, const std::string& attr) {
  const size_t at = html.find(marker);
  if (at == std::string::npos) return "";
  const size_t open = html.rfind('<', at), close = html.find('>', at);
  const std::string tag = html.substr(open, close - open);
  std::smatch m;
  if (std::regex_search(tag, m, std::regex(attr + "=\"([^\"]*)\""))) return m[1];
  return "";
}

struct Running {
  std::shared_ptr<Engine> engine;
  std::unique_ptr<Server> server;
  std::thread thread;
  std::string url;
  Running(std::shared_ptr<ModelPricer> mp, ServerOptions so) {
    if (mp) engine = std::make_shared<Engine>(std::move(mp), EngineOptions{});
    so.port = 0;
    so.model_name = "tiny";
    server = std::make_unique<Server>(engine, so);
    url = "http://127.0.0.1:" + std::to_string(server->bind()) + "/";
    thread = std::thread([this] { server->run(); });
  }
  ~Running() {
    server->stop();
    thread.join();
  }
};

class ServeWeb : public ::testing::Test {
 protected:
  void SetUp() override {
    if (chromium().empty())
      GTEST_SKIP() << "chromium is not installed (scripts/setup installs it): web app tests skipped";
    dir_ = fs::temp_directory_path() / ("pricer_serve_web_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

}  // namespace

TEST_F(ServeWeb, ThePricePageShowsTheModelsPriceAndItsDistribution) {
  const tiny::World w = tiny::make_world(dir_ / "world");
  ModelPricerOptions o;
  o.model = w.base.string();
  o.base_dtype = "f32";
  o.keep_distribution = true;
  auto mp = std::make_shared<ModelPricer>(o);
  const std::string text = "Item steel mini kit";
  const PricePrediction direct = mp->predict({mp->prompt_for(text)}, kDefaultPriceMode).front();
  const size_t numbers = mp->distribution().n_number_tokens();
  Running r(mp, {});
  const std::string url = r.url + "#price?text=Item%20steel%20mini%20kit";
  const std::string html = dom(url);
  ASSERT_NE(attribute(html, "<body", "data-ready"), "") << html.substr(0, 2000);
  const std::string priced = attribute(html, "<body", "data-priced");
  ASSERT_FALSE(priced.empty()) << html.substr(0, 4000);
  EXPECT_NEAR(std::stod(priced), direct.price, 1e-9 * (1 + direct.price));
  char shown[64];
  std::snprintf(shown, sizeof shown, "%.2f", direct.price);
  EXPECT_NE(html.find(std::string("id=\"price-value\">") + shown + "<"), std::string::npos);
  EXPECT_EQ(attribute(html, "id=\"price-chart\"", "data-points"), std::to_string(numbers));
  screenshot(url, "price");
}

TEST_F(ServeWeb, ARunsCurveGrowsWhileItTrains) {
  using namespace train_test;
  write_tiny_model((dir_ / "model.gguf").string(), 11);
  write_price_jsonl((dir_ / "train.jsonl").string(), price_prompts(3, 0, 32));
  const fs::path db = dir_ / "runs.db";
  const std::string cmd = "exec '" + std::string(PRICER_BINARY) + "' -t 1 train --model '" +
                          (dir_ / "model.gguf").string() + "' --tokenizer '" + (dir_ / "tokenizer.json").string() +
                          "' --data '" + (dir_ / "train.jsonl").string() + "' --out '" + (dir_ / "run").string() +
                          "' --runs-db '" + db.string() +
                          "' --rank 4 --alpha 8 --batch-size 4 --micro-batch 2 --max-length 64 "
                          "--epochs 100000 --save-every 1000000 --run-name growing > /dev/null 2>&1";
  pid_t pid = 0;
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  ASSERT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char* const*>(argv), environ), 0);
  ServerOptions so;
  so.runs_db = db.string();
  Running r(nullptr, so);
  Dashboard d(db);
  bool started = false;
  for (int i = 0; i < 600 && !started; ++i) {
    try {
      const json runs = d.runs();
      started = !runs.empty() && runs[0]["steps"].is_number() && runs[0]["steps"].get<int>() >= 3;
    } catch (...) {
    }
    if (!started) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(started);
  const std::string url = r.url + "#runs/1";
  const std::string first = dom(url);
  const std::string a = attribute(first, "data-metric=\"train/loss\"", "data-points");
  ASSERT_FALSE(a.empty()) << first.substr(0, 4000);
  EXPECT_NE(first.find(">growing<"), std::string::npos);
  EXPECT_NE(first.find("status-running"), std::string::npos);
  const std::string second = dom(url);
  const std::string b = attribute(second, "data-metric=\"train/loss\"", "data-points");
  ASSERT_FALSE(b.empty());
  EXPECT_GT(std::stoi(b), std::stoi(a));  // the curve grew between the two looks
  screenshot(url, "runs");
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
}

TEST_F(ServeWeb, TheGameShowsAProductAndItsGuessesJoinTheLeaderboard) {
  std::string lines;
  const auto products = tiny::products(6, 2);
  for (const auto& p : products) lines += json{{"text", p.text}, {"price", p.price}}.dump() + "\n";
  std::ofstream(dir_ / "test.jsonl") << lines;
  ServerOptions so;
  so.game_data = (dir_ / "test.jsonl").string();
  so.game_out = (dir_ / "guesses.csv").string();
  {
    Running r(nullptr, so);
    const std::string html = dom(r.url + "#game");
    EXPECT_NE(html.find(products[0].text), std::string::npos) << html.substr(0, 4000);
    EXPECT_NE(html.find("guesses.csv"), std::string::npos);
    screenshot(r.url + "#game", "game");
    // Three guesses through the API the page calls; a guess out of turn is refused.
    httplib::Client c("127.0.0.1", r.server->port());
    for (int i = 0; i < 3; ++i) {
      auto res = c.Post("/api/game/guess", json{{"id", i}, {"price", 10.0 + i}}.dump(), "application/json");
      ASSERT_TRUE(res && res->status == 200) << (res ? res->body : "no reply");
      EXPECT_DOUBLE_EQ(json::parse(res->body)["price"].get<double>(), products[i].price);
    }
    auto late = c.Post("/api/game/guess", json{{"id", 0}, {"price", 1.0}}.dump(), "application/json");
    ASSERT_TRUE(late);
    EXPECT_EQ(late->status, 409);
    const json state = json::parse(c.Get("/api/game")->body);
    EXPECT_EQ(state["guessed"], 3);
    EXPECT_EQ(state["item"]["id"], 3);
    double mae = 0;
    for (int i = 0; i < 3; ++i) mae += std::abs(10.0 + i - products[i].price) / 3;
    EXPECT_NEAR(state["person_mae"].get<double>(), mae, 1e-9);
  }
  // A restarted server continues after the saved guesses.
  {
    Running r(nullptr, so);
    httplib::Client c("127.0.0.1", r.server->port());
    EXPECT_EQ(json::parse(c.Get("/api/game")->body)["item"]["id"], 3);
  }
  // The saved file is what eval's human pricer reads.
  const auto e =
      cli_test::run_cli("eval --data " + (dir_ / "test.jsonl").string() + " --limit 3 --pricers human --human-import " +
                        (dir_ / "guesses.csv").string() + " --no-record --out " + (dir_ / "eval").string());
  EXPECT_EQ(e.rc, 0) << e.out;
  const json results = json::parse(cli_test::slurp(dir_ / "eval" / "results.json"));
  EXPECT_EQ(results["pricers"][0]["name"], "human");
  EXPECT_EQ(results["pricers"][0]["metrics"]["n"], 3);
}

TEST_F(ServeWeb, AnUploadedFileIsPricedWithProgressAndDownloads) {
  // The Price page's batch upload driven as a person uses it (file input, button, downloads) over
  // the DevTools protocol: tests/web/batch_upload.js, its one npm package installed by scripts/setup.
  const fs::path driver = fs::path(PRICER_SOURCE_DIR) / "tests" / "web";
  ASSERT_TRUE(fs::exists(driver / "node_modules" / "chrome-remote-interface"))
      << "tests/web/node_modules is missing: scripts/setup installs it (npm ci)";
  auto world = tiny::make_world(dir_ / "world");
  ModelPricerOptions o;
  o.model = world.base.string();
  o.base_dtype = "f32";
  auto mp = std::make_shared<ModelPricer>(o);
  std::vector<std::string> texts;
  std::string lines;
  for (const auto& p : tiny::products(70, 8)) {
    texts.push_back(p.text);
    lines += json{{"id", "sku-" + std::to_string(texts.size())}, {"text", p.text}}.dump() + "\n";
  }
  std::ofstream(dir_ / "items.jsonl") << lines;
  const fs::path out = dir_ / "downloads";
  fs::create_directories(out);
  Running r(mp, ServerOptions{});
  const std::string cmd = "cd '" + driver.string() + "' && timeout 300 node batch_upload.js '" + chromium() + "' '" +
                          r.url + "' '" + (dir_ / "items.jsonl").string() + "' '" + out.string() + "' 2>&1";
  std::string printed;
  if (std::FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[8192];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) printed.append(buf, n);
    ::pclose(p);
  }
  const json state = json::parse(printed, nullptr, false);
  ASSERT_TRUE(state.is_object()) << printed;
  EXPECT_TRUE(state["error"].is_null()) << printed;
  const EngineStats es = r.engine->stats();
  ASSERT_EQ(state["timed_out"], false) << "the batch did not finish in 120 s: " << printed << "\nengine: waiting "
                                       << es.waiting << ", active " << es.active << ", served " << es.served
                                       << ", price batches " << es.price_batches << ", priced " << es.priced;
  EXPECT_EQ(state["done"], 70);
  EXPECT_EQ(state["progress"]["value"], 70);
  EXPECT_EQ(state["progress"]["max"], 70);
  EXPECT_TRUE(std::regex_search(state["status"].get<std::string>(), std::regex("^70/70 · [0-9.]+ items/s · ETA")))
      << printed;
  EXPECT_GE(state["statuses"].size(), 1u);
  fs::copy_file(out / "batch.png", output_dir() / "batch.png", fs::copy_options::overwrite_existing);
  // The downloads hold every item's price, in order, as the price API gives it for the same text.
  std::ifstream jl(out / "prices.jsonl");
  std::vector<json> rows;
  for (std::string line; std::getline(jl, line);) rows.push_back(json::parse(line));
  ASSERT_EQ(rows.size(), 70u);
  const std::vector<PricePrediction> direct = mp->predict(
      [&] {
        std::vector<std::string> prompts;
        for (const auto& t : texts) prompts.push_back(mp->prompt_for(t));
        return prompts;
      }(),
      kDefaultPriceMode);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i]["id"], "sku-" + std::to_string(i + 1));
    EXPECT_EQ(rows[i]["line"], i + 1);
    EXPECT_EQ(rows[i]["text"], texts[i]);
    EXPECT_NEAR(rows[i]["price"].get<double>(), direct[i].price, 1e-6 * std::max(1.0, direct[i].price)) << i;
  }
  const std::string csv = cli_test::slurp(out / "prices.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 71);
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "line,id,price,lo,hi,readout,text");
}

TEST_F(ServeWeb, TheEvalsPageShowsARecordedLeaderboardAndItsReport) {
  std::string lines;
  for (const auto& p : tiny::products(40, 5)) lines += json{{"text", p.text}, {"price", p.price}}.dump() + "\n";
  std::ofstream(dir_ / "items.jsonl") << lines;
  const fs::path db = dir_ / "runs.db";
  const auto e = cli_test::run_cli("eval --data " + (dir_ / "items.jsonl").string() + " --train " +
                                   (dir_ / "items.jsonl").string() + " --pricers mean,linear --runs-db " + db.string() +
                                   " --run-name board --out " + (dir_ / "eval").string());
  ASSERT_EQ(e.rc, 0) << e.out;
  ServerOptions so;
  so.runs_db = db.string();
  Running r(nullptr, so);
  const std::string html = dom(r.url + "#evals");
  EXPECT_NE(html.find("id=\"leaderboard\""), std::string::npos) << html.substr(0, 4000);
  EXPECT_NE(html.find(">linear<"), std::string::npos);
  EXPECT_NE(html.find(">mean<"), std::string::npos);
  EXPECT_NE(html.find("/api/evals/1/report"), std::string::npos);
  screenshot(r.url + "#evals", "evals");
  // Without a model the Price page says so instead of offering to price.
  const std::string price = dom(r.url + "#price");
  EXPECT_EQ(price.find("id=\"price-nomodel\" hidden"), std::string::npos);
}

TEST_F(ServeWeb, TheSweepsPageShowsTrialsPrunedOnesAndTheBest) {
  // A sweep's trials as the sweep records them: settings, eval/mae per step, a pruned one.
  const fs::path db_path = dir_ / "runs.db";
  {
    monitor::RunDb db(db_path);
    const double t0 = 1.8e9;
    struct Trial {
      double lr;
      int rank;
      std::vector<double> mae;
      bool pruned;
    };
    const std::vector<Trial> trials = {{1e-4, 8, {90, 70, 60, 55}, false},
                                       {3e-4, 16, {85, 62, 50, 44}, false},
                                       {1e-3, 32, {95, 93}, true},
                                       {2e-5, 8, {99, 97, 96, 95}, false}};
    for (size_t i = 0; i < trials.size(); ++i) {
      monitor::NewRun run;
      run.name = "trial-" + std::to_string(i);
      const int64_t id = db.create_run(run, t0 + static_cast<double>(i));
      db.set_sweep(id, "lr-rank");
      db.log_params(id, {{"lr", trials[i].lr}, {"rank", trials[i].rank}});
      for (size_t s = 0; s < trials[i].mae.size(); ++s)
        db.log_metrics(id, 100 * (s + 1), {{"eval/mae", trials[i].mae[s]}}, t0 + static_cast<double>(i + s));
      db.set_status(id, monitor::RunStatus::finished, trials[i].pruned ? "pruned at step 200 by the sweep" : "",
                    t0 + static_cast<double>(i) + 10);
    }
  }
  ServerOptions so;
  so.runs_db = db_path.string();
  Running r(nullptr, so);
  const std::string url = r.url + "#sweeps/lr-rank";
  const std::string html = dom(url);
  EXPECT_NE(html.find("lr-rank (4 trials)"), std::string::npos) << html.substr(0, 4000);
  EXPECT_NE(html.find(">pruned<"), std::string::npos);
  EXPECT_EQ(attribute(html, "id=\"sweep-steps\"", "data-points"), "14");  // every trial's evaluations
  EXPECT_EQ(attribute(html, "id=\"sweep-parallel\"", "data-points"), "12");  // 4 trials x (lr, rank, objective)
  // The best finished trial (the pruned one scored 93 and is not a finished configuration).
  const size_t best = html.find("id=\"sweep-best\"");
  ASSERT_NE(best, std::string::npos);
  EXPECT_NE(html.find("run 2 (trial-1), eval/mae 44", best), std::string::npos) << html.substr(best, 300);
  screenshot(url, "sweeps");
}
