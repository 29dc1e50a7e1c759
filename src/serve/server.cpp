#include "serve/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <random>

#include "core/error.h"
#include "core/random.h"
#include "serve/web_assets.h"

namespace pricer::serve {

using nlohmann::json;

namespace {

// Token texts are raw bytes and may split a UTF-8 character: replaced, never a throw.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  if (e.status == 503) res.set_header("Retry-After", "1");
  send_json(res, e.status, error_body(e));
}

ApiError busy_error(const Engine& engine) {
  return engine.closing() ? ApiError(503, "the server is shutting down", "server_error", "", "shutting_down")
                          : ApiError(503, "the server's queue is full; retry later", "server_error", "", "queue_full");
}

// A request id: a counter from a random start, mixed so that ids look unrelated.
std::string random_id(const char* prefix) {
  static std::atomic<uint64_t> counter{(static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}()};
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(mix64(counter.fetch_add(1))));
  return std::string(prefix) + buf;
}

// Runs a handler; whatever it throws becomes an error reply.
template <class F>
httplib::Server::Handler guarded(F fn) {
  return [fn](const httplib::Request& req, httplib::Response& res) {
    try {
      fn(req, res);
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const Error& e) {
      send_error(res, ApiError(400, e.what()));
    } catch (const std::exception& e) {
      send_error(res, ApiError(500, std::string("internal error: ") + e.what(), "server_error"));
    }
  };
}

// ---- turning a completion request into a generation job ----

std::vector<int32_t> chat_prompt(ModelPricer& mp, const ChatStyle& style, const CompletionRequest& r) {
  if (style.format != ChatFormat::PricePrompt) {
    const Tokenizer& tok = mp.tokenizer();
    std::vector<int32_t> ids;
    if (tok.bos_id() >= 0) ids.push_back(tok.bos_id());
    for (int32_t id : tok.encode(render_chat(style, r.messages), true)) ids.push_back(id);
    return ids;
  }
  // A price model has no chat template: the last user message is the product text, priced
  // through the model's own prompt template (and comparables, when it was trained with them).
  for (auto it = r.messages.rbegin(); it != r.messages.rend(); ++it) {
    if (it->role == "user") return mp.encode_prompt(mp.model_prompt(mp.prompt_for(it->content)));
  }
  throw ApiError(400, "'messages' holds no message with role 'user'", "invalid_request_error", "messages");
}

std::vector<int32_t> completion_prompt(const Tokenizer& tok, const CompletionRequest& r) {
  if (r.prompt_is_ids) {
    for (size_t i = 0; i < r.prompt_ids.size(); ++i) {
      if (r.prompt_ids[i] >= tok.vocab_size())
        throw ApiError(400,
                       "token id " + std::to_string(r.prompt_ids[i]) + " is outside the vocabulary of " +
                           std::to_string(tok.vocab_size()),
                       "invalid_request_error", "prompt");
    }
    return r.prompt_ids;
  }
  std::vector<int32_t> ids;
  if (tok.bos_id() >= 0) ids.push_back(tok.bos_id());
  for (int32_t id : tok.encode(r.prompt)) ids.push_back(id);
  if (ids.empty()) throw ApiError(400, "the prompt is empty", "invalid_request_error", "prompt");
  return ids;
}

