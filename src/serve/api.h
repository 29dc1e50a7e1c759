#pragma once
// The OpenAI-compatible request bodies `pricer serve` accepts: /v1/completions and
// /v1/chat/completions as OpenAI's API reference defines them, and /v1/price. Parsing is strict,
// as OpenAI's own server is: a wrong type, a value out of range or an argument it does not know
// is an ApiError (HTTP 400 with the parameter named), never a silent default.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace pricer::serve {

// An error answered as {"error": {"message", "type", "param", "code"}} with `status`.
struct ApiError : std::runtime_error {
  ApiError(int status, std::string message, std::string type = "invalid_request_error", std::string param = "",
           std::string code = "");
  int status;
  std::string type, param, code;
};
nlohmann::json error_body(const ApiError& e);

enum class Endpoint { Completions, Chat };

struct ChatMessage {
  std::string role, content;
};

struct CompletionRequest {
  Endpoint endpoint = Endpoint::Completions;
  std::string model;
  std::string prompt;  // completions: the text to continue
  std::vector<int32_t> prompt_ids;  // completions: the prompt given as token ids instead
  bool prompt_is_ids = false;
  std::vector<ChatMessage> messages;  // chat
  std::optional<int64_t> max_tokens;  // unset: completions 16 (OpenAI's default), chat to the context
  float temperature = 1.0f;  // OpenAI's default; 0 = greedy
  float top_p = 1.0f;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;  // at most 4, none empty
  int top_logprobs = -1;  // alternatives listed per token; -1 = no logprobs at all
  bool stream = false, include_usage = false;
  bool echo = false;  // completions: the prompt's text put before the completion
};

// Largest accepted values (OpenAI's own limits).
inline constexpr int kMaxStops = 4;
inline constexpr int kMaxCompletionLogprobs = 5;
inline constexpr int kMaxChatTopLogprobs = 20;

// Throws ApiError (400, naming the parameter) on anything that is not a valid request.
CompletionRequest parse_completion_request(const nlohmann::json& body, Endpoint endpoint);

// POST /v1/price: {"text": "..."} for one product, {"texts": [...]} for a batch; optional
// "readout" (median | expected | top3 | greedy), "model" and "distribution" (true: every number
// token's probability too, for charts).
struct PriceRequest {
  std::vector<std::string> texts;
  bool batch = false;  // answered as {"results": [...]} rather than one object
  std::string readout;  // empty: the server's default
  std::string model;  // empty: the served model
  bool distribution = false;  // add the whole distribution over the number tokens
};
inline constexpr std::size_t kMaxPriceBatch = 1024;
PriceRequest parse_price_request(const nlohmann::json& body);

// The body parsed strictly (a key given twice is an error too); ApiError 400 when it is not JSON.
nlohmann::json parse_body(const std::string& body);

}  // namespace pricer::serve
