// `pricer serve` over real HTTP on 127.0.0.1 (an ephemeral port), with a tiny model: every
// endpoint, streaming, bad requests, a full queue, timeouts, batching of queued price requests, a
// bounded load test, a graceful SIGTERM of the real binary, and the frontier pricer pricing
// through the server exactly as the model prices greedily.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <thread>

#include "cli_test_util.h"
#include "eval/frontier_pricer.h"
#include "eval/item.h"
#include "model/generate.h"
#include "monitor/run_db.h"
#include "predict/price_text.h"
#include "serve/server.h"
#include "tiny_pricer_model.h"

using namespace pricer;
using namespace pricer::serve;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A server on its own thread, stopped (gracefully) when this goes.
struct Running {
  std::shared_ptr<Engine> engine;
  std::unique_ptr<Server> server;
  std::thread thread;
  int port = 0;
  Running(std::shared_ptr<ModelPricer> mp, ServerOptions so, EngineOptions eo = {}) {
    engine = std::make_shared<Engine>(std::move(mp), eo);
    so.port = 0;
    so.model_name = "tiny";
    server = std::make_unique<Server>(engine, so);
    port = server->bind();
    thread = std::thread([this] { server->run(); });
  }
  ~Running() {
    server->stop();
    thread.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(30, 0);
    return c;
  }
};

struct Reply {
  int status = 0;
  json body;
  std::string raw;
  std::string retry_after;
};

Reply post(const Running& r, const std::string& path, const std::string& body) {
  auto c = r.client();
  auto res = c.Post(path.c_str(), body, "application/json");
  Reply out;
  if (!res) {
    out.raw = "no reply: " + httplib::to_string(res.error());
    return out;
  }
  out.status = res->status;
  out.raw = res->body;
  out.retry_after = res->get_header_value("Retry-After");
  out.body = json::parse(res->body, nullptr, false);
  return out;
}
Reply post(const Running& r, const std::string& path, const json& body) { return post(r, path, body.dump()); }

Reply get(const Running& r, const std::string& path) {
  auto c = r.client();
  auto res = c.Get(path.c_str());
  Reply out;
  if (!res) return out;
  out.status = res->status;
  out.body = json::parse(res->body, nullptr, false);
  return out;
}

// The server-sent events of a streamed request, each "data:" payload in order.
std::vector<std::string> stream_events(const Running& r, const std::string& path, const json& body) {
  auto c = r.client();
  std::string received;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.headers.emplace("Content-Type", "application/json");
  req.body = body.dump();
  req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
    received.append(d, n);
    return true;
  };
  auto res = c.send(req);
  EXPECT_TRUE(res && res->status == 200);
  std::vector<std::string> events;
  for (size_t at = 0; (at = received.find("data: ", at)) != std::string::npos;) {
    const size_t end = received.find("\n\n", at);
    events.push_back(received.substr(at + 6, end - at - 6));
    at = end;
  }
  return events;
}

// Text as a JSON reply carries it: bytes that are not UTF-8 become U+FFFD (JSON holds only UTF-8;
// the tiny random model emits odd bytes).
std::string utf8(const std::string& s) {
  return json::parse(json(s).dump(-1, ' ', false, json::error_handler_t::replace)).get<std::string>();
}

void expect_error(const Reply& r, int status, const std::string& param = "") {
  EXPECT_EQ(r.status, status) << r.raw;
  ASSERT_TRUE(r.body.is_object() && r.body.contains("error")) << r.raw;
  EXPECT_TRUE(r.body["error"]["message"].is_string());
  EXPECT_TRUE(r.body["error"]["type"].is_string());
  if (!param.empty()) {
    EXPECT_EQ(r.body["error"]["param"], param) << r.raw;
  }
}