std::shared_ptr<GenerationJob> make_job(ModelPricer& mp, const ServerOptions& o, const CompletionRequest& r,
                                        Clock::time_point deadline) {
  const Tokenizer& tok = mp.tokenizer();
  const int64_t ctx = mp.model().config().max_seq_len;
  const bool chat = r.endpoint == Endpoint::Chat;
  if (chat && !o.chat_refusal.empty()) throw ApiError(400, o.chat_refusal, "invalid_request_error", "messages");
  auto job = std::make_shared<GenerationJob>();
  job->prompt = chat ? chat_prompt(mp, o.chat, r) : completion_prompt(tok, r);
  const auto n = static_cast<int64_t>(job->prompt.size());
  const int64_t room = ctx - n;
  if (room < 1 || (r.max_tokens && *r.max_tokens > room)) {
    throw ApiError(400,
                   "This model's maximum context length is " + std::to_string(ctx) +
                       " tokens. However, you requested " + std::to_string(n + r.max_tokens.value_or(1)) + " tokens (" +
                       std::to_string(n) + " in the prompt, " + std::to_string(r.max_tokens.value_or(1)) +
                       " for the completion). Please reduce the prompt or the completion length.",
                   "invalid_request_error", r.endpoint == Endpoint::Chat ? "messages" : "prompt",
                   "context_length_exceeded");
  }
  // OpenAI's defaults: 16 new tokens for a completion, up to the context for a chat reply; a
  // price model's reply gets greedy pricing's budget, so that both read the same number.
  const bool price_reply = chat && o.chat.format == ChatFormat::PricePrompt;
  const int64_t chat_budget = price_reply ? std::min(room, mp.options().greedy_max_tokens) : room;
  job->options.max_tokens = r.max_tokens.value_or(chat ? chat_budget : std::min<int64_t>(16, room));
  job->options.sample_vocab = std::min<int64_t>(tok.vocab_size(), mp.model().config().vocab_size);
  for (int32_t id : {tok.eos_id(), mp.model().config().eos_id})
    if (id >= 0) job->options.stop_ids.push_back(id);
  if (chat) {
    for (const std::string& end : chat_end_tokens(o.chat.format)) {
      const std::vector<int32_t> ids = tok.encode(end, true);
      if (ids.size() == 1) job->options.stop_ids.push_back(ids[0]);
    }
  }
  job->options.sampling.temperature = r.temperature;
  job->options.sampling.top_p = r.top_p;
  job->options.sampling.top_k = 0;  // OpenAI's API has no top-k
  job->options.sampling.seed = r.seed.value_or(std::random_device{}());
  job->stop = r.stop;
  job->top_logprobs = r.top_logprobs;
  // A price model's chat reply is a price, as `pricer predict --mode greedy` reads it: it ends
  // with the number.
  job->end_at_price = price_reply;
  job->deadline = deadline;
  return job;
}

// ---- replies ----

