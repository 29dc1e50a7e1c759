// The request parsing of `pricer serve` (OpenAI's completions and chat bodies, the price API) and
// the stop-sequence cutter, without a server.
#include <gtest/gtest.h>

#include "serve/api.h"
#include "serve/stop_text.h"

using namespace pricer::serve;
using nlohmann::json;

namespace {

// The ApiError a body raises: its status and the parameter it names.
std::pair<int, std::string> refusal(const json& body, Endpoint e) {
  try {
    parse_completion_request(body, e);
  } catch (const ApiError& err) {
    return {err.status, err.param};
  }
  return {0, "accepted"};
}

}  // namespace

TEST(ServeApi, CompletionRequestReadsEveryField) {
  const json body = {{"model", "m"},        {"prompt", "Hello"},
                     {"max_tokens", 7},     {"temperature", 0},
                     {"top_p", 0.5},        {"seed", 42},
                     {"stop", {"\n", "."}}, {"logprobs", 3},
                     {"stream", true},      {"stream_options", {{"include_usage", true}}},
                     {"echo", true},        {"n", 1},
                     {"user", "u"}};
  const CompletionRequest r = parse_completion_request(body, Endpoint::Completions);
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.prompt, "Hello");
  EXPECT_EQ(r.max_tokens.value(), 7);
  EXPECT_EQ(r.temperature, 0.0f);
  EXPECT_EQ(r.top_p, 0.5f);
  EXPECT_EQ(r.seed.value(), 42u);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"\n", "."}));
  EXPECT_EQ(r.top_logprobs, 3);
  EXPECT_TRUE(r.stream && r.include_usage && r.echo);
}

TEST(ServeApi, DefaultsAreOpenAIs) {
  const CompletionRequest r = parse_completion_request({{"model", "m"}, {"prompt", "x"}}, Endpoint::Completions);
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_EQ(r.temperature, 1.0f);
  EXPECT_EQ(r.top_p, 1.0f);
  EXPECT_EQ(r.top_logprobs, -1);
  EXPECT_FALSE(r.stream);
}

TEST(ServeApi, PromptsAsTextOrTokenIds) {
  auto r = parse_completion_request({{"model", "m"}, {"prompt", {"one"}}}, Endpoint::Completions);
  EXPECT_EQ(r.prompt, "one");
  r = parse_completion_request({{"model", "m"}, {"prompt", {1, 2, 3}}}, Endpoint::Completions);
  EXPECT_TRUE(r.prompt_is_ids);
  EXPECT_EQ(r.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(refusal({{"model", "m"}, {"prompt", {"a", "b"}}}, Endpoint::Completions).second, "prompt");
  EXPECT_EQ(refusal({{"model", "m"}, {"prompt", {1, -2}}}, Endpoint::Completions).second, "prompt[1]");
  EXPECT_EQ(refusal({{"model", "m"}, {"prompt", json::array()}}, Endpoint::Completions).second, "prompt");
}

TEST(ServeApi, ChatMessagesAndLogprobs) {
  const json body = {
      {"model", "m"},
      {"messages",
       {{{"role", "system"}, {"content", "be brief"}},
        {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "a "}}, {{"type", "text"}, {"text", "lamp"}}}}}}},
      {"logprobs", true},
      {"top_logprobs", 4},
      {"max_completion_tokens", 9}};
  const CompletionRequest r = parse_completion_request(body, Endpoint::Chat);
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[1].content, "a lamp");
  EXPECT_EQ(r.top_logprobs, 4);
  EXPECT_EQ(r.max_tokens.value(), 9);
  const auto plain = parse_completion_request(
      {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "x"}}}}, {"logprobs", true}}, Endpoint::Chat);
  EXPECT_EQ(plain.top_logprobs, 0);
}