// Waits until /health satisfies pred (up to 20 s).
bool wait_health(const Running& r, const std::function<bool(const json&)>& pred) {
  for (int i = 0; i < 20000; ++i) {
    const Reply h = get(r, "/health");
    if (h.status == 200 && pred(h.body)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

std::vector<std::string> texts(int n, uint32_t seed) {
  std::vector<std::string> t;
  for (const auto& p : tiny::products(n, seed)) t.push_back(p.text);
  return t;
}

// A price job long enough to hold the model while other requests queue behind it, even on a
// loaded machine: the most texts a request may carry, each a product text six times over (short
// texts priced in about 0.2 s were outrun by four clients under `make test`).
json long_price_job() {
  std::vector<std::string> t = texts(static_cast<int>(kMaxPriceBatch), 9);
  for (std::string& s : t) {
    const std::string one = s;
    for (int k = 1; k < 6; ++k) s += " " + one;
  }
  return json{{"texts", t}, {"readout", "greedy"}};
}

// The real `pricer serve` binary on a free loopback port, stopped with SIGTERM.
struct ServeProcess {
  int port = 0;
  pid_t pid = 0;
  fs::path log;
  ServeProcess(const std::string& model, fs::path log_file) : log(std::move(log_file)) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      socklen_t len = sizeof a;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
      port = ntohs(a.sin_port);
    }
    ::close(fd);
    const std::string cmd = "exec '" + std::string(PRICER_BINARY) + "' serve -m '" + model +
                            "' --base-dtype f32 --model-name tiny --port " + std::to_string(port) + " 2> '" +
                            log.string() + "'";
    const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
    if (posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char* const*>(argv), environ) != 0) pid = 0;
  }
  ~ServeProcess() {
    if (pid > 0) stop();
  }
  bool wait_up() const {
    httplib::Client cli("127.0.0.1", port);
    for (int i = 0; i < 600 && pid > 0; ++i) {
      auto res = cli.Get("/health");
      if (res && res->status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  // SIGTERM, then the exit status.
  int stop() {
    ::kill(pid, SIGTERM);
    int wstatus = 0;
    ::waitpid(pid, &wstatus, 0);
    pid = 0;
    return wstatus;
  }
};

class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    world_ = new tiny::World(tiny::make_world(std::filesystem::temp_directory_path() /
                                              ("pricer_serve_world_" + std::to_string(::getpid()))));
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(world_->dir);
    delete world_;
  }
  void SetUp() override {
    ModelPricerOptions o;
    o.model = world_->base.string();
    o.base_dtype = "f32";
    mp_ = std::make_shared<ModelPricer>(o);
  }
  static tiny::World* world_;
  std::shared_ptr<ModelPricer> mp_;
};
tiny::World* Serve::world_ = nullptr;

}  // namespace