json usage_json(int64_t prompt, int64_t completion) {
  return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

// Completions' logprobs: parallel arrays, alternatives as {token: logprob} maps.
json completion_logprobs(const Tokenizer& tok, const std::vector<SampledToken>& toks, size_t offset) {
  json j = {{"tokens", json::array()},
            {"token_logprobs", json::array()},
            {"top_logprobs", json::array()},
            {"text_offset", json::array()}};
  for (const auto& t : toks) {
    const std::string s = tok.token_bytes(t.id);
    j["tokens"].push_back(s);
    j["token_logprobs"].push_back(t.logprob);
    json top = json::object();
    for (const auto& a : t.top) top[tok.token_bytes(a.id)] = a.logprob;
    j["top_logprobs"].push_back(top);
    j["text_offset"].push_back(offset);
    offset += s.size();
  }
  return j;
}

json byte_array(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// Chat's logprobs: one entry per token with its bytes and its alternatives.
json chat_logprobs(const Tokenizer& tok, const std::vector<SampledToken>& toks) {
  json content = json::array();
  for (const auto& t : toks) {
    const std::string s = tok.token_bytes(t.id);
    json top = json::array();
    for (const auto& a : t.top) {
      const std::string as = tok.token_bytes(a.id);
      top.push_back({{"token", as}, {"logprob", a.logprob}, {"bytes", byte_array(as)}});
    }
    content.push_back({{"token", s}, {"logprob", t.logprob}, {"bytes", byte_array(s)}, {"top_logprobs", top}});
  }
  return {{"content", content}};
}

struct ReplyContext {
  std::string id, model;
  long created = 0;
  Endpoint endpoint = Endpoint::Completions;
  bool logprobs = false;
  int64_t prompt_tokens = 0;
};

json reply_head(const ReplyContext& c, bool chunk) {
  const char* object =
      c.endpoint == Endpoint::Chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  return {{"id", c.id}, {"object", object}, {"created", c.created}, {"model", c.model}};
}

json whole_reply(const ReplyContext& c, const Tokenizer& tok, const std::string& text,
                 const std::vector<SampledToken>& toks, const std::string& finish, size_t text_offset) {
  json choice = {{"index", 0}, {"finish_reason", finish}};
  if (c.endpoint == Endpoint::Chat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
    choice["logprobs"] = c.logprobs ? chat_logprobs(tok, toks) : json(nullptr);
  } else {
    choice["text"] = text;
    choice["logprobs"] = c.logprobs ? completion_logprobs(tok, toks, text_offset) : json(nullptr);
  }
  json j = reply_head(c, false);
  j["choices"] = json::array({choice});
  j["usage"] = usage_json(c.prompt_tokens, static_cast<int64_t>(toks.size()));
  return j;
}

json chunk_reply(const ReplyContext& c, const Tokenizer& tok, const std::string& text,
                 const std::vector<SampledToken>& toks, const std::string& finish, bool first, size_t text_offset) {
  json choice = {{"index", 0}, {"finish_reason", finish.empty() ? json(nullptr) : json(finish)}};
  if (c.endpoint == Endpoint::Chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || first) delta["content"] = text;
    choice["delta"] = delta;
    choice["logprobs"] = c.logprobs && !toks.empty() ? chat_logprobs(tok, toks) : json(nullptr);
  } else {
    choice["text"] = text;
    choice["logprobs"] = c.logprobs && !toks.empty() ? completion_logprobs(tok, toks, text_offset) : json(nullptr);
  }
  json j = reply_head(c, true);
  j["choices"] = json::array({choice});
  return j;
}

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

// ---- the model routes' parts ----

json model_object(const std::string& id, long created) {
  return json{{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", "pricer"}};
}

// A request may name only the served model: there is no other to route it to.
void check_model(const ServerOptions& o, const std::string& model) {
  if (model != o.model_name)
    throw ApiError(404, "The model '" + model + "' does not exist; this server serves '" + o.model_name + "'",
                   "invalid_request_error", "model", "model_not_found");
}

// Waits for the whole generation, then answers in one reply.
void send_whole_reply(httplib::Response& res, GenerationJob& job, const ReplyContext& c, const Tokenizer& tok,
                      const std::string& echo) {
  std::string text = echo;
  std::vector<SampledToken> toks;
  for (;;) {
    GenerationUpdate u = job.take(std::chrono::milliseconds(200));
    text += u.text;
    toks.insert(toks.end(), u.tokens.begin(), u.tokens.end());
    if (!u.done) continue;
    if (u.error) throw *u.error;
    send_json(res, 200, whole_reply(c, tok, text, toks, u.finish_reason, echo.size()));
    return;
  }
}

// What a stream has sent so far, kept across the content provider's calls.
struct StreamState {
  bool first = true;
  size_t offset = 0;
  int64_t completion_tokens = 0;
};

// One call of a stream's content provider: the next update as a chunk; after the last one, the
// usage when asked and [DONE]. False ends the stream (the client is gone).
bool send_stream_update(httplib::DataSink& sink, GenerationJob& job, const Tokenizer& tok, const ReplyContext& c,
                        StreamState& st, const std::string& echo, bool include_usage) {
  auto write = [&](const std::string& s) {
    if (sink.write(s.data(), s.size())) return true;
    job.cancel();  // the client is gone
    return false;
  };
  GenerationUpdate u = job.take(std::chrono::milliseconds(200));
  if (st.first && !echo.empty()) u.text = echo + u.text;
  if (u.error) {
    if (!write(sse(error_body(*u.error)))) return false;
    sink.done();
    return true;
  }
  if (!u.text.empty() || !u.tokens.empty() || st.first || u.done) {
    if (!write(sse(chunk_reply(c, tok, u.text, u.tokens, u.done ? u.finish_reason : "", st.first, st.offset))))
      return false;
    st.first = false;
    st.offset += u.text.size();
    st.completion_tokens += static_cast<int64_t>(u.tokens.size());
  }
  if (!u.done) return true;
  if (include_usage) {
    json usage = reply_head(c, true);
    usage["choices"] = json::array();
    usage["usage"] = usage_json(c.prompt_tokens, st.completion_tokens);
    if (!write(sse(usage))) return false;
  }
  if (!write("data: [DONE]\n\n")) return false;
  sink.done();
  return true;
}

// Server-sent events: a chunk per update, the finish, usage when asked, then [DONE]. The provider
// holds the engine by reference as the handlers hold the server: both outlive every request.
void stream_reply(httplib::Response& res, const std::shared_ptr<GenerationJob>& job, const ReplyContext& c,
                  const std::string& echo, bool include_usage, Engine& engine) {
  auto st = std::make_shared<StreamState>();
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [&engine, job, c, st, echo, include_usage](size_t, httplib::DataSink& sink) {
        return send_stream_update(sink, *job, engine.model().tokenizer(), c, *st, echo, include_usage);
      },
      [job](bool success) {
        if (!success) job->cancel();
      });
}

// The readout a price request names, else the server's default; an unknown name is the request's fault.
PriceMode requested_readout(const PriceRequest& r, PriceMode fallback) {
  try {
    return r.readout.empty() ? fallback : price_mode_from_name(r.readout);
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "invalid_request_error", "readout");
  }
}

// /v1/price's reply: the one result, or {"results": [...]} for a batch, with what produced it.
json price_reply(const PriceRequest& r, const std::vector<json>& results, const std::string& model_name, PriceMode mode,
                 double ms) {
  json j = r.batch ? json{{"results", results}} : results.front();
  j["model"] = model_name;
  j["readout"] = price_mode_description(mode);
  j["timing"] = {{"total_ms", ms}, {"items", results.size()}};
  return j;
}

}  // namespace

