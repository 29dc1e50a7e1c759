#pragma once
// Autoregressive generation with a KV cache: the prompt is prefilled in one pass, then each
// sampled token is decoded one step at a time until a stop token, the token budget or the model's
// context ends it. Tokens are handed to a callback as they are produced (for streaming output).
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "kernels/backend.h"
#include "model/llama.h"
#include "model/sampler.h"

namespace pricer {

struct GenerationOptions {
  int64_t max_tokens = 256;  // new tokens at most (the prompt not counted)
  std::vector<int32_t> stop_ids;  // generation ends when one of these is sampled (not emitted)
  int64_t sample_vocab = 0;  // sample only ids below this (a tokenizer smaller than the
                             // model's padded vocab); 0 = the whole vocab
  SamplingOptions sampling;
};

enum class StopReason { StopToken, MaxTokens, ContextFull, Callback };
const char* stop_reason_name(StopReason r);  // "stop token", "max tokens", ...

struct GenerationResult {
  std::vector<int32_t> tokens;  // the new tokens, without the stop token
  StopReason reason = StopReason::MaxTokens;
  int32_t stop_token = -1;  // the stop token sampled, when reason == StopToken
  double prefill_seconds = 0, decode_seconds = 0;
};

// Called with each new token; returning false ends generation (reason Callback).
using TokenCallback = std::function<bool(int32_t)>;

// llama2.c's step budget: the prompt (its first token BOS) is fed from position 0 and a model with
// context C can be fed C tokens, so at most C - prompt.size() + 1 tokens are generated. Throws
// Error on an empty prompt, a prompt longer than the context, ids outside the vocab or bad options.
GenerationResult generate(LlamaModel& model, Backend& be, std::span<const int32_t> prompt,
                          const GenerationOptions& options, const TokenCallback& on_token = {});

}  // namespace pricer