TEST_F(Serve, HealthAndModels) {
  Running r(mp_, {});
  const Reply h = get(r, "/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body["status"], "ok");
  EXPECT_EQ(h.body["model"], "tiny");
  const Reply m = get(r, "/v1/models");
  EXPECT_EQ(m.body["object"], "list");
  EXPECT_EQ(m.body["data"][0]["id"], "tiny");
  EXPECT_EQ(get(r, "/v1/models/tiny").body["id"], "tiny");
  expect_error(get(r, "/v1/models/other"), 404);
}

TEST_F(Serve, GreedyCompletionIsTheModelsOwnGeneration) {
  Running r(mp_, {});
  const Reply rep = post(r, "/v1/completions",
                         json{{"model", "tiny"}, {"prompt", "Item steel"}, {"max_tokens", 12}, {"temperature", 0}});
  ASSERT_EQ(rep.status, 200) << rep.raw;
  // The same generation run directly: BOS + the prompt, greedy, 12 tokens or a stop token.
  const Tokenizer& tok = mp_->tokenizer();
  std::vector<int32_t> prompt = {tok.bos_id()};
  for (int32_t id : tok.encode("Item steel")) prompt.push_back(id);
  GenerationOptions g;
  g.max_tokens = 12;
  g.sampling.temperature = 0;
  g.sample_vocab = tok.vocab_size();
  g.stop_ids = {tok.eos_id()};
  const GenerationResult direct = generate(mp_->model(), mp_->backend(), prompt, g);
  EXPECT_EQ(rep.body["choices"][0]["text"], utf8(tok.decode(direct.tokens)));
  EXPECT_EQ(rep.body["choices"][0]["finish_reason"], direct.reason == StopReason::MaxTokens ? "length" : "stop");
  EXPECT_EQ(rep.body["object"], "text_completion");
  EXPECT_EQ(rep.body["usage"]["prompt_tokens"], prompt.size());
  EXPECT_EQ(rep.body["usage"]["completion_tokens"], direct.tokens.size());
  EXPECT_EQ(rep.body["usage"]["total_tokens"], prompt.size() + direct.tokens.size());
}

TEST_F(Serve, SeededSamplingRepeatsAndLogprobsAreTheModels) {
  Running r(mp_, {});
  const json body = {{"model", "tiny"},    {"prompt", "Item"}, {"max_tokens", 10},
                     {"temperature", 1.0}, {"seed", 7},        {"logprobs", 3}};
  const Reply a = post(r, "/v1/completions", body), b = post(r, "/v1/completions", body);
  ASSERT_EQ(a.status, 200) << a.raw;
  EXPECT_EQ(a.body["choices"][0]["text"], b.body["choices"][0]["text"]);
  const json& lp = a.body["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), a.body["usage"]["completion_tokens"].get<size_t>());
  for (size_t i = 0; i < lp["tokens"].size(); ++i) {
    const double l = lp["token_logprobs"][i];
    EXPECT_LE(l, 0.0);
    // A map keyed by token text: tokens whose text is alike (odd bytes) share a key.
    ASSERT_GE(lp["top_logprobs"][i].size(), 1u);
    ASSERT_LE(lp["top_logprobs"][i].size(), 3u);
    double best = -1e30;
    for (const auto& [t, v] : lp["top_logprobs"][i].items()) best = std::max(best, v.get<double>());
    EXPECT_LE(l, best + 1e-6);  // the sampled token is never likelier than the likeliest
  }
  // Greedy: each sampled token is the likeliest alternative.
  json greedy = body;
  greedy["temperature"] = 0;
  const json glp = post(r, "/v1/completions", greedy).body["choices"][0]["logprobs"];
  for (size_t i = 0; i < glp["tokens"].size(); ++i)
    EXPECT_EQ(glp["top_logprobs"][i][glp["tokens"][i].get<std::string>()], glp["token_logprobs"][i]);
}

TEST_F(Serve, StopSequencesCutTheReply) {
  Running r(mp_, {});
  const json base = {{"model", "tiny"}, {"prompt", "Item"}, {"max_tokens", 20}, {"temperature", 0}};
  const std::string full = post(r, "/v1/completions", base).body["choices"][0]["text"];
  ASSERT_GE(full.size(), 4u);
  const std::string stop = full.substr(full.size() / 2, 2);
  json cut = base;
  cut["stop"] = stop;
  const Reply rep = post(r, "/v1/completions", cut);
  EXPECT_EQ(rep.body["choices"][0]["text"], full.substr(0, full.find(stop)));
  EXPECT_EQ(rep.body["choices"][0]["finish_reason"], "stop");
  json echo = base;
  echo["echo"] = true;
  EXPECT_EQ(post(r, "/v1/completions", echo).body["choices"][0]["text"], "Item" + full);
}

TEST_F(Serve, StreamingSendsTheSameTextThenDone) {
  Running r(mp_, {});
  const json body = {{"model", "tiny"}, {"prompt", "Item steel"}, {"max_tokens", 15}, {"temperature", 0}};
  const json whole_reply = post(r, "/v1/completions", body).body;
  const std::string whole = whole_reply["choices"][0]["text"];
  json streamed = body;
  streamed["stream"] = true;
  streamed["stream_options"] = {{"include_usage", true}};
  const auto events = stream_events(r, "/v1/completions", streamed);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text, finish;
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    const json e = json::parse(events[i]);
    text += e["choices"][0]["text"].get<std::string>();
    if (!e["choices"][0]["finish_reason"].is_null()) finish = e["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(text, whole);
  EXPECT_FALSE(finish.empty());
  const json usage = json::parse(events[events.size() - 2]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"], whole_reply["usage"]);
}

TEST_F(Serve, ChatRepliesWithThePriceAsGreedyPricingReadsIt) {
  Running r(mp_, {});
  const std::string text = texts(1, 3).front();
  const json body = {
      {"model", "tiny"},
      {"messages", {{{"role", "system"}, {"content", "Reply with the price"}}, {{"role", "user"}, {"content", text}}}},
      {"temperature", 0}};
  const Reply rep = post(r, "/v1/chat/completions", body);
  ASSERT_EQ(rep.status, 200) << rep.raw;
  EXPECT_EQ(rep.body["object"], "chat.completion");
  EXPECT_EQ(rep.body["choices"][0]["message"]["role"], "assistant");
  const PricePrediction greedy = mp_->predict({mp_->prompt_for(text)}, PriceMode::Greedy).front();
  EXPECT_EQ(rep.body["choices"][0]["message"]["content"], utf8(greedy.text));
  // Streamed chat: the role first, then the same content.
  json streamed = body;
  streamed["stream"] = true;
  const auto events = stream_events(r, "/v1/chat/completions", streamed);
  ASSERT_GE(events.size(), 2u);
  std::string content;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const json e = json::parse(events[i]);
    EXPECT_EQ(e["object"], "chat.completion.chunk");
    if (i == 0) {
      EXPECT_EQ(e["choices"][0]["delta"]["role"], "assistant");
    }
    if (e["choices"][0]["delta"].contains("content")) content += e["choices"][0]["delta"]["content"].get<std::string>();
  }
  EXPECT_EQ(content, utf8(greedy.text));
  // Chat's logprobs: a list per token with exactly top_logprobs alternatives, the first the
  // sampled token under greedy decoding.
  json with_lp = body;
  with_lp["logprobs"] = true;
  with_lp["top_logprobs"] = 4;
  const json lp = post(r, "/v1/chat/completions", with_lp).body["choices"][0]["logprobs"]["content"];
  ASSERT_FALSE(lp.empty());
  for (const auto& t : lp) {
    ASSERT_EQ(t["top_logprobs"].size(), 4u);
    EXPECT_EQ(t["top_logprobs"][0]["logprob"], t["logprob"]);
    EXPECT_EQ(t["top_logprobs"][0]["bytes"], t["bytes"]);
  }
}

TEST_F(Serve, AModelWithAChatTemplateGetsItsConversationFormat) {
  ServerOptions so;
  so.chat = ChatStyle{ChatFormat::ChatML, ""};
  Running r(mp_, so);
  const std::vector<ChatMessage> messages = {{"system", "Be brief"}, {"user", "Item steel kettle"}};
  json msgs = json::array();
  for (const auto& m : messages) msgs.push_back({{"role", m.role}, {"content", m.content}});
  const Reply chat = post(r, "/v1/chat/completions",
                          json{{"model", "tiny"}, {"messages", msgs}, {"max_tokens", 6}, {"temperature", 0}});
  ASSERT_EQ(chat.status, 200) << chat.raw;
  // The same as completing the conversation's ChatML text: a conversation, not a price prompt.
  const Reply plain =
      post(r, "/v1/completions",
           json{{"model", "tiny"}, {"prompt", render_chat(so.chat, messages)}, {"max_tokens", 6}, {"temperature", 0}});
  ASSERT_EQ(plain.status, 200) << plain.raw;
  EXPECT_EQ(chat.body["choices"][0]["message"]["content"], plain.body["choices"][0]["text"]);
  EXPECT_EQ(chat.body["usage"], plain.body["usage"]);
  // A template pricer cannot write: chat is refused by name, completions still work.
  ServerOptions unknown;
  unknown.chat_refusal = "the model's chat template is not one pricer can write";
  Running u(mp_, unknown);
  expect_error(post(u, "/v1/chat/completions", json{{"model", "tiny"}, {"messages", msgs}}), 400, "messages");
  EXPECT_EQ(post(u, "/v1/completions", json{{"model", "tiny"}, {"prompt", "Item"}, {"max_tokens", 2}}).status, 200);
}

TEST_F(Serve, PriceApiIsThePredictorsReadout) {
  Running r(mp_, {});
  const auto t = texts(3, 5);
  const Reply one = post(r, "/v1/price", json{{"text", t[0]}});
  ASSERT_EQ(one.status, 200) << one.raw;
  const PricePrediction direct = mp_->predict({mp_->prompt_for(t[0])}, kDefaultPriceMode).front();
  EXPECT_DOUBLE_EQ(one.body["price"].get<double>(), direct.price);
  EXPECT_DOUBLE_EQ(one.body["interval"]["lo"].get<double>(), direct.dist.lo);
  EXPECT_EQ(one.body["mode"], price_mode_name(kDefaultPriceMode));
  EXPECT_FALSE(one.body["top"].empty());
  EXPECT_TRUE(one.body["timing"]["total_ms"].is_number());
  const Reply batch = post(r, "/v1/price", json{{"texts", t}, {"readout", "expected"}});
  ASSERT_EQ(batch.body["results"].size(), 3u);
  const auto expected =
      mp_->predict({mp_->prompt_for(t[0]), mp_->prompt_for(t[1]), mp_->prompt_for(t[2])}, PriceMode::Expected);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_NEAR(batch.body["results"][i]["price"].get<double>(), expected[i].price, 1e-9 * (1 + expected[i].price));
  expect_error(post(r, "/v1/price", json{{"text", "x"}, {"readout", "mean"}}), 400, "readout");
}

TEST_F(Serve, BadRequestsGetErrorsAndTheServerStaysHealthy) {
  ServerOptions so;
  so.max_body_bytes = 4096;
  Running r(mp_, so);
  expect_error(post(r, "/v1/completions", std::string("{\"model\": \"tiny\", ")), 400);
  expect_error(post(r, "/v1/completions", std::string("[1, 2]")), 400);
  expect_error(post(r, "/v1/completions", json{{"model", "tiny"}, {"prompt", 5}}), 400, "prompt");
  expect_error(post(r, "/v1/completions", json{{"model", "tiny"}}), 400, "prompt");
  expect_error(
      post(r, "/v1/chat/completions", json{{"model", "tiny"}, {"messages", {{{"role", "system"}, {"content", "x"}}}}}),
      400, "messages");
  expect_error(post(r, "/v1/completions", json{{"model", "gpt-9"}, {"prompt", "x"}}), 404, "model");
  expect_error(post(r, "/v1/completions", json{{"model", "tiny"}, {"prompt", std::string(8000, 'a')}}), 413);
  const Reply long_reply =
      post(r, "/v1/completions", json{{"model", "tiny"}, {"prompt", "Item"}, {"max_tokens", 100000}});
  expect_error(long_reply, 400, "prompt");
  EXPECT_EQ(long_reply.body["error"]["code"], "context_length_exceeded");
  expect_error(post(r, "/v1/completions", json{{"model", "tiny"}, {"prompt", {1, 999999}}}), 400, "prompt");
  expect_error(post(r, "/v1/nothing", json::object()), 404);
  expect_error(get(r, "/v1/completions"), 404);
  EXPECT_EQ(get(r, "/health").body["status"], "ok");
  EXPECT_EQ(post(r, "/v1/completions", json{{"model", "tiny"}, {"prompt", "Item"}, {"max_tokens", 2}}).status, 200);
}

TEST_F(Serve, AClientThatLeavesMidStreamDoesNotHurtTheServer) {
  Running r(mp_, {});
  for (int k = 0; k < 5; ++k) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(r.port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    const std::string body = json{{"model", "tiny"}, {"prompt", "Item"}, {"stream", true}, {"max_tokens", 60}}.dump();
    const std::string req =
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body;
    ASSERT_EQ(::write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
    char buf[64];
    ASSERT_GT(::read(fd, buf, sizeof buf), 0);  // the stream began
    ::close(fd);
  }
  EXPECT_TRUE(wait_health(r, [](const json& h) { return h["queue"]["active"] == 0 && h["queue"]["waiting"] == 0; }));
  EXPECT_EQ(post(r, "/v1/completions", json{{"model", "tiny"}, {"prompt", "Item"}, {"max_tokens", 3}}).status, 200);
}

TEST_F(Serve, QueuedPriceRequestsShareOnePassAndAFullQueueSays503) {
  ServerOptions so;
  EngineOptions eo;
  eo.queue = 6;
  Running r(mp_, so, eo);
  // A long job holds the model: a batch priced greedily, item by item.
  // jthreads: a failed ASSERT below returns with them joined, not with std::terminate.
  std::jthread big([&] {
    const Reply b = post(r, "/v1/price", long_price_job());
    EXPECT_EQ(b.status, 200);
  });
  ASSERT_TRUE(wait_health(r, [](const json& h) { return h["queue"]["active"] == 1; }));
  const uint64_t batches_before = get(r, "/health").body["price_batches"];  // the long one not yet counted
  std::vector<Reply> replies(5);
  const auto t = texts(5, 4);
  std::vector<std::jthread> small;  // after what its threads use, so that it is joined first
  for (int i = 0; i < 5; ++i) small.emplace_back([&, i] { replies[i] = post(r, "/v1/price", json{{"text", t[i]}}); });
  ASSERT_TRUE(wait_health(r, [](const json& h) { return h["queue"]["waiting"] == 5; }));
  // The queue holds 6 (1 running + 5 waiting): the next request is refused with Retry-After.
  const Reply refused = post(r, "/v1/completions", json{{"model", "tiny"}, {"prompt", "Item"}});
  expect_error(refused, 503);
  EXPECT_EQ(refused.retry_after, "1");
  big.join();
  for (auto& th : small) th.join();
  for (const auto& rep : replies) EXPECT_EQ(rep.status, 200);
  // Two passes: the long one's, then one for the five requests that waited behind it.
  EXPECT_EQ(get(r, "/health").body["price_batches"].get<uint64_t>(), batches_before + 2);
  EXPECT_GE(get(r, "/health").body["refused"].get<uint64_t>(), 1u);
}

TEST_F(Serve, WaitingGenerationsShareForwardPassesAndGiveTheirOwnText) {
  Running r(mp_, {});
  const std::vector<std::string> prompts = {"Item steel", "Brand", "Item 4 pack of", "Red"};
  auto body = [&](size_t i) {
    return json{{"model", "tiny"}, {"prompt", prompts[i]}, {"max_tokens", 6 + static_cast<int>(i)}, {"temperature", 0}};
  };
  std::vector<Reply> alone;
  for (size_t i = 0; i < prompts.size(); ++i) alone.push_back(post(r, "/v1/completions", body(i)));
  const json before = get(r, "/health").body;
  // The four wait behind a long price job, so they start together.
  std::jthread big([&] { post(r, "/v1/price", long_price_job()); });
  ASSERT_TRUE(wait_health(r, [](const json& h) { return h["queue"]["active"] == 1; }));
  std::vector<Reply> together(prompts.size());
  std::vector<std::jthread> clients;
  for (size_t i = 0; i < prompts.size(); ++i)
    clients.emplace_back([&, i] { together[i] = post(r, "/v1/completions", body(i)); });
  ASSERT_TRUE(wait_health(r, [](const json& h) { return h["queue"]["waiting"] == 4; }));
  big.join();
  for (auto& c : clients) c.join();
  // Alone, a generation takes a pass per token it returns (the prompt's, then each but the last fed
  // back), one more when a stop token ended it; together they took as many passes as the longest,
  // each carrying every generation still running.
  uint64_t longest = 0, rows_alone = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_EQ(together[i].status, 200) << together[i].raw;
    const json& choice = together[i].body["choices"][0];
    EXPECT_EQ(choice["text"], alone[i].body["choices"][0]["text"]) << prompts[i];
    const uint64_t passes =
        together[i].body["usage"]["completion_tokens"].get<uint64_t>() + (choice["finish_reason"] == "stop");
    longest = std::max(longest, passes);
    rows_alone += passes;
  }
  const json after = get(r, "/health").body;
  EXPECT_EQ(after["generation_passes"].get<uint64_t>() - before["generation_passes"].get<uint64_t>(), longest);
  EXPECT_EQ(after["generation_rows"].get<uint64_t>() - before["generation_rows"].get<uint64_t>(), rows_alone);
}

TEST_F(Serve, RequestsPastTheirTimeoutAreAnswered504) {
  ServerOptions so;
  so.request_timeout_s = 1e-6;
  Running r(mp_, so);
  expect_error(post(r, "/v1/completions", json{{"model", "tiny"}, {"prompt", "Item"}, {"max_tokens", 5}}), 504);
  expect_error(post(r, "/v1/price", json{{"text", "Item steel"}}), 504);
  EXPECT_EQ(get(r, "/health").body["status"], "ok");
}

TEST_F(Serve, SixteenClientsFiftyRequestsEachWithoutAnError) {
  Running r(mp_, {});
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> clients;
  const auto t = texts(16, 8);
  for (int c = 0; c < 16; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < 50; ++i) {
        const Reply rep = (i + c) % 2 == 0 ? post(r, "/v1/price", json{{"text", t[c]}})
                                           : post(r, "/v1/completions",
                                                  json{{"model", "tiny"}, {"prompt", "Item"}, {"max_tokens", 4}});
        (rep.status == 200 ? ok : failed)++;
        if (rep.status != 200)
          ADD_FAILURE() << "client " << c << " request " << i << ": " << rep.status << " " << rep.raw;
      }
    });
  }
  for (auto& th : clients) th.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(ok.load(), 800);
}