Server::Server(std::shared_ptr<Engine> engine, ServerOptions options)
    : engine_(std::move(engine)), opt_(std::move(options)), http_(std::make_unique<httplib::Server>()) {
  created_ = static_cast<long>(std::time(nullptr));
  const std::size_t threads = opt_.http_threads > 0 ? static_cast<std::size_t>(opt_.http_threads)
                                                    : (engine_ ? engine_->stats().capacity : 0) + 8;
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_->set_payload_max_length(opt_.max_body_bytes);
  http_->set_keep_alive_max_count(1000);
  // A reply's headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm
  // holds the second until the client's delayed ACK, tens of milliseconds per request.
  http_->set_tcp_nodelay(true);
  if (!opt_.runs_db.empty()) dashboard_ = std::make_unique<Dashboard>(opt_.runs_db);
  if (!opt_.game_data.empty()) {
    game_ = std::make_unique<Game>(opt_.game_data, opt_.game_split, opt_.game_out);
    game_model_prices_.resize(game_->size());
  }
  // httplib's default adds SO_REUSEPORT, which lets a second server share a busy port unnoticed.
  http_->set_socket_options([this](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listen_fd_ = sock;
  });
  routes();
}

Server::~Server() = default;

int Server::bind() {
  port_ = opt_.port == 0 ? http_->bind_to_any_port(opt_.host)
                         : (http_->bind_to_port(opt_.host, opt_.port) ? opt_.port : -1);
  require(port_ > 0, "serve: cannot listen on " + opt_.host + ":" + std::to_string(opt_.port) +
                         " (in use, or not an address of this machine)");
  // httplib listens with a backlog of 5: a burst of clients connecting at once would overflow it
  // and see their connections reset. Listening again sets a deeper one.
  if (listen_fd_ >= 0) ::listen(listen_fd_, kListenBacklog);
  return port_;
}

void Server::run() { http_->listen_after_bind(); }

void Server::stop() {
  stopping_ = true;
  if (engine_) engine_->close();
  http_->stop();
}

void Server::routes() {
  const std::size_t max_body = opt_.max_body_bytes;
  // Errors httplib answers itself (no route, a body too large) get OpenAI's error object too.
  http_->set_error_handler(
      httplib::Server::HandlerWithResponse([max_body](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        ApiError e(res.status, "bad request");
        if (res.status == 404)
          e = ApiError(404, "Unknown request URL: " + req.method + " " + req.path, "invalid_request_error", "",
                       "unknown_url");
        if (res.status == 413)
          e = ApiError(413, "the request body is larger than " + std::to_string(max_body) + " bytes",
                       "invalid_request_error", "", "request_too_large");
        send_json(res, res.status, error_body(e));
        return httplib::Server::HandlerResponse::Handled;
      }));

  http_->Get("/health", guarded([this](const httplib::Request&, httplib::Response& res) {
               const bool closing = stopping_ || (engine_ && engine_->closing());
               json j = {{"status", closing ? "shutting down" : "ok"},
                         {"model", engine_ ? json(opt_.model_name) : json(nullptr)},
                         {"runs_db", opt_.runs_db.empty() ? json(nullptr) : json(opt_.runs_db)}};
               if (engine_) {
                 const EngineStats s = engine_->stats();
                 j["queue"] = {{"waiting", s.waiting}, {"active", s.active}, {"capacity", s.capacity}};
                 j["served"] = s.served;
                 j["refused"] = s.refused;
                 j["price_batches"] = s.price_batches;
                 j["priced"] = s.priced;
                 j["generation_passes"] = s.generation_passes;
                 j["generation_rows"] = s.generation_rows;
               }
               send_json(res, closing ? 503 : 200, j);
             }));
  app_routes();
  if (game_) game_routes();
  model_routes();
}

