#include "serve/api.h"

#include <cmath>
#include <limits>
#include <set>

#include "core/error.h"
#include "io/json_util.h"

namespace pricer::serve {

using nlohmann::json;

ApiError::ApiError(int status_, std::string message, std::string type_, std::string param_, std::string code_)
    : std::runtime_error(std::move(message)),
      status(status_),
      type(std::move(type_)),
      param(std::move(param_)),
      code(std::move(code_)) {}

json error_body(const ApiError& e) {
  auto or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
  return {{"error", {{"message", e.what()}, {"type", e.type}, {"param", or_null(e.param)}, {"code", or_null(e.code)}}}};
}

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, message, "invalid_request_error", param);
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "a number";
  }
}

[[noreturn]] void wrong_type(const std::string& param, const json& v, const std::string& want) {
  bad(param, "'" + param + "' must be " + want + ", got " + type_name(v));
}

std::string get_string(const json& v, const std::string& param) {
  if (!v.is_string()) wrong_type(param, v, "a string");
  return v.get<std::string>();
}

bool get_bool(const json& v, const std::string& param) {
  if (!v.is_boolean()) wrong_type(param, v, "a boolean");
  return v.get<bool>();
}

int64_t get_int(const json& v, const std::string& param, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) wrong_type(param, v, "an integer");
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    bad(param, "'" + param + "' is too large");
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    bad(param, "'" + param + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " +
                   std::to_string(x));
  return x;
}

double get_number(const json& v, const std::string& param, double lo, double hi) {
  if (!v.is_number()) wrong_type(param, v, "a number");
  const double x = v.get<double>();
  if (!(x >= lo && x <= hi))
    bad(param, "'" + param + "' must be between " + json(lo).dump() + " and " + json(hi).dump());
  return x;
}

// OpenAI accepts these and pricer has nothing to do with them beyond their defaults: a request
// asking for anything else is told so rather than served something it did not ask for.
void check_default(const json& body, const std::string& key, const json& default_value) {
  if (!body.contains(key) || body[key].is_null()) return;
  if (body[key] != default_value)
    bad(key, "'" + key + "' other than " + default_value.dump() + " is not supported by this server");
}

void check_known(const json& body, const std::set<std::string>& known) {
  for (const auto& [key, _] : body.items())
    if (!known.count(key)) bad(key, "Unrecognized request argument supplied: " + key);
}

std::string message_content(const json& v, const std::string& param) {
  if (v.is_string()) return v.get<std::string>();
  // The array form: parts of type "text" joined (images and audio are not for a price model).
  if (!v.is_array()) wrong_type(param, v, "a string or an array of content parts");
  std::string text;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const std::string p = param + "[" + std::to_string(i) + "]";
    const json& part = v[i];
    if (!part.is_object()) wrong_type(p, part, "an object");
    if (!part.contains("type") || part["type"] != "text")
      bad(p + ".type", "only content parts of type 'text' are supported");
    if (!part.contains("text")) bad(p + ".text", "missing required parameter: '" + p + ".text'");
    text += get_string(part["text"], p + ".text");
  }
  return text;
}

std::vector<ChatMessage> parse_messages(const json& v) {
  if (!v.is_array()) wrong_type("messages", v, "an array");
  if (v.empty()) bad("messages", "'messages' must hold at least one message");
  static const std::set<std::string> roles = {"system", "developer", "user", "assistant", "tool"};
  std::vector<ChatMessage> out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const std::string p = "messages[" + std::to_string(i) + "]";
    const json& m = v[i];
    if (!m.is_object()) wrong_type(p, m, "an object");
    if (!m.contains("role")) bad(p + ".role", "missing required parameter: '" + p + ".role'");
    ChatMessage msg;
    msg.role = get_string(m["role"], p + ".role");
    if (!roles.count(msg.role)) bad(p + ".role", "'" + msg.role + "' is not a valid role");
    if (!m.contains("content") || m["content"].is_null())
      bad(p + ".content", "missing required parameter: '" + p + ".content'");
    msg.content = message_content(m["content"], p + ".content");
    out.push_back(std::move(msg));
  }
  return out;
}