TEST_F(Serve, TheFrontierPricerPricesThroughTheServerAsTheModelDoes) {
  Running r(mp_, {});
  eval::FrontierConfig c;
  c.base_url = "http://127.0.0.1:" + std::to_string(r.port) + "/v1";
  c.model = "tiny";
  c.api_key_env = "";
  c.user_template = "{text}";
  c.temperature = 0;
  c.concurrency = 4;
  eval::FrontierPricer frontier(c);
  std::vector<eval::Item> items;
  std::vector<std::string> prompts;
  for (const auto& text : texts(12, 21)) {
    items.push_back({"", "", text, "", 10.0});
    prompts.push_back(mp_->prompt_for(text));
  }
  const std::vector<double> served = frontier.predict(items);
  const auto greedy = mp_->predict(prompts, PriceMode::Greedy);
  for (size_t i = 0; i < items.size(); ++i) {
    if (greedy[i].parsed) {
      EXPECT_EQ(served[i], greedy[i].price) << i;
    } else {
      EXPECT_TRUE(std::isnan(served[i])) << i;  // no number in the reply: unpriced, not a guess
    }
  }
}

TEST_F(Serve, SigtermFinishesInFlightRequestsThenExitsZero) {
  ServeProcess srv(world_->base.string(), world_->dir / "serve.log");
  ASSERT_TRUE(srv.wait_up()) << cli_test::slurp(srv.log);
  httplib::Client cli("127.0.0.1", srv.port);
  int status = 0;
  std::thread inflight([&] {
    httplib::Client c("127.0.0.1", srv.port);
    c.set_read_timeout(60, 0);
    auto res = c.Post("/v1/price", json{{"texts", texts(1024, 9)}, {"readout", "greedy"}}.dump(), "application/json");
    status = res ? res->status : -1;
    if (res) {
      EXPECT_EQ(json::parse(res->body)["results"].size(), 1024u);
    }
  });
  bool busy = false;
  for (int i = 0; i < 20000 && !busy; ++i) {
    auto res = cli.Get("/health");
    busy = res && json::parse(res->body)["queue"]["active"] == 1;
  }
  ASSERT_TRUE(busy);
  const int wstatus = srv.stop();
  inflight.join();
  EXPECT_EQ(status, 200);  // the request in flight was answered
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << cli_test::slurp(srv.log);
  EXPECT_NE(cli_test::slurp(srv.log).find("finishing the requests in flight"), std::string::npos);
  EXPECT_FALSE(httplib::Client("127.0.0.1", srv.port).Get("/health"));  // nobody listens any more
}

