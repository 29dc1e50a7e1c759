#pragma once
// The model behind `pricer serve`: one worker thread owns it and serves every request from a
// bounded queue. Price requests queued together are priced in one batched forward pass;
// generations advance together token by token, each with its own KV cache but sharing one forward
// pass per step (new prompts are prefilled together too), so a short request is not held behind a
// long one and every stream advances. Requests past their deadline end with a
// timeout error; cancelled ones (a client gone) are dropped at the next token.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "model/generate.h"
#include "predict/model_average.h"
#include "serve/api.h"

namespace pricer::serve {

using Clock = std::chrono::steady_clock;

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0;
};

// One sampled token with its log-probability under the model and the likeliest alternatives.
struct SampledToken {
  int32_t id = 0;
  float logprob = 0;
  std::vector<TokenLogprob> top;
};

// What a generation produced since the consumer last looked.
struct GenerationUpdate {
  std::string text;  // reply text that became certain (stop sequences held back)
  std::vector<SampledToken> tokens;  // tokens sampled (with log-probabilities when asked for)
  bool done = false;
  std::string finish_reason;  // "stop" or "length", once done without error
  std::optional<ApiError> error;  // once done with an error
};

class GenerationJob {
 public:
  std::vector<int32_t> prompt;
  GenerationOptions options;  // max_tokens, stop ids, sampling
  std::vector<std::string> stop;  // stop sequences
  int top_logprobs = -1;  // -1: no log-probabilities
  bool end_at_price = false;  // a price reply: ends once its number is complete
  Clock::time_point deadline;

  // Waits up to `wait` for news; moves it out. Once done, every later call returns done again.
  GenerationUpdate take(std::chrono::milliseconds wait);
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

 private:
  friend class Engine;
  void publish(const std::string& text, const SampledToken* token);
  void finish(std::string reason, std::optional<ApiError> error = std::nullopt);

  std::mutex mu_;
  std::condition_variable cv_;
  GenerationUpdate pending_;
  std::atomic<bool> cancelled_{false};
};

class PriceJob {
 public:
  std::vector<std::string> prompts;  // already templated
  PriceMode mode = kDefaultPriceMode;
  bool distribution = false;  // add each price's whole distribution over the number tokens
  Clock::time_point deadline;

  // Blocks until priced: one JSON object per prompt (predict --json's form), or the error.
  std::vector<nlohmann::json> wait();

 private:
  friend class Engine;
  void finish(std::vector<nlohmann::json> results, std::optional<ApiError> error);

  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::vector<nlohmann::json> results_;
  std::optional<ApiError> error_;
};

struct EngineOptions {
  std::size_t queue = 64;  // requests waiting or running at most; more are refused (503)
  std::size_t max_active = 8;  // generations advancing together
  bool batching = true;  // waiting price requests in one pass, generations sharing passes
                         // (false: one request per pass, to measure the gain)
};

struct EngineStats {
  std::size_t waiting = 0, active = 0, capacity = 0;
  uint64_t served = 0, refused = 0, price_batches = 0, priced = 0;
  uint64_t generation_passes = 0, generation_rows = 0;  // generations' forward passes; sequences they carried
};

class Engine {
 public:
  Engine(std::shared_ptr<ModelPricer> model, EngineOptions options);
  ~Engine();  // close()s and joins the worker
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  ModelPricer& model() { return *model_; }
  // Queues a job; false when the queue is full or the engine is closing (answer 503).
  bool submit(std::shared_ptr<GenerationJob> job);
  bool submit(std::shared_ptr<PriceJob> job);
  // Refuses new work; the worker finishes what is queued and running, then exits.
  void close();
  bool closing() const;
  EngineStats stats() const;

 private:
  struct Active;
  template <class Job>
  bool admit(std::deque<std::shared_ptr<Job>>& queue, std::shared_ptr<Job> job);
  void loop();
  void price(std::vector<std::shared_ptr<PriceJob>>& jobs);
  void start(std::vector<std::shared_ptr<GenerationJob>>& jobs, std::vector<std::unique_ptr<Active>>& active);
  void advance(std::vector<std::unique_ptr<Active>>& active);
  std::optional<int32_t> sample(Active& a);
  template <class Pass>
  std::vector<float> run_passes(const std::vector<KvCache*>& caches, const Pass& pass);
  void count_pass(std::size_t sequences);
  void take_logits(std::vector<std::unique_ptr<Active>>& seqs, const std::vector<float>& logits);

  std::shared_ptr<ModelPricer> model_;
  ModelAverage average_;
  EngineOptions opt_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<GenerationJob>> gen_queue_;
  std::deque<std::shared_ptr<PriceJob>> price_queue_;
  std::size_t active_count_ = 0;
  bool closing_ = false;
  EngineStats stats_;
  std::thread worker_;
};

// The log-softmax of logits[0, n): the sampled token's log-probability and the `k` likeliest.
SampledToken token_logprobs(const float* logits, int64_t n, int32_t id, int k);

}  // namespace pricer::serve