TEST(ServeApi, BadRequestsNameTheParameter) {
  const json user = {{{"role", "user"}, {"content", "x"}}};
  struct Case {
    json body;
    Endpoint e;
    std::string param;
  };
  const std::vector<Case> cases = {
      {{{"prompt", "x"}}, Endpoint::Completions, "model"},
      {{{"model", 3}, {"prompt", "x"}}, Endpoint::Completions, "model"},
      {{{"model", "m"}}, Endpoint::Completions, "prompt"},
      {{{"model", "m"}, {"prompt", "x"}, {"max_tokens", 0}}, Endpoint::Completions, "max_tokens"},
      {{{"model", "m"}, {"prompt", "x"}, {"max_tokens", "5"}}, Endpoint::Completions, "max_tokens"},
      {{{"model", "m"}, {"prompt", "x"}, {"max_tokens", 1.5}}, Endpoint::Completions, "max_tokens"},
      {{{"model", "m"}, {"prompt", "x"}, {"temperature", 2.5}}, Endpoint::Completions, "temperature"},
      {{{"model", "m"}, {"prompt", "x"}, {"top_p", 0}}, Endpoint::Completions, "top_p"},
      {{{"model", "m"}, {"prompt", "x"}, {"stop", {"a", "b", "c", "d", "e"}}}, Endpoint::Completions, "stop"},
      {{{"model", "m"}, {"prompt", "x"}, {"stop", ""}}, Endpoint::Completions, "stop"},
      {{{"model", "m"}, {"prompt", "x"}, {"logprobs", 6}}, Endpoint::Completions, "logprobs"},
      {{{"model", "m"}, {"prompt", "x"}, {"n", 2}}, Endpoint::Completions, "n"},
      {{{"model", "m"}, {"prompt", "x"}, {"frequency_penalty", 0.5}}, Endpoint::Completions, "frequency_penalty"},
      {{{"model", "m"}, {"prompt", "x"}, {"stream_options", {{"include_usage", true}}}},
       Endpoint::Completions,
       "stream_options"},
      {{{"model", "m"}, {"prompt", "x"}, {"wat", 1}}, Endpoint::Completions, "wat"},
      {{{"model", "m"}, {"messages", json::array()}}, Endpoint::Chat, "messages"},
      {{{"model", "m"}, {"messages", {{{"role", "robot"}, {"content", "x"}}}}}, Endpoint::Chat, "messages[0].role"},
      {{{"model", "m"}, {"messages", {{{"role", "user"}}}}}, Endpoint::Chat, "messages[0].content"},
      {{{"model", "m"}, {"messages", user}, {"top_logprobs", 2}}, Endpoint::Chat, "top_logprobs"},
      {{{"model", "m"}, {"messages", user}, {"logprobs", true}, {"top_logprobs", 21}}, Endpoint::Chat, "top_logprobs"},
      {{{"model", "m"}, {"messages", user}, {"max_tokens", 3}, {"max_completion_tokens", 3}},
       Endpoint::Chat,
       "max_completion_tokens"},
      {{{"model", "m"}, {"messages", user}, {"prompt", "x"}}, Endpoint::Chat, "prompt"},
  };
  for (const auto& c : cases) {
    const auto [status, param] = refusal(c.body, c.e);
    EXPECT_EQ(status, 400) << c.body.dump();
    EXPECT_EQ(param, c.param) << c.body.dump();
  }
}

TEST(ServeApi, ErrorBodyIsOpenAIs) {
  const json j = error_body(ApiError(404, "no such model", "invalid_request_error", "model", "model_not_found"));
  EXPECT_EQ(j["error"]["message"], "no such model");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "model");
  EXPECT_EQ(j["error"]["code"], "model_not_found");
  EXPECT_TRUE(error_body(ApiError(400, "x"))["error"]["code"].is_null());
}

TEST(ServeApi, BodiesAreParsedStrictly) {
  EXPECT_THROW(parse_body("{\"model\": 1"), ApiError);
  EXPECT_THROW(parse_body("{\"model\": \"a\", \"model\": \"b\"}"), ApiError);
  EXPECT_EQ(parse_body("{\"a\": 1}")["a"], 1);
}

TEST(ServeApi, PriceRequests) {
  auto r = parse_price_request({{"text", "A lamp"}});
  EXPECT_FALSE(r.batch);
  EXPECT_EQ(r.texts, std::vector<std::string>{"A lamp"});
  r = parse_price_request({{"texts", {"a", "b"}}, {"readout", "expected"}});
  EXPECT_TRUE(r.batch);
  EXPECT_EQ(r.texts.size(), 2u);
  EXPECT_EQ(r.readout, "expected");
  for (const json& bad :
       {json{{"text", "a"}, {"texts", {"b"}}}, json::object(), json{{"text", "  \n"}}, json{{"texts", json::array()}},
        json{{"texts", std::vector<std::string>(kMaxPriceBatch + 1, "x")}}, json{{"text", 5}},
        json{{"text", "a"}, {"colour", "red"}}}) {
    EXPECT_THROW(parse_price_request(bad), ApiError) << bad.dump().substr(0, 80);
  }
}

TEST(StopText, CutsAtTheFirstStopEvenAcrossPieces) {
  StopText s({"END", "\n\n"});
  std::string out;
  for (const char* piece : {"price ", "is 4", "2 E", "N", "D and more"}) out += s.push(piece);
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(out, "price is 42 ");
  EXPECT_EQ(s.push("more"), "");
  EXPECT_EQ(s.finish(), "");
}

TEST(StopText, HoldsBackOnlyWhatMayStartAStop) {
  StopText s({"END"});
  EXPECT_EQ(s.push("abcE"), "abc");  // "E" may begin "END"
  EXPECT_EQ(s.push("Nx"), "ENx");  // "ENx" cannot
  EXPECT_EQ(s.push("EN"), "");
  EXPECT_FALSE(s.stopped());
  EXPECT_EQ(s.finish(), "EN");  // generation ended for another reason: nothing is lost
}

TEST(StopText, NoStopsPassesEverything) {
  StopText s({});
  EXPECT_EQ(s.push("a\n\nb"), "a\n\nb");
  EXPECT_FALSE(s.stopped());
}
