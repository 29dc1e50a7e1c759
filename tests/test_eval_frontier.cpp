// The frontier pricer against a local OpenAI-compatible stub on 127.0.0.1 (an ephemeral port):
// replies, usage and cost, a 429 then success, a timeout then success, garbage, persistent
// failure, and errors that abort. Nothing here reaches the network.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli_test_util.h"
#include "core/error.h"
#include "eval/frontier_pricer.h"

using namespace pricer::eval;
namespace fs = std::filesystem;
using nlohmann::json;

TEST(EvalFrontier, PromptInTheCourseStyle) {
  EXPECT_NE(frontier_system_prompt().find("Reply only with the price, no explanation"), std::string::npos);
  EXPECT_EQ(frontier_user_prompt("A lamp"), "How much does this cost?\n\nA lamp");
}

TEST(EvalFrontier, RejectsBadConfig) {
  FrontierConfig c;
  c.base_url = "localhost:8080";
  EXPECT_THROW(FrontierPricer{c}, pricer::Error);
  c.base_url = "ftp://example.com";
  EXPECT_THROW(FrontierPricer{c}, pricer::Error);
  c.base_url = "http://127.0.0.1:1";
  c.concurrency = 0;
  EXPECT_THROW(FrontierPricer{c}, pricer::Error);
}

