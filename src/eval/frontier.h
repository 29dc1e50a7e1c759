#pragma once
// A pricer that asks a hosted model through any OpenAI-compatible chat-completions endpoint.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pricer::eval {

struct FrontierConfig {
  std::string base_url = "https://api.openai.com/v1";  // POSTs go to <base_url>/chat/completions
  std::string model = "gpt-4o-mini";
  std::string api_key_env = "OPENAI_API_KEY";  // name of the variable holding the key; unset = none
  int concurrency = 4;  // worker threads, one request each in flight
  int max_retries = 5;  // further attempts after a 429, 5xx or timeout
  double timeout_s = 60.0;  // connect, read and write timeout of one attempt
  double backoff_s = 1.0;  // first retry delay; doubles on each retry
  double max_backoff_s = 60.0;
  int max_tokens = 0;  // 0 = not sent
  double temperature = -1;  // < 0 = not sent (the API's default)
  // The user message; {text} is the product text. The default asks as the course did; "{text}"
  // sends the text alone (a served price model applies its own prompt to it).
  std::string user_template = "How much does this cost?\n\n{text}";
  double usd_per_m_input = 0.0;  // price per million prompt tokens
  double usd_per_m_output = 0.0;  // price per million completion tokens
};

// Largest reply body read; a chat completion with a price in it is a few hundred bytes.
inline constexpr std::size_t kMaxReplyBytes = 1u << 20;

// The two chat messages sent for one item.
std::string frontier_system_prompt();
std::string frontier_user_prompt(const std::string& text,
                                 const std::string& user_template = FrontierConfig{}.user_template);

}  // namespace pricer::eval