TEST_F(Serve, EvalOfTheFrontierPricerAgainstServePricesAsTheFinetunedPricerDoes) {
  // The commands a user runs: `pricer serve`, then `pricer eval --pricers frontier` pointed at it,
  // against `pricer eval --pricers finetuned-greedy` on the same model and items.
  const fs::path dir = world_->dir / "dogfood";
  fs::create_directories(dir / "data");
  {
    std::ofstream out(dir / "data" / "test.jsonl");
    for (const auto& p : tiny::products(40, 31)) {
      out << json{{"text", p.text}, {"price", p.price}, {"title", p.text}}.dump() << "\n";
    }
  }
  ServeProcess srv(world_->base.string(), dir / "serve.log");
  ASSERT_TRUE(srv.wait_up()) << cli_test::slurp(srv.log);
  const std::string common = "eval --data '" + (dir / "data").string() + "' --split test --no-record ";
  const cli_test::CliRun frontier = cli_test::run_cli(
      common + "--pricers frontier --frontier-url http://127.0.0.1:" + std::to_string(srv.port) +
      "/v1 --frontier-model tiny --frontier-key-env '' --frontier-prompt '{text}' --frontier-temperature 0 --out '" +
      (dir / "frontier").string() + "'");
  const cli_test::CliRun local =
      cli_test::run_cli(common + "--pricers finetuned-greedy --param finetuned_model='" + world_->base.string() +
                        "' --param base_dtype=f32 --out '" + (dir / "local").string() + "'");
  EXPECT_EQ(WEXITSTATUS(srv.stop()), 0);
  const json served = json::parse(cli_test::slurp(dir / "frontier" / "results.json"));
  const json direct = json::parse(cli_test::slurp(dir / "local" / "results.json"));
  ASSERT_EQ(served["items"].size(), 40u) << frontier.out;
  ASSERT_EQ(direct["items"].size(), 40u) << local.out;
  int priced = 0;
  for (size_t i = 0; i < 40; ++i) {
    const json& f = served["items"][i]["predictions"]["frontier"];
    // Unpriced through the server only where the reply held no number (greedy pricing falls back
    // to the distribution's mean there, which no chat reply carries).
    if (f.is_null()) continue;
    ++priced;
    EXPECT_EQ(f.get<double>(), direct["items"][i]["predictions"]["finetuned-greedy"].get<double>()) << i;
  }
  EXPECT_GT(priced, 0) << frontier.out;
}

