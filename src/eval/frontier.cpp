#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <memory>
#include <thread>

#include "core/error.h"
#include "eval/frontier_pricer.h"
#include "predict/price_text.h"

namespace pricer::eval {

using nlohmann::json;

std::string frontier_system_prompt() {
  return "You estimate prices of items. Reply only with the price, no explanation";
}

std::string frontier_user_prompt(const std::string& text, const std::string& user_template) {
  const auto at = user_template.find("{text}");
  return user_template.substr(0, at) + text + user_template.substr(at + 6);
}

namespace {

bool retryable_status(int status) { return status == 429 || status >= 500; }

// httplib names its errors in one word ("Read"); say what happened.
std::string transport_error(httplib::Error e, double timeout_s) {
  switch (e) {
    case httplib::Error::Read:
      return "no reply (read failed or timed out after " + std::to_string(static_cast<int>(std::ceil(timeout_s))) +
             " s)";
    case httplib::Error::Write: return "request not sent (write failed)";
    case httplib::Error::Connection: return "connection refused or unreachable";
    case httplib::Error::ConnectionTimeout: return "connection timed out";
    default: return httplib::to_string(e);
  }
}

std::string snippet(const std::string& body) { return body.size() <= 200 ? body : body.substr(0, 200) + "..."; }

}  // namespace

FrontierPricer::FrontierPricer(FrontierConfig cfg) : cfg_(std::move(cfg)) {
  require(cfg_.concurrency >= 1 && cfg_.concurrency <= 256, "frontier: concurrency must be 1..256");
  require(cfg_.max_retries >= 0 && cfg_.max_retries <= 100, "frontier: retries must be 0..100");
  require(cfg_.timeout_s > 0.0 && cfg_.backoff_s >= 0.0 && cfg_.max_backoff_s >= 0.0,
          "frontier: timeout must be positive and backoff non-negative");
  require(cfg_.user_template.find("{text}") != std::string::npos,
          "frontier: the user message template must hold {text}");
  require(cfg_.temperature <= 2.0, "frontier: temperature must be at most 2");
  const auto scheme_end = cfg_.base_url.find("://");
  require(scheme_end != std::string::npos,
          "frontier: base URL \"" + cfg_.base_url + "\" needs a scheme (http:// or https://)");
  const std::string scheme = cfg_.base_url.substr(0, scheme_end);
  require(scheme == "http" || scheme == "https",
          "frontier: base URL scheme must be http or https, got \"" + scheme + "\"");
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
  require(scheme == "http", "frontier: this build of cpp-httplib has no HTTPS support");
#endif
  const auto path_start = cfg_.base_url.find('/', scheme_end + 3);
  origin_ = cfg_.base_url.substr(0, path_start);
  std::string prefix = path_start == std::string::npos ? "" : cfg_.base_url.substr(path_start);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  path_ = prefix + "/chat/completions";
}

namespace {

// One worker's connection, kept alive across its items.
std::unique_ptr<httplib::Client> make_client(const std::string& origin, double timeout_s) {
  auto cli = std::make_unique<httplib::Client>(origin);
  const auto usec =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::duration<double>(timeout_s)).count();
  cli->set_connection_timeout(usec / 1000000, usec % 1000000);
  cli->set_read_timeout(usec / 1000000, usec % 1000000);
  cli->set_write_timeout(usec / 1000000, usec % 1000000);
  cli->set_keep_alive(true);
  cli->set_tcp_nodelay(true);  // a request's headers and body are separate writes: no Nagle delay between them
  return cli;
}

// The chat-completions request for one item; the same bytes go out on every attempt.
std::string request_payload(const FrontierConfig& cfg, const Item& item) {
  json body = {{"model", cfg.model},
               {"messages",
                {{{"role", "system"}, {"content", frontier_system_prompt()}},
                 {{"role", "user"}, {"content", frontier_user_prompt(item.text, cfg.user_template)}}}}};
  if (cfg.max_tokens > 0) body["max_tokens"] = cfg.max_tokens;
  if (cfg.temperature >= 0) body["temperature"] = cfg.temperature;
  return body.dump();
}

// One attempt. The reply is read through a capped receiver into `received`: a misbehaving server
// cannot make us buffer without bound (an overflow ends the attempt as Error::Canceled).
httplib::Result post_capped(httplib::Client& cli, const std::string& path, const httplib::Headers& headers,
                            const std::string& payload, std::string& received) {
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.headers = headers;
  req.headers.emplace("Content-Type", "application/json");
  req.body = payload;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (received.size() + n > kMaxReplyBytes) return false;
    received.append(data, n);
    return true;
  };
  return cli.send(req);
}