Engine& Server::engine() {
  if (!engine_)
    throw ApiError(404, "this server serves no model (it was started without --model)", "invalid_request_error",
                   "model", "model_not_found");
  return *engine_;
}

void Server::model_routes() {
  http_->Get("/v1/models", guarded([this](const httplib::Request&, httplib::Response& res) {
               const json data = engine_ ? json::array({model_object(opt_.model_name, created_)}) : json::array();
               send_json(res, 200, {{"object", "list"}, {"data", data}});
             }));
  http_->Get(R"(/v1/models/(.+))", guarded([this](const httplib::Request& req, httplib::Response& res) {
               if (!engine_ || req.matches[1] != opt_.model_name)
                 throw ApiError(404, "The model '" + std::string(req.matches[1]) + "' does not exist",
                                "invalid_request_error", "model", "model_not_found");
               send_json(res, 200, model_object(opt_.model_name, created_));
             }));

  auto completion = [this](Endpoint endpoint) {
    return guarded([this, endpoint](const httplib::Request& req, httplib::Response& res) {
      const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                               std::chrono::duration<double>(opt_.request_timeout_s));
      const CompletionRequest r = parse_completion_request(parse_body(req.body), endpoint);
      check_model(opt_, r.model);
      ModelPricer& mp = engine().model();
      auto job = make_job(mp, opt_, r, deadline);
      ReplyContext c{random_id(endpoint == Endpoint::Chat ? "chatcmpl-" : "cmpl-"),
                     opt_.model_name,
                     static_cast<long>(std::time(nullptr)),
                     endpoint,
                     r.top_logprobs >= 0,
                     static_cast<int64_t>(job->prompt.size())};
      const std::string echo = r.echo ? (r.prompt_is_ids ? mp.tokenizer().decode(r.prompt_ids) : r.prompt) : "";
      if (!engine().submit(job)) throw busy_error(engine());
      if (r.stream) stream_reply(res, job, c, echo, r.include_usage, engine());
      else send_whole_reply(res, *job, c, mp.tokenizer(), echo);
    });
  };
  http_->Post("/v1/completions", completion(Endpoint::Completions));
  http_->Post("/v1/chat/completions", completion(Endpoint::Chat));

  http_->Post("/v1/price", guarded([this](const httplib::Request& req, httplib::Response& res) {
                const auto t0 = Clock::now();
                const PriceRequest r = parse_price_request(parse_body(req.body));
                if (!r.model.empty()) check_model(opt_, r.model);
                auto job = std::make_shared<PriceJob>();
                job->mode = requested_readout(r, opt_.readout);
                for (const auto& t : r.texts) job->prompts.push_back(engine().model().prompt_for(t));
                job->distribution = r.distribution;
                job->deadline = t0 + std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double>(opt_.request_timeout_s));
                if (!engine().submit(job)) throw busy_error(engine());
                std::vector<json> results = job->wait();
                const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
                send_json(res, 200, price_reply(r, results, opt_.model_name, job->mode, ms));
              }));
}

// ---- the web app ----

