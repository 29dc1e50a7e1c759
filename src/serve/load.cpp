#include "serve/load.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "core/error.h"
#include "data/synthetic.h"
#include "serve/server.h"

namespace pricer::serve {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

LoadResult run_load(int port, const std::string& path, const std::vector<std::string>& bodies, int clients,
                    int per_client) {
  require(!bodies.empty() && clients >= 1 && per_client >= 1, "load: nothing to send");
  std::vector<std::vector<double>> latencies(static_cast<size_t>(clients));
  std::atomic<int64_t> errors{0};
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      httplib::Client cli("127.0.0.1", port);
      cli.set_read_timeout(600, 0);
      cli.set_keep_alive(true);
      cli.set_tcp_nodelay(true);
      for (int i = 0; i < per_client; ++i) {
        const std::string& body = bodies[static_cast<size_t>(c * per_client + i) % bodies.size()];
        const auto s = Clock::now();
        auto res = cli.Post(path.c_str(), body, "application/json");
        latencies[static_cast<size_t>(c)].push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - s).count());
        if (!res || res->status != 200) ++errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  LoadResult r;
  r.clients = clients;
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  r.requests = static_cast<int64_t>(all.size());
  r.errors = errors;
  r.requests_per_s = static_cast<double>(r.requests) / r.seconds;
  auto pct = [&](double q) {
    return all[std::min(all.size() - 1, static_cast<size_t>(q * static_cast<double>(all.size())))];
  };
  r.p50_ms = pct(0.50);
  r.p99_ms = pct(0.99);
  return r;
}

namespace {

json result_json(const std::string& endpoint, bool batching, const LoadResult& r) {
  return {
      {"bench", "serve"},       {"endpoint", endpoint}, {"batching", batching}, {"clients", r.clients},
      {"requests", r.requests}, {"errors", r.errors},   {"seconds", r.seconds}, {"requests_per_s", r.requests_per_s},
      {"p50_ms", r.p50_ms},     {"p99_ms", r.p99_ms}};
}

// One server over the model for a series of loads.
std::vector<json> measure(std::shared_ptr<ModelPricer> mp, const ServeBenchOptions& o, bool batching,
                          const std::vector<int>& clients, const std::vector<std::string>& endpoints) {
  EngineOptions eo;
  eo.batching = batching;
  eo.queue = 1024;
  auto engine = std::make_shared<Engine>(mp, eo);
  ServerOptions so;
  so.port = 0;
  so.model_name = "bench";
  Server server(engine, so);
  const int port = server.bind();
  std::thread th([&] { server.run(); });
  std::vector<std::string> prices, completions;
  for (uint64_t i = 0; i < 64; ++i) {
    const json item = json::parse(data::synthetic_item(1, i, false).line);
    const std::string text = item.value("title", std::string("a product"));
    prices.push_back(json{{"text", text}}.dump());
    completions.push_back(
        json{{"model", "bench"}, {"prompt", text}, {"max_tokens", o.max_tokens}, {"temperature", 0}}.dump());
  }
  std::vector<json> out;
  for (const auto& endpoint : endpoints) {
    const bool price = endpoint == "/v1/price";
    run_load(port, endpoint, price ? prices : completions, 1, 2);  // warm-up
    for (int c : clients)
      out.push_back(
          result_json(endpoint, batching, run_load(port, endpoint, price ? prices : completions, c, o.per_client)));
  }
  server.stop();
  th.join();
  return out;
}

}  // namespace

std::vector<json> bench_serve(const ServeBenchOptions& o) {
  require(!o.clients.empty(), "bench serve: no client counts");
  auto mp = std::make_shared<ModelPricer>(o.model);
  std::vector<json> out = measure(mp, o, true, o.clients, {"/v1/price", "/v1/completions"});
  const int most = *std::max_element(o.clients.begin(), o.clients.end());
  for (auto& j : measure(mp, o, false, {most}, {"/v1/price", "/v1/completions"})) out.push_back(std::move(j));
  return out;
}

}  // namespace pricer::serve
