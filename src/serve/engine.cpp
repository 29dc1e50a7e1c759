#include "serve/engine.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "core/error.h"
#include "predict/prediction_json.h"
#include "predict/price_text.h"
#include "serve/stop_text.h"
#include "tokenizer/text_stream.h"

namespace pricer::serve {

using nlohmann::json;

namespace {

ApiError timeout_error() {
  return ApiError(504, "the request was not finished within the server's request timeout", "timeout_error", "",
                  "timeout");
}

ApiError internal_error(const std::exception& e) {
  return ApiError(500, std::string("the model failed: ") + e.what(), "server_error");
}

}  // namespace

// ---- jobs ----

GenerationUpdate GenerationJob::take(std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, wait, [&] { return pending_.done || !pending_.text.empty() || !pending_.tokens.empty(); });
  GenerationUpdate out = std::move(pending_);
  pending_ = {};
  // Done stays done: the finish is reported again to whoever asks later.
  pending_.done = out.done;
  pending_.finish_reason = out.finish_reason;
  pending_.error = out.error;
  return out;
}

void GenerationJob::publish(const std::string& text, const SampledToken* token) {
  {
    std::lock_guard lock(mu_);
    pending_.text += text;
    if (token != nullptr) pending_.tokens.push_back(*token);
  }
  cv_.notify_all();
}

void GenerationJob::finish(std::string reason, std::optional<ApiError> error) {
  {
    std::lock_guard lock(mu_);
    pending_.done = true;
    pending_.finish_reason = std::move(reason);
    pending_.error = std::move(error);
  }
  cv_.notify_all();
}

std::vector<json> PriceJob::wait() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return done_; });
  if (error_) throw *error_;
  return results_;
}

void PriceJob::finish(std::vector<json> results, std::optional<ApiError> error) {
  {
    std::lock_guard lock(mu_);
    done_ = true;
    results_ = std::move(results);
    error_ = std::move(error);
  }
  cv_.notify_all();
}

SampledToken token_logprobs(const float* logits, int64_t n, int32_t id, int k) {
  const float mx = *std::max_element(logits, logits + n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
  const double lse = mx + std::log(sum);
  SampledToken t;
  t.id = id;
  t.logprob = static_cast<float>(logits[id] - lse);
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  const auto kk = static_cast<std::ptrdiff_t>(std::min<int64_t>(std::max(k, 0), n));
  std::partial_sort(order.begin(), order.begin() + kk, order.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  for (std::ptrdiff_t i = 0; i < kk; ++i) t.top.push_back({order[i], static_cast<float>(logits[order[i]] - lse)});
  return t;
}

// ---- the engine ----

struct Engine::Active {
  std::shared_ptr<GenerationJob> job;
  KvCache cache;
  Sampler sampler;
  TextStream text;
  StopText stop;
  std::vector<float> logits;
  std::string reply;  // the text so far, for end_at_price
  int64_t generated = 0;
  Active(std::shared_ptr<GenerationJob> j, KvCache c, const Tokenizer& tok)
      : job(std::move(j)),
        cache(std::move(c)),
        sampler(job->options.sampling),
        text(tok, job->prompt),
        stop(job->stop) {}
};

Engine::Engine(std::shared_ptr<ModelPricer> model, EngineOptions options)
    : model_(model), average_(std::vector<std::shared_ptr<ModelPricer>>{model}), opt_(options) {
  require(opt_.queue >= 1 && opt_.max_active >= 1, "serve: the queue and the active generations must be at least 1");
  stats_.capacity = opt_.queue;
  worker_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  close();
  if (worker_.joinable()) worker_.join();
}

// Queues a job unless the engine is closing or holds its capacity already (waiting or running).
template <class Job>
bool Engine::admit(std::deque<std::shared_ptr<Job>>& queue, std::shared_ptr<Job> job) {
  {
    std::lock_guard lock(mu_);
    if (closing_ || gen_queue_.size() + price_queue_.size() + active_count_ >= opt_.queue) {
      ++stats_.refused;
      return false;
    }
    queue.push_back(std::move(job));
  }
  cv_.notify_all();
  return true;
}

bool Engine::submit(std::shared_ptr<GenerationJob> job) { return admit(gen_queue_, std::move(job)); }
bool Engine::submit(std::shared_ptr<PriceJob> job) { return admit(price_queue_, std::move(job)); }

void Engine::close() {
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  cv_.notify_all();
}

bool Engine::closing() const {
  std::lock_guard lock(mu_);
  return closing_;
}

EngineStats Engine::stats() const {
  std::lock_guard lock(mu_);
  EngineStats s = stats_;
  s.waiting = gen_queue_.size() + price_queue_.size();
  s.active = active_count_;
  return s;
}

void Engine::loop() {
  std::vector<std::unique_ptr<Active>> active;
  for (;;) {
    std::vector<std::shared_ptr<PriceJob>> prices;
    std::vector<std::shared_ptr<GenerationJob>> admitted;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return closing_ || !price_queue_.empty() || !gen_queue_.empty() || !active.empty(); });
      if (closing_ && price_queue_.empty() && gen_queue_.empty() && active.empty()) return;
      const std::size_t take = opt_.batching ? price_queue_.size() : std::min<std::size_t>(1, price_queue_.size());
      prices.assign(price_queue_.begin(), price_queue_.begin() + static_cast<std::ptrdiff_t>(take));
      price_queue_.erase(price_queue_.begin(), price_queue_.begin() + static_cast<std::ptrdiff_t>(take));
      while (!gen_queue_.empty() && active.size() + admitted.size() < opt_.max_active) {
        admitted.push_back(std::move(gen_queue_.front()));
        gen_queue_.pop_front();
      }
      active_count_ = active.size() + admitted.size() + prices.size();
    }
    if (!prices.empty()) price(prices);
    start(admitted, active);
    advance(active);
    std::lock_guard lock(mu_);
    stats_.served += prices.size() + admitted.size();
    active_count_ = active.size();
  }
}