namespace {

// Behaviour is keyed by the item text: "price:<reply>", "ratelimit", "slow", "garbage",
// "down" (always 503), "nochoices", "huge" (a 2 MiB reply), "wait" (holds the request briefly to
// observe concurrency), "unauthorized" (401).
class Stub {
 public:
  Stub() {
    svr_.Post("/v1/chat/completions",
              [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
  }
  ~Stub() {
    svr_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1/"; }
  int calls(const std::string& text) {
    std::lock_guard lock(mu_);
    return calls_[text];
  }
  int max_in_flight() const { return max_in_flight_; }
  std::string last_auth() {
    std::lock_guard lock(mu_);
    return auth_;
  }
  json last_body() {
    std::lock_guard lock(mu_);
    return body_;
  }

 private:
  static void reply(httplib::Response& res, const std::string& content) {
    res.set_content(json{{"choices", {{{"message", {{"role", "assistant"}, {"content", content}}}}}},
                         {"usage", {{"prompt_tokens", 100}, {"completion_tokens", 3}}}}
                        .dump(),
                    "application/json");
  }

  void handle(const httplib::Request& req, httplib::Response& res) {
    const json body = json::parse(req.body);
    std::string text = body["messages"][1]["content"].get<std::string>();
    text = text.substr(text.rfind('\n') + 1);
    int n;
    {
      std::lock_guard lock(mu_);
      n = ++calls_[text];
      auth_ = req.get_header_value("Authorization");
      body_ = body;
    }
    const int now = ++in_flight_;
    int prev = max_in_flight_;
    while (now > prev && !max_in_flight_.compare_exchange_weak(prev, now)) {
    }
    if (text.starts_with("price:")) {
      reply(res, text.substr(6));
    } else if (text == "ratelimit") {
      if (n == 1) {
        res.status = 429;
        res.set_header("Retry-After", "0");
        res.set_content("{\"error\":\"slow down\"}", "application/json");
      } else {
        reply(res, "$42");
      }
    } else if (text == "slow") {
      if (n == 1) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      reply(res, "7.25");
    } else if (text == "garbage") {
      reply(res, "I am not able to estimate that.");
    } else if (text == "down") {
      res.status = 503;
    } else if (text == "nochoices") {
      res.set_content("{\"object\":\"chat.completion\"}", "application/json");
    } else if (text == "wait") {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      reply(res, "1");
    } else if (text == "huge") {
      reply(res, std::string(2u << 20, '9'));
    } else if (text == "unauthorized") {
      res.status = 401;
      res.set_content("{\"error\":\"bad key\"}", "application/json");
    }
    --in_flight_;
  }

  httplib::Server svr_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, int> calls_;
  std::string auth_;
  json body_;
  std::atomic<int> in_flight_{0}, max_in_flight_{0};
};

std::vector<Item> items_of(const std::vector<std::string>& texts) {
  std::vector<Item> items;
  for (const auto& t : texts) {
    Item it;
    it.text = t;
    items.push_back(it);
  }
  return items;
}

FrontierConfig config_for(const Stub& stub) {
  FrontierConfig c;
  c.base_url = stub.url();
  c.model = "stub-model";
  c.api_key_env = "PRICER_TEST_FRONTIER_KEY";
  c.concurrency = 3;
  c.max_retries = 2;
  c.timeout_s = 0.4;
  c.backoff_s = 0.01;
  c.usd_per_m_input = 0.15;
  c.usd_per_m_output = 0.60;
  return c;
}

}  // namespace

TEST(EvalFrontier, RepliesRetriesAndFailures) {
  Stub stub;
  ::setenv("PRICER_TEST_FRONTIER_KEY", "sk-test", 1);
  FrontierPricer p(config_for(stub));
  const auto items = items_of({"price:$1,234.50", "ratelimit", "slow", "garbage", "down", "nochoices", "price:19"});
  const auto prices = p.predict(items);
  ASSERT_EQ(prices.size(), items.size());
  EXPECT_DOUBLE_EQ(prices[0], 1234.5);
  EXPECT_DOUBLE_EQ(prices[1], 42.0);  // 429, then success
  EXPECT_DOUBLE_EQ(prices[2], 7.25);  // timed out once, then success
  // Unpriced, never a made-up $0: no number in the reply, 503 on every attempt, no choices.
  EXPECT_TRUE(std::isnan(prices[3]));
  EXPECT_TRUE(std::isnan(prices[4]));
  EXPECT_TRUE(std::isnan(prices[5]));
  EXPECT_DOUBLE_EQ(prices[6], 19.0);
  EXPECT_EQ(stub.calls("ratelimit"), 2);
  EXPECT_EQ(stub.calls("slow"), 2);
  EXPECT_EQ(stub.calls("garbage"), 1);  // a bad reply is not retried
  EXPECT_EQ(stub.calls("down"), 3);  // first attempt + 2 retries
  EXPECT_EQ(stub.last_auth(), "Bearer sk-test");
  const json body = stub.last_body();
  EXPECT_EQ(body["model"], "stub-model");
  EXPECT_EQ(body["messages"][0]["role"], "system");
  EXPECT_EQ(body["messages"][0]["content"], frontier_system_prompt());
  EXPECT_FALSE(body.contains("max_tokens"));

  const json s = p.stats();
  EXPECT_EQ(s["requests"], 7);
  EXPECT_EQ(s["retries"], 1 + 1 + 2);
  EXPECT_EQ(s["failed"], 1);
  EXPECT_EQ(s["unparsed"], 2);
  // Usage counted from the five 200 replies that carried it.
  EXPECT_EQ(s["prompt_tokens"], 500);
  EXPECT_EQ(s["completion_tokens"], 15);
  EXPECT_NEAR(s["cost_usd"].get<double>(), (500 * 0.15 + 15 * 0.60) / 1e6, 1e-15);
  ASSERT_EQ(s["failures"].size(), 3u);
  EXPECT_EQ(s["failures"][0]["id"], 3);
  EXPECT_EQ(s["failures"][0]["reply"], "I am not able to estimate that.");
  EXPECT_EQ(s["failures"][1]["error"], "HTTP 503");
  const std::string why = p.unpriced_reason();
  EXPECT_NE(why.find("HTTP 503 (1 item)"), std::string::npos) << why;
  EXPECT_NE(why.find("no price in the reply (1 item)"), std::string::npos) << why;
  ::unsetenv("PRICER_TEST_FRONTIER_KEY");
}

TEST(EvalFrontier, WorkersRunConcurrently) {
  Stub stub;
  FrontierConfig c = config_for(stub);
  c.concurrency = 4;
  c.timeout_s = 5;
  c.max_tokens = 8;
  FrontierPricer p(c);
  const auto prices = p.predict(items_of(std::vector<std::string>(12, "wait")));
  EXPECT_EQ(prices, std::vector<double>(12, 1.0));
  EXPECT_EQ(stub.calls("wait"), 12);
  EXPECT_GE(stub.max_in_flight(), 2);
  EXPECT_LE(stub.max_in_flight(), 4);
  EXPECT_EQ(stub.last_body()["max_tokens"], 8);
  EXPECT_EQ(stub.last_auth(), "");  // no key variable set: no header
}

TEST(EvalFrontier, OversizedReplyIsRefused) {
  Stub stub;
  FrontierPricer p(config_for(stub));
  const auto prices = p.predict(items_of({"huge", "price:3"}));
  EXPECT_TRUE(std::isnan(prices[0]));
  EXPECT_EQ(prices[1], 3.0);
  EXPECT_EQ(stub.calls("huge"), 1);  // not retried: it would come back as big
  const json s = p.stats();
  EXPECT_EQ(s["failed"], 1);
  EXPECT_NE(s["failures"][0]["error"].get<std::string>().find("larger than"), std::string::npos);
}

TEST(EvalFrontier, UnauthorizedAbortsWithAHint) {
  Stub stub;
  FrontierPricer p(config_for(stub));
  try {
    p.predict(items_of({"price:1", "unauthorized", "price:2"}));
    FAIL() << "expected an error";
  } catch (const pricer::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("HTTP 401"), std::string::npos) << msg;
    EXPECT_NE(msg.find("PRICER_TEST_FRONTIER_KEY"), std::string::npos) << msg;
  }
}

// Replies that hold no price are unpriced, not read loosely: a negative amount, an overflow.
TEST(EvalFrontier, RepliesThatAreNoPriceAreUnpriced) {
  Stub stub;
  FrontierPricer p(config_for(stub));
  const auto prices =
      p.predict(items_of({"price:-$45", "price:1e999", "price:$-3", "price:About $1,250.", "price:2e2"}));
  EXPECT_TRUE(std::isnan(prices[0]));
  EXPECT_TRUE(std::isnan(prices[1]));
  EXPECT_TRUE(std::isnan(prices[2]));
  EXPECT_EQ(prices[3], 1250.0);
  EXPECT_EQ(prices[4], 200.0);
  EXPECT_EQ(p.stats()["unparsed"], 3);
}

TEST(EvalFrontier, NothingListeningCountsAsFailed) {
  // Bind a port, then close it, so nothing listens there.
  int port;
  {
    httplib::Server s;
    port = s.bind_to_any_port("127.0.0.1");
  }
  FrontierConfig c;
  c.base_url = "http://127.0.0.1:" + std::to_string(port);
  c.max_retries = 1;
  c.timeout_s = 0.5;
  c.backoff_s = 0.01;
  FrontierPricer p(c);
  EXPECT_TRUE(std::isnan(p.predict(items_of({"anything"}))[0]));
  EXPECT_EQ(p.stats()["failed"], 1);
  EXPECT_EQ(p.stats()["retries"], 1);
}

namespace {

// An eval data file whose item texts key the stub's behaviour.
fs::path write_items(const fs::path& dir, const std::vector<std::string>& texts) {
  fs::create_directories(dir);
  std::ofstream out(dir / "items.jsonl");
  double price = 10;
  for (const auto& t : texts) out << json{{"title", t}, {"text", t}, {"price", price += 7}}.dump() << "\n";
  return dir / "items.jsonl";
}

}  // namespace

// An API that prices nothing fails the pricer and the command; the others are still scored,
// ranked and written. One that prices some items is "incomplete": figures, no rank.
TEST(EvalFrontier, EvalMarksAFrontierThatCouldNotPriceAndFails) {
  const fs::path dir = fs::temp_directory_path() / ("frontier_eval_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const fs::path data = write_items(dir, {"down", "down", "garbage"});
  // Port 9 (discard) has no HTTP server: each request fails at once or after the timeout.
  auto r = pricer::cli_test::run_cli("eval --data " + data.string() + " --train " + data.string() +
                                     " --pricers frontier,mean --no-record --frontier-url http://127.0.0.1:9" +
                                     " --frontier-retries 0 --frontier-timeout 1 --out " + (dir / "dead").string());
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("frontier could not price any item"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("items without a price: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" (3 items)"), std::string::npos) << "the reason, counted\n" << r.out;
  const json dead = json::parse(pricer::cli_test::slurp(dir / "dead" / "results.json"));
  EXPECT_EQ(dead["pricers"][0]["name"], "mean");
  EXPECT_EQ(dead["pricers"][0]["status"], "complete");
  EXPECT_EQ(dead["pricers"][1]["status"], "failed");
  EXPECT_TRUE(dead["pricers"][1]["metrics"].is_null());
  EXPECT_TRUE(dead["items"][0]["predictions"]["frontier"].is_null());
  EXPECT_NE(r.out.find("FAILED"), std::string::npos) << r.out;
  EXPECT_EQ(pricer::cli_test::slurp(dir / "dead" / "report.html").find("frontier: MAE"), std::string::npos);

  Stub stub;
  const fs::path mixed = write_items(dir / "mixed", {"price:20", "garbage", "price:40"});
  r = pricer::cli_test::run_cli("eval --data " + mixed.string() + " --train " + mixed.string() +
                                " --pricers frontier,mean --no-record" + " --frontier-url " + stub.url() +
                                " --frontier-retries 0 --out " + (dir / "part").string());
  EXPECT_EQ(r.rc, 0) << r.out;
  const json part = json::parse(pricer::cli_test::slurp(dir / "part" / "results.json"));
  EXPECT_EQ(part["pricers"][1]["name"], "frontier");
  EXPECT_EQ(part["pricers"][1]["status"], "incomplete");
  EXPECT_EQ(part["pricers"][1]["unpriced"], 1);
  EXPECT_EQ(part["pricers"][1]["metrics"]["n"], 2);
  EXPECT_NE(r.out.find("-    frontier"), std::string::npos) << "not ranked\n" << r.out;
  EXPECT_NE(r.out.find("not ranked"), std::string::npos) << r.out;
  fs::remove_all(dir);
}
