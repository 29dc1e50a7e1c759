#pragma once
// `pricer serve`: the HTTP front of the engine. OpenAI's /v1/completions, /v1/chat/completions
// (streamed as server-sent events when asked) and /v1/models, the price API /v1/price, /health.
// Every error is OpenAI's error object with its HTTP status; a full queue is 503 with
// Retry-After, an oversized body 413. stop() is graceful: new requests are refused, those in
// flight finish.
#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "serve/chat_format.h"
#include "serve/dashboard.h"
#include "serve/engine.h"
#include "serve/game.h"

namespace httplib {
class Server;
}

namespace pricer::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see port())
  std::string model_name;  // the id clients send as "model"
  std::size_t max_body_bytes = 4u << 20;
  double request_timeout_s = 300;  // from arrival to the last token
  int http_threads = 0;  // 0: the engine's queue + 8 (every queued request holds one)
  PriceMode readout = kDefaultPriceMode;  // /v1/price's default
  std::string runs_db;  // the web app's Runs, Sweeps and Evals pages read it
  std::string game_data;  // a dataset (directory or file) for "Beat the model"
  std::string game_split = "test";
  std::string game_out = "guesses.csv";  // where the person's guesses are kept
  ChatStyle chat;  // how chat messages become a prompt
  std::string chat_refusal;  // when set, chat requests are answered 400 with it
};

class Server {
 public:
  // engine may be null: the web app's dashboard alone (model endpoints answer 404).
  Server(std::shared_ptr<Engine> engine, ServerOptions options);
  ~Server();
  // Binds host:port; returns the port (the one chosen when port was 0). Throws Error when busy.
  int bind();
  // Serves until stop(); returns once every in-flight request is answered.
  void run();
  // Thread-safe and signal-thread-safe: refuses new work, lets in-flight requests finish.
  void stop();
  int port() const { return port_; }

 private:
  void routes();
  void model_routes();
  void app_routes();
  void game_routes();
  void price_game_items(std::size_t upto);
  nlohmann::json game_state();
  Engine& engine();  // ApiError 404 when serving no model
  std::shared_ptr<Engine> engine_;
  std::unique_ptr<Dashboard> dashboard_;
  std::unique_ptr<Game> game_;
  std::mutex game_mu_;
  std::vector<std::optional<double>> game_model_prices_;  // the model's price of each guessed item
  ServerOptions opt_;
  std::unique_ptr<httplib::Server> http_;
  int port_ = 0;
  int listen_fd_ = -1;
  std::atomic<bool> stopping_{false};
  static constexpr int kListenBacklog = 1024;
  long created_ = 0;  // unix time the model was loaded (the models list's "created")
};

}  // namespace pricer::serve
