// Fuzzes the request bodies `pricer serve` accepts: any bytes must parse into a request or an
// ApiError with an HTTP status of 4xx, never a crash, a hang or another exception.
#include <cstddef>
#include <cstdint>
#include <string>

#include "serve/api.h"

namespace {

template <class F>
void expect_request_or_400(F parse) {
  try {
    parse();
  } catch (const pricer::serve::ApiError& e) {
    if (e.status < 400 || e.status >= 500) __builtin_trap();
    (void)pricer::serve::error_body(e).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  nlohmann::json j;
  try {
    j = pricer::serve::parse_body(body);
  } catch (const pricer::serve::ApiError& e) {
    if (e.status != 400) __builtin_trap();
    return 0;
  }
  using pricer::serve::Endpoint;
  expect_request_or_400([&] {
    const auto r = pricer::serve::parse_completion_request(j, Endpoint::Completions);
    if (r.stop.size() > 4 || (r.max_tokens && *r.max_tokens < 1)) __builtin_trap();
  });
  expect_request_or_400([&] {
    const auto r = pricer::serve::parse_completion_request(j, Endpoint::Chat);
    if (r.messages.empty() || r.top_logprobs > pricer::serve::kMaxChatTopLogprobs) __builtin_trap();
  });
  expect_request_or_400([&] {
    const auto r = pricer::serve::parse_price_request(j);
    if (r.texts.empty() || r.texts.size() > pricer::serve::kMaxPriceBatch) __builtin_trap();
  });
  return 0;
}