// Every queued price request in one pass per readout: the prompts of all of them batched.
void Engine::price(std::vector<std::shared_ptr<PriceJob>>& jobs) {
  std::map<PriceMode, std::vector<std::shared_ptr<PriceJob>>> by_mode;
  const auto now = Clock::now();
  for (auto& j : jobs) {
    if (now > j->deadline) {
      j->finish({}, timeout_error());
    } else {
      by_mode[j->mode].push_back(j);
    }
  }
  for (auto& [mode, group] : by_mode) {
    std::vector<std::string> prompts;
    for (const auto& j : group) prompts.insert(prompts.end(), j->prompts.begin(), j->prompts.end());
    try {
      const std::vector<PricePrediction> preds = average_.predict(prompts, mode);
      std::size_t i = 0;
      for (auto& j : group) {
        std::vector<json> out;
        for (std::size_t k = 0; k < j->prompts.size(); ++k, ++i) {
          json one = prediction_json(average_, i, preds[i], mode);
          if (j->distribution && !preds[i].number_probs.empty())
            one["distribution"] = {{"values", model_->distribution().values()}, {"probs", preds[i].number_probs}};
          out.push_back(std::move(one));
        }
        j->finish(std::move(out), std::nullopt);
      }
      std::lock_guard lock(mu_);
      ++stats_.price_batches;
      stats_.priced += prompts.size();
    } catch (const std::exception& e) {
      for (auto& j : group) j->finish({}, internal_error(e));
    }
  }
}

// One pass over every sequence, or with batching off one pass each; the logits of all, in order.
template <class Pass>
std::vector<float> Engine::run_passes(const std::vector<KvCache*>& caches, const Pass& pass) {
  const std::size_t group = opt_.batching ? caches.size() : 1;
  std::vector<float> logits;
  for (std::size_t at = 0; at < caches.size(); at += group) {
    const std::vector<float> part = pass(std::span(caches).subspan(at, group), at);
    logits.insert(logits.end(), part.begin(), part.end());
    count_pass(group);
  }
  return logits;
}

