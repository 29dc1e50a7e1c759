#include "model/generate.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "core/error.h"

namespace pricer {

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::StopToken: return "stop token";
    case StopReason::MaxTokens: return "max tokens";
    case StopReason::ContextFull: return "context full";
    case StopReason::Callback: return "stopped";
  }
  return "?";
}

GenerationResult generate(LlamaModel& model, Backend& be, std::span<const int32_t> prompt, const GenerationOptions& o,
                          const TokenCallback& on_token) {
  const ModelConfig& cfg = model.config();
  const auto n_prompt = static_cast<int64_t>(prompt.size());
  require(n_prompt > 0, "generate: empty prompt (nothing to start from; give a prompt or a BOS token)");
  require(n_prompt <= cfg.max_seq_len, "generate: the prompt has " + std::to_string(n_prompt) +
                                           " tokens, more than the model's context of " +
                                           std::to_string(cfg.max_seq_len));
  require(o.max_tokens >= 1, "generate: max tokens must be >= 1, got " + std::to_string(o.max_tokens));
  require(
      o.sample_vocab >= 0 && o.sample_vocab <= cfg.vocab_size,
      "generate: sampling vocab " + std::to_string(o.sample_vocab) + " outside 0.." + std::to_string(cfg.vocab_size));
  for (int64_t i = 0; i < n_prompt; ++i)
    require(prompt[i] >= 0 && prompt[i] < cfg.vocab_size, [&] {
      return "generate: prompt token " + std::to_string(i) + " is id " + std::to_string(prompt[i]) +
             ", outside the model's vocab of " + std::to_string(cfg.vocab_size);
    });
  Sampler sampler(o.sampling);

  // Every new token but the last is fed back, so the cache holds prompt + max_tokens - 1.
  const int64_t budget = std::min(o.max_tokens, cfg.max_seq_len - n_prompt + 1);
  KvCache cache = model.make_cache(n_prompt + budget - 1);
  const auto vocab = static_cast<size_t>(o.sample_vocab > 0 ? o.sample_vocab : cfg.vocab_size);

  using Clock = std::chrono::steady_clock;
  GenerationResult r;
  auto t0 = Clock::now();
  std::vector<float> logits = model.prefill(cache, prompt, be);
  auto t1 = Clock::now();
  r.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
  r.reason = budget < o.max_tokens ? StopReason::ContextFull : StopReason::MaxTokens;
  while (true) {
    const int32_t next = sampler.sample(std::span<const float>(logits).first(vocab));
    if (std::find(o.stop_ids.begin(), o.stop_ids.end(), next) != o.stop_ids.end()) {
      r.reason = StopReason::StopToken;
      r.stop_token = next;
      break;
    }
    r.tokens.push_back(next);
    if (on_token && !on_token(next)) {
      r.reason = StopReason::Callback;
      break;
    }
    if (static_cast<int64_t>(r.tokens.size()) == budget) break;
    logits = model.decode(cache, next, be);
  }
  r.decode_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  return r;
}

}  // namespace pricer