// choices[0].message.content when the reply has it as a string, else null.
const json* reply_content(const json& reply) {
  if (!reply.is_object() || !reply.contains("choices") || !reply["choices"].is_array() || reply["choices"].empty())
    return nullptr;
  const json& choice = reply["choices"][0];
  if (choice.is_object() && choice.contains("message") && choice["message"].is_object() &&
      choice["message"].contains("content") && choice["message"]["content"].is_string())
    return &choice["message"]["content"];
  return nullptr;
}

// Token counts are taken whenever the reply has them, even when it holds no usable content.
void read_usage(const json& reply, FrontierOutcome& out) {
  if (!reply.is_object() || !reply.contains("usage") || !reply["usage"].is_object()) return;
  const json& u = reply["usage"];
  if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer())
    out.prompt_tokens = u["prompt_tokens"].get<long>();
  if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer())
    out.completion_tokens = u["completion_tokens"].get<long>();
}

// A 200 reply: its token counts, then the price in its message or why there is none.
void read_ok_reply(const std::string& received, FrontierOutcome& out) {
  const json reply = json::parse(received, nullptr, /*allow_exceptions=*/false);
  const json* content = reply_content(reply);
  read_usage(reply, out);
  if (content == nullptr) {
    out.unparsed = true;
    out.error = "reply has no choices[0].message.content: " + snippet(received);
    return;
  }
  out.reply = content->get<std::string>();
  const auto price = price_in_text(out.reply);
  out.unparsed = !price.has_value();
  if (out.unparsed) out.error = "no price in the reply";
  out.price = price.value_or(std::nan(""));
}

// A status no retry can fix (a bad key, a bad request) stops the whole run.
[[noreturn]] void throw_http_error(const httplib::Response& res, const FrontierConfig& cfg, const std::string& url,
                                   const std::string& received) {
  std::string hint;
  if (res.status == 401 || res.status == 403) hint = " (is $" + cfg.api_key_env + " set to a valid key?)";
  throw Error("frontier: HTTP " + std::to_string(res.status) + " from " + url + hint + ": " + snippet(received));
}

// A server that says when to come back knows better than our schedule.
double retry_after_wait(const httplib::Response& res, double scheduled, double max_backoff_s) {
  const auto retry_after = res.get_header_value("Retry-After");
  if (retry_after.empty()) return scheduled;
  char* end = nullptr;
  const double s = std::strtod(retry_after.c_str(), &end);
  if (end != retry_after.c_str() && std::isfinite(s) && s >= 0.0) return std::min(s, max_backoff_s);
  return scheduled;
}