// The admitted generations' prompts in one packed pass, each into its own cache.
void Engine::start(std::vector<std::shared_ptr<GenerationJob>>& jobs, std::vector<std::unique_ptr<Active>>& active) {
  std::vector<std::unique_ptr<Active>> started;
  for (auto& job : jobs) {
    if (job->cancelled()) {
      job->finish("cancelled");
    } else if (Clock::now() > job->deadline) {
      job->finish("", timeout_error());
    } else {
      try {
        const auto cap = static_cast<int64_t>(job->prompt.size()) + job->options.max_tokens;
        started.push_back(std::make_unique<Active>(job, model_->model().make_cache(cap), model_->tokenizer()));
      } catch (const std::exception& e) {
        job->finish("", internal_error(e));
      }
    }
  }
  if (started.empty()) return;
  std::vector<KvCache*> caches;
  std::vector<std::vector<int32_t>> prompts;
  for (auto& a : started) {
    caches.push_back(&a->cache);
    prompts.push_back(a->job->prompt);
  }
  try {
    take_logits(started, run_passes(caches, [&](std::span<KvCache* const> c, std::size_t at) {
                  return model_->model().prefill_many(c, std::span(prompts).subspan(at, c.size()), model_->backend());
                }));
    for (auto& a : started) active.push_back(std::move(a));
  } catch (const std::exception& e) {
    for (auto& a : started) a->job->finish("", internal_error(e));
  }
}

// Every running generation one token further: each samples from its logits, and those that go on
// are decoded together in one pass.
void Engine::advance(std::vector<std::unique_ptr<Active>>& active) {
  std::vector<int32_t> next;
  std::erase_if(active, [&](std::unique_ptr<Active>& a) {
    try {
      const std::optional<int32_t> id = sample(*a);
      if (id) next.push_back(*id);
      return !id;
    } catch (const std::exception& e) {
      a->job->finish("", internal_error(e));
      return true;
    }
  });
  if (active.empty()) return;
  std::vector<KvCache*> caches;
  for (auto& a : active) caches.push_back(&a->cache);
  try {
    take_logits(active, run_passes(caches, [&](std::span<KvCache* const> c, std::size_t at) {
                  return model_->model().decode_many(c, std::span(next).subspan(at, c.size()), model_->backend());
                }));
  } catch (const std::exception& e) {
    for (auto& a : active) a->job->finish("", internal_error(e));
    active.clear();
  }
}

void Engine::count_pass(std::size_t sequences) {
  std::lock_guard lock(mu_);
  ++stats_.generation_passes;
  stats_.generation_rows += sequences;
}

void Engine::take_logits(std::vector<std::unique_ptr<Active>>& seqs, const std::vector<float>& logits) {
  const auto V = static_cast<std::ptrdiff_t>(model_->model().config().vocab_size);
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    const auto row = logits.begin() + static_cast<std::ptrdiff_t>(i) * V;
    seqs[i]->logits.assign(row, row + V);
  }
}

// Samples and publishes a's next token; the token when the generation goes on, nullopt once done.
std::optional<int32_t> Engine::sample(Active& a) {
  GenerationJob& job = *a.job;
  if (job.cancelled()) {
    job.finish("cancelled");
    return std::nullopt;
  }
  if (Clock::now() > job.deadline) {
    job.publish(a.stop.push(a.text.finish()), nullptr);
    job.finish("", timeout_error());
    return std::nullopt;
  }
  const int64_t n = job.options.sample_vocab;
  const int32_t id = a.sampler.sample(std::span<const float>(a.logits.data(), static_cast<size_t>(n)));
  if (std::find(job.options.stop_ids.begin(), job.options.stop_ids.end(), id) != job.options.stop_ids.end()) {
    job.publish(a.stop.push(a.text.finish()) + a.stop.finish(), nullptr);
    job.finish("stop");
    return std::nullopt;
  }
  SampledToken tok{id, 0, {}};
  if (job.top_logprobs >= 0) tok = token_logprobs(a.logits.data(), n, id, job.top_logprobs);
  ++a.generated;
  const std::string text = a.text.push(id);
  std::string piece = a.stop.push(text);
  a.reply += text;
  const bool priced = job.end_at_price && number_complete(a.reply);
  const bool last = priced || a.generated >= job.options.max_tokens;
  if (last && !a.stop.stopped()) piece += a.stop.push(a.text.finish()) + a.stop.finish();
  job.publish(piece, &tok);
  if (a.stop.stopped() || last) {
    job.finish(a.stop.stopped() || priced ? "stop" : "length");
    return std::nullopt;
  }
  return id;
}

}  // namespace pricer::serve