void parse_prompt(const json& v, CompletionRequest& r) {
  if (v.is_string()) {
    r.prompt = v.get<std::string>();
    return;
  }
  if (!v.is_array() || v.empty()) wrong_type("prompt", v, "a string, an array of one string or an array of token ids");
  if (v.size() == 1 && v[0].is_string()) {
    r.prompt = v[0].get<std::string>();
    return;
  }
  if (v[0].is_string()) bad("prompt", "one prompt per request: send the prompts of a batch as separate requests");
  r.prompt_is_ids = true;
  for (std::size_t i = 0; i < v.size(); ++i)
    r.prompt_ids.push_back(static_cast<int32_t>(
        get_int(v[i], "prompt[" + std::to_string(i) + "]", 0, std::numeric_limits<int32_t>::max())));
}

std::vector<std::string> parse_stop(const json& v) {
  if (v.is_null()) return {};
  std::vector<std::string> out;
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    if (v.size() > static_cast<std::size_t>(kMaxStops)) bad("stop", "'stop' holds at most 4 sequences");
    for (std::size_t i = 0; i < v.size(); ++i) out.push_back(get_string(v[i], "stop[" + std::to_string(i) + "]"));
  } else {
    wrong_type("stop", v, "a string or an array of strings");
  }
  for (const auto& s : out)
    if (s.empty()) bad("stop", "'stop' sequences must not be empty");
  return out;
}

void parse_logprobs(const json& body, CompletionRequest& r) {
  if (r.endpoint == Endpoint::Completions) {
    if (body.contains("logprobs") && !body["logprobs"].is_null())
      r.top_logprobs = static_cast<int>(get_int(body["logprobs"], "logprobs", 0, kMaxCompletionLogprobs));
    return;
  }
  const bool on = body.contains("logprobs") && !body["logprobs"].is_null() && get_bool(body["logprobs"], "logprobs");
  if (body.contains("top_logprobs") && !body["top_logprobs"].is_null()) {
    const int k = static_cast<int>(get_int(body["top_logprobs"], "top_logprobs", 0, kMaxChatTopLogprobs));
    if (!on) bad("top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
    r.top_logprobs = k;
  } else if (on) {
    r.top_logprobs = 0;
  }
}

void parse_stream(const json& body, CompletionRequest& r) {
  if (body.contains("stream") && !body["stream"].is_null()) r.stream = get_bool(body["stream"], "stream");
  if (!body.contains("stream_options") || body["stream_options"].is_null()) return;
  const json& so = body["stream_options"];
  if (!r.stream) bad("stream_options", "'stream_options' is only allowed with 'stream': true");
  if (!so.is_object()) wrong_type("stream_options", so, "an object");
  for (const auto& [key, val] : so.items()) {
    if (key != "include_usage") bad("stream_options." + key, "Unrecognized stream option: " + key);
    r.include_usage = get_bool(val, "stream_options.include_usage");
  }
}

}  // namespace