TEST_F(Serve, WithoutAModelTheDashboardAnswersAndModelEndpointsSay404) {
  const auto db_path = world_->dir / ("dash_" + std::to_string(::getpid()) + ".db");
  std::filesystem::remove(db_path);
  {
    monitor::RunDb db(db_path);
    monitor::NewRun run;
    run.name = "curves";
    const int64_t id = db.create_run(run, 1.8e9);
    for (int s = 1; s <= 5; ++s)
      db.log_metrics(id, s, {{"train/loss", 5.0 - s}, {"train/tokens_per_s", 100.0 * s}}, 1.8e9 + s);
    db.log_metrics(id, 5, {{"eval/mae", 42.0}}, 1.8e9 + 5);
  }
  auto engine = std::shared_ptr<Engine>();
  ServerOptions so;
  so.port = 0;
  so.runs_db = db_path.string();
  Server server(engine, so);
  const int port = server.bind();
  std::thread th([&] { server.run(); });
  httplib::Client c("127.0.0.1", port);
  const json runs = json::parse(c.Get("/api/runs")->body);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0]["name"], "curves");
  EXPECT_EQ(runs[0]["steps"], 5);
  EXPECT_EQ(runs[0]["best_val_mae"], 42.0);
  EXPECT_EQ(runs[0]["tokens_per_s"], 500.0);
  const json all = json::parse(c.Get("/api/runs/1")->body);
  EXPECT_EQ(all["metrics"]["train/loss"].size(), 5u);
  const json later = json::parse(c.Get("/api/runs/1?after=3")->body);  // only what is new to a live page
  ASSERT_EQ(later["metrics"]["train/loss"].size(), 2u);
  EXPECT_EQ(later["metrics"]["train/loss"][0][0], 4);
  EXPECT_EQ(c.Get("/api/runs/9")->status, 404);
  EXPECT_EQ(c.Get("/api/runs/1?after=x")->status, 400);
  auto price = c.Post("/v1/price", json{{"text", "a lamp"}}.dump(), "application/json");
  EXPECT_EQ(price->status, 404);
  EXPECT_EQ(json::parse(price->body)["error"]["code"], "model_not_found");
  EXPECT_TRUE(json::parse(c.Get("/v1/models")->body)["data"].empty());
  const json health = json::parse(c.Get("/health")->body);
  EXPECT_EQ(health["status"], "ok");
  EXPECT_TRUE(health["model"].is_null());
  auto page = c.Get("/");
  ASSERT_TRUE(page && page->status == 200);
  EXPECT_NE(page->body.find("<title>pricer</title>"), std::string::npos);
  EXPECT_EQ(c.Get("/chart.js")->status, 200);
  EXPECT_EQ(c.Get("/api/game")->status, 404);  // no --game-data
  server.stop();
  th.join();
  std::filesystem::remove(db_path);
}