void Server::app_routes() {
  for (const WebAsset& a : web_assets()) {
    const std::string path = std::string(a.path) == "/index.html" ? "/" : a.path;
    http_->Get(path, [a](const httplib::Request&, httplib::Response& res) {
      res.set_content(reinterpret_cast<const char*>(a.data), a.size, a.content_type);
    });
  }
  http_->Get("/api/info", guarded([this](const httplib::Request&, httplib::Response& res) {
               send_json(res, 200,
                         {{"model", engine_ ? json(opt_.model_name) : json(nullptr)},
                          {"readout", price_mode_name(opt_.readout)},
                          {"runs_db", opt_.runs_db.empty() ? json(nullptr) : json(opt_.runs_db)},
                          {"game", game_ != nullptr}});
             }));
  auto dashboard = [this]() -> Dashboard& {
    if (!dashboard_) throw ApiError(404, "this server reads no run database (start it with --runs-db)");
    return *dashboard_;
  };
  http_->Get("/api/runs", guarded([dashboard](const httplib::Request&, httplib::Response& res) {
               send_json(res, 200, dashboard().runs());
             }));
  http_->Get(R"(/api/runs/(\d{1,18}))", guarded([dashboard](const httplib::Request& req, httplib::Response& res) {
               int64_t after = -1;
               if (req.has_param("after")) {
                 const std::string v = req.get_param_value("after");
                 char* end = nullptr;
                 after = std::strtoll(v.c_str(), &end, 10);
                 if (v.empty() || *end != '\0')
                   throw ApiError(400, "'after' must be a step number", "invalid_request_error", "after");
               }
               send_json(res, 200, dashboard().run(std::stoll(req.matches[1]), after));
             }));
  http_->Get("/api/sweeps", guarded([dashboard](const httplib::Request&, httplib::Response& res) {
               send_json(res, 200, dashboard().sweeps());
             }));
  http_->Get("/api/evals", guarded([dashboard](const httplib::Request&, httplib::Response& res) {
               send_json(res, 200, dashboard().evals());
             }));
  http_->Get(R"(/api/evals/(\d{1,18})/report)",
             guarded([dashboard](const httplib::Request& req, httplib::Response& res) {
               res.set_content(dashboard().eval_report(std::stoll(req.matches[1])), "text/html; charset=utf-8");
             }));
}

// The model's prices of the guessed items not priced yet, in one batch.
void Server::price_game_items(std::size_t upto) {
  if (!engine_) return;
  auto job = std::make_shared<PriceJob>();
  std::vector<std::size_t> ids;
  for (std::size_t i = 0; i < upto; ++i) {
    if (game_model_prices_[i]) continue;
    const eval::Item& it = game_->item(i);
    ids.push_back(i);
    job->prompts.push_back(it.prompt.empty() ? engine_->model().prompt_for(it.text) : it.prompt);
  }
  if (ids.empty()) return;
  job->mode = opt_.readout;
  job->deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt_.request_timeout_s));
  if (!engine_->submit(job)) throw busy_error(*engine_);
  const std::vector<json> results = job->wait();
  for (std::size_t k = 0; k < ids.size(); ++k) game_model_prices_[ids[k]] = results[k]["price"].get<double>();
}

// The game's state with the person's running MAE and the model's on the same items.
json Server::game_state() {
  json j = game_->state();
  const std::vector<double> guesses = game_->guesses();
  price_game_items(guesses.size());
  double person = 0, model = 0;
  for (std::size_t i = 0; i < guesses.size(); ++i) {
    person += std::abs(guesses[i] - game_->item(i).price);
    if (game_model_prices_[i]) model += std::abs(*game_model_prices_[i] - game_->item(i).price);
  }
  const auto n = static_cast<double>(guesses.size());
  j["person_mae"] = guesses.empty() ? json(nullptr) : json(person / n);
  j["model_mae"] = guesses.empty() || !engine_ ? json(nullptr) : json(model / n);
  return j;
}

void Server::game_routes() {
  http_->Get("/api/game", guarded([this](const httplib::Request&, httplib::Response& res) {
               std::lock_guard lock(game_mu_);
               send_json(res, 200, game_state());
             }));
  http_->Post("/api/game/guess", guarded([this](const httplib::Request& req, httplib::Response& res) {
                const json body = parse_body(req.body);
                if (!body.is_object() || !body.contains("id") || !body["id"].is_number_unsigned())
                  throw ApiError(400, "'id' must be the item's id", "invalid_request_error", "id");
                if (!body.contains("price") || !body["price"].is_number())
                  throw ApiError(400, "'price' must be a number", "invalid_request_error", "price");
                std::lock_guard lock(game_mu_);
                const auto id = body["id"].get<std::size_t>();
                const double truth = game_->guess(id, body["price"].get<double>());
                json j = {{"id", id}, {"price", truth}, {"guess", body["price"]}};
                j["state"] = game_state();
                j["model_price"] = game_model_prices_[id] ? json(*game_model_prices_[id]) : json(nullptr);
                send_json(res, 200, j);
              }));
}

}  // namespace pricer::serve