FrontierOutcome price_one(httplib::Client& cli, const FrontierConfig& cfg, const std::string& origin,
                          const std::string& path, const Item& item, const std::string& api_key) {
  httplib::Headers headers;
  if (!api_key.empty()) headers.emplace("Authorization", "Bearer " + api_key);
  const std::string payload = request_payload(cfg, item);

  FrontierOutcome out;
  for (int attempt = 0;; ++attempt) {
    std::string received;
    auto res = post_capped(cli, path, headers, payload, received);
    if (!res && res.error() == httplib::Error::Canceled) {
      out.failed = true;
      out.error = "reply larger than " + std::to_string(kMaxReplyBytes) + " bytes";
      return out;
    }
    double wait = std::min(cfg.backoff_s * std::ldexp(1.0, attempt), cfg.max_backoff_s);
    if (res && res->status == 200) {
      read_ok_reply(received, out);
      return out;
    }
    if (res && !retryable_status(res->status)) throw_http_error(*res, cfg, origin + path, received);
    if (res) {
      out.error = "HTTP " + std::to_string(res->status);
      wait = retry_after_wait(*res, wait, cfg.max_backoff_s);
    } else {
      out.error = transport_error(res.error(), cfg.timeout_s);
    }
    if (attempt >= cfg.max_retries) {
      out.failed = true;
      return out;
    }
    ++out.retries;
    std::this_thread::sleep_for(std::chrono::duration<double>(wait));
  }
}

}  // namespace

std::vector<double> FrontierPricer::predict(const std::vector<Item>& items) {
  const char* key = cfg_.api_key_env.empty() ? nullptr : std::getenv(cfg_.api_key_env.c_str());
  const std::string api_key = key ? key : "";
  last_.assign(items.size(), {});
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  std::exception_ptr first_error;
  std::mutex error_mu;
  auto worker = [&] {
    auto cli = make_client(origin_, cfg_.timeout_s);
    while (!stop) {
      const std::size_t i = next++;
      if (i >= items.size()) return;
      try {
        last_[i] = price_one(*cli, cfg_, origin_, path_, items[i], api_key);
      } catch (...) {
        std::lock_guard lock(error_mu);
        if (!first_error) first_error = std::current_exception();
        stop = true;
      }
    }
  };
  const std::size_t n_threads =
      std::min<std::size_t>(static_cast<std::size_t>(cfg_.concurrency), std::max<std::size_t>(items.size(), 1));
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < n_threads; ++t) pool.emplace_back(worker);
  for (auto& th : pool) th.join();
  if (first_error) std::rethrow_exception(first_error);

  std::vector<double> prices;
  prices.reserve(items.size());
  for (const auto& o : last_) prices.push_back(o.failed || o.unparsed ? std::nan("") : o.price);
  if (const std::string why = unpriced_reason(); !why.empty())
    std::fprintf(stderr, "frontier: items without a price: %s\n", why.c_str());
  return prices;
}

std::string FrontierPricer::unpriced_reason() const {
  std::map<std::string, std::size_t> by_error;
  for (const auto& o : last_)
    if (o.failed || o.unparsed) ++by_error[o.error.empty() ? "unknown error" : o.error];
  std::string out;
  for (const auto& [error, n] : by_error)
    out += (out.empty() ? "" : "; ") + error + " (" + std::to_string(n) + (n == 1 ? " item)" : " items)");
  return out;
}

json FrontierPricer::stats() const {
  long prompt = 0, completion = 0, retries = 0, failed = 0, unparsed = 0;
  json failures = json::array();
  for (std::size_t i = 0; i < last_.size(); ++i) {
    const auto& o = last_[i];
    prompt += o.prompt_tokens;
    completion += o.completion_tokens;
    retries += o.retries;
    failed += o.failed;
    unparsed += o.unparsed;
    if (o.failed || o.unparsed) failures.push_back({{"id", i}, {"reply", o.reply}, {"error", o.error}});
  }
  const double cost =
      (static_cast<double>(prompt) * cfg_.usd_per_m_input + static_cast<double>(completion) * cfg_.usd_per_m_output) /
      1e6;
  return {
      {"model", cfg_.model}, {"base_url", cfg_.base_url}, {"requests", last_.size()}, {"retries", retries},
      {"failed", failed},    {"unparsed", unparsed},      {"prompt_tokens", prompt},  {"completion_tokens", completion},
      {"cost_usd", cost},    {"failures", failures}};
}

}  // namespace pricer::eval