TEST_F(Serve, PriceRequestsCanAskForTheWholeDistribution) {
  ModelPricerOptions o;
  o.model = world_->base.string();
  o.base_dtype = "f32";
  o.keep_distribution = true;
  Running r(std::make_shared<ModelPricer>(o), {});
  const Reply rep = post(r, "/v1/price", json{{"text", "Item steel"}, {"distribution", true}});
  ASSERT_EQ(rep.status, 200) << rep.raw;
  const json& d = rep.body["distribution"];
  ASSERT_EQ(d["values"].size(), d["probs"].size());
  double mass = 0;
  for (const auto& p : d["probs"]) mass += p.get<double>();
  EXPECT_NEAR(mass, 1.0, 1e-6);  // renormalised over the number tokens
  EXPECT_FALSE(post(r, "/v1/price", json{{"text", "Item steel"}}).body.contains("distribution"));
}

TEST(ServeGame, GuessesAreKeptForTheirItemsAndOneServerHoldsThem) {
  const fs::path dir = fs::temp_directory_path() / ("pricer_serve_game_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto write_split = [&](const std::string& name, uint32_t seed) {
    std::ofstream out(dir / name);
    for (const auto& p : tiny::products(5, seed)) out << json{{"text", p.text}, {"price", p.price}}.dump() << "\n";
  };
  write_split("a.jsonl", 1);
  write_split("b.jsonl", 2);
  const fs::path file = dir / "guesses.csv";
  {
    Game g(dir / "a.jsonl", "test", file);
    g.guess(0, 12.5);
    g.guess(1, 3);
    // A second server on the same guesses file is refused while the first holds it.
    try {
      Game(dir / "a.jsonl", "test", file);
      ADD_FAILURE() << "a second game on the same file was accepted";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find("guesses.csv is in use"), std::string::npos) << e.what();
    }
  }
  // Restarted on the same items: the guesses go on; on other items: refused, naming both.
  EXPECT_EQ(Game(dir / "a.jsonl", "test", file).guesses(), (std::vector<double>{12.5, 3}));
  try {
    Game(dir / "b.jsonl", "test", file);
    ADD_FAILURE() << "guesses for other items were taken";
  } catch (const std::exception& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("a.jsonl"), std::string::npos) << m;
    EXPECT_NE(m.find("b.jsonl"), std::string::npos) << m;
    EXPECT_NE(m.find("--game-out"), std::string::npos) << m;
  }
  // A damaged record is an error naming the file, not a crash.
  std::ofstream(file.string() + ".game.json") << R"({"fingerprint": 7})";
  try {
    Game(dir / "a.jsonl", "test", file);
    ADD_FAILURE() << "a damaged record was taken";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("guesses.csv holds guesses"), std::string::npos) << e.what();
  }
  // A guesses file made elsewhere (no record beside it) is taken as it is.
  fs::remove(file.string() + ".game.json");
  EXPECT_EQ(Game(dir / "b.jsonl", "test", file).guesses().size(), 2u);
  fs::remove_all(dir);
}