CompletionRequest parse_completion_request(const json& body, Endpoint endpoint) {
  if (!body.is_object()) bad("", "the request body must be a JSON object");
  const bool chat = endpoint == Endpoint::Chat;
  std::set<std::string> known = {"model", "max_tokens",        "temperature",      "top_p",          "seed",
                                 "stop",  "logprobs",          "stream",           "stream_options", "n",
                                 "user",  "frequency_penalty", "presence_penalty", "logit_bias"};
  if (chat) {
    known.insert({"messages", "top_logprobs", "max_completion_tokens", "parallel_tool_calls", "store", "metadata"});
  } else {
    known.insert({"prompt", "echo", "best_of", "suffix"});
  }
  check_known(body, known);

  CompletionRequest r;
  r.endpoint = endpoint;
  if (!body.contains("model")) bad("model", "missing required parameter: 'model'");
  r.model = get_string(body["model"], "model");
  if (chat) {
    if (!body.contains("messages")) bad("messages", "missing required parameter: 'messages'");
    r.messages = parse_messages(body["messages"]);
  } else {
    if (!body.contains("prompt")) bad("prompt", "missing required parameter: 'prompt'");
    parse_prompt(body["prompt"], r);
    if (body.contains("echo") && !body["echo"].is_null()) r.echo = get_bool(body["echo"], "echo");
    check_default(body, "best_of", 1);
    check_default(body, "suffix", "");
  }
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (body.contains(key) && !body[key].is_null()) {
      if (r.max_tokens) bad(key, "give 'max_tokens' or 'max_completion_tokens', not both");
      r.max_tokens = get_int(body[key], key, 1, std::numeric_limits<int32_t>::max());
    }
  }
  if (body.contains("temperature") && !body["temperature"].is_null())
    r.temperature = static_cast<float>(get_number(body["temperature"], "temperature", 0.0, 2.0));
  if (body.contains("top_p") && !body["top_p"].is_null()) {
    r.top_p = static_cast<float>(get_number(body["top_p"], "top_p", 0.0, 1.0));
    if (r.top_p <= 0.0f) bad("top_p", "'top_p' must be greater than 0");
  }
  if (body.contains("seed") && !body["seed"].is_null()) {
    const json& s = body["seed"];
    if (!s.is_number_integer()) wrong_type("seed", s, "an integer");
    r.seed = s.is_number_unsigned() ? s.get<uint64_t>() : static_cast<uint64_t>(s.get<int64_t>());
  }
  if (body.contains("stop")) r.stop = parse_stop(body["stop"]);
  parse_logprobs(body, r);
  parse_stream(body, r);
  check_default(body, "n", 1);
  check_default(body, "frequency_penalty", 0);
  check_default(body, "presence_penalty", 0);
  if (body.contains("logit_bias") && !body["logit_bias"].is_null() &&
      !(body["logit_bias"].is_object() && body["logit_bias"].empty()))
    bad("logit_bias", "'logit_bias' is not supported by this server");
  if (body.contains("user") && !body["user"].is_null()) get_string(body["user"], "user");
  return r;
}

PriceRequest parse_price_request(const json& body) {
  if (!body.is_object()) bad("", "the request body must be a JSON object");
  check_known(body, {"text", "texts", "readout", "model", "distribution"});
  PriceRequest r;
  const bool one = body.contains("text"), many = body.contains("texts");
  if (one == many) bad(one ? "texts" : "text", "give either 'text' (one product) or 'texts' (a batch)");
  if (one) {
    r.texts.push_back(get_string(body["text"], "text"));
  } else {
    const json& v = body["texts"];
    if (!v.is_array()) wrong_type("texts", v, "an array of strings");
    if (v.empty()) bad("texts", "'texts' must hold at least one text");
    if (v.size() > kMaxPriceBatch)
      bad("texts", "'texts' holds at most " + std::to_string(kMaxPriceBatch) + " texts per request");
    for (std::size_t i = 0; i < v.size(); ++i) r.texts.push_back(get_string(v[i], "texts[" + std::to_string(i) + "]"));
    r.batch = true;
  }
  for (std::size_t i = 0; i < r.texts.size(); ++i) {
    if (r.texts[i].find_first_not_of(" \t\r\n") == std::string::npos)
      bad(r.batch ? "texts[" + std::to_string(i) + "]" : "text", "the product text is empty");
  }
  if (body.contains("readout")) r.readout = get_string(body["readout"], "readout");
  if (body.contains("model")) r.model = get_string(body["model"], "model");
  if (body.contains("distribution")) r.distribution = get_bool(body["distribution"], "distribution");
  return r;
}

json parse_body(const std::string& body) {
  try {
    return parse_json_strict(body, "the request body");
  } catch (const Error& e) {
    throw ApiError(400, std::string("We could not parse the JSON body of your request: ") + e.what());
  }
}

}  // namespace pricer::serve
