#include "predict/model_pricer.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <optional>

#include "core/error.h"
#include "core/progress.h"
#include "core/threads.h"
#include "data/text.h"
#include "io/model_file.h"
#include "kernels/parallel.h"
#include "model/sampler.h"
#include "predict/price_text.h"
#include "train/adapter_io.h"
#include "train/dataset.h"

namespace pricer {

namespace {

// Prompt tokens kept at the end of a shortened prompt, as training keeps them (DatasetOptions).
constexpr int64_t kPromptTail = 16;

// The comparables index a model or adapter was trained with lies beside it: in the adapter's
// directory, else beside the model file (or in a model directory). The trained weights' GGUF (the
// adapter's, else the model's) also says so in its metadata, so a lost index is an error rather
// than prices read off prompts the model never saw. (A PEFT directory without pricer's
// adapter.gguf carries no such mark.)
std::string find_comparables(const ModelPricerOptions& opt, const ModelFile& mf) {
  namespace fs = std::filesystem;
  const std::string trained = opt.adapter.empty() ? opt.model : opt.adapter;
  const std::string index = retrieval::comparables_beside(trained);
  if (fs::exists(index)) return index;
  bool marked = false;
  if (opt.adapter.empty()) {
    marked = std::any_of(mf.gguf_metadata.begin(), mf.gguf_metadata.end(),
                         [](const GgufKV& kv) { return kv.key == retrieval::kComparablesKey; });
  } else {
    const fs::path gguf =
        fs::is_directory(opt.adapter) ? fs::path(opt.adapter) / "adapter.gguf" : fs::path(opt.adapter);
    marked = gguf.extension() == ".gguf" && fs::exists(gguf) &&
             GgufFile::open(gguf.string()).has(retrieval::kComparablesKey);
  }
  require(!marked, trained + ": trained with comparables in its prompts, and their index " + index +
                       " is missing (copy it beside the " + (opt.adapter.empty() ? "model)" : "adapter)"));
  return {};
}

}  // namespace

ModelPricer::ModelPricer(const ModelPricerOptions& opt) : opt_(opt) {
  require(!opt.model.empty(), "model pricer: no model given");
  require(opt.batch >= 1, "model pricer: batch must be at least 1");
  require(opt.coverage > 0 && opt.coverage < 1, "model pricer: interval coverage must be in (0, 1)");
  require(opt.greedy_max_tokens >= 1 && opt.greedy_max_tokens <= 64,
          "model pricer: greedy_max_tokens must be in [1, 64]");
  require(opt.top_k >= 0, "model pricer: top_k must not be negative");
  require(opt.prompt_template.find("{text}") != std::string::npos,
          "prompt template \"" + opt.prompt_template + "\" has no {text}: every product would get the same prompt");
  require(opt.text_token_budget >= 0 && opt.max_prompt_tokens >= 0,
          "model pricer: text_tokens and max_prompt_tokens cannot be negative");
  ModelFile mf = load_model_file(opt.model, dtype_from_name(opt.base_dtype));
  if (const std::string bad = first_non_finite_tensor(mf); !bad.empty())
    throw Error(opt.model + ": tensor " + bad + " holds NaN or infinite values; the model cannot price");
  comparables_path_ = find_comparables(opt, mf);
  if (!comparables_path_.empty())
    comparables_ = std::make_unique<retrieval::ComparablesIndex>(retrieval::ComparablesIndex::load(comparables_path_));
  model_ = std::make_unique<LlamaModel>(LlamaModel::from_weights(mf.config, std::move(mf.tensors), mf.source));
  if (!opt.adapter.empty()) {
    require(std::filesystem::exists(opt.adapter),
            opt.adapter + ": no such adapter (a PEFT directory or a GGUF LoRA file)");
    load_adapter(*model_, opt.adapter);
  }
  tok_ = load_tokenizer(opt.tokenizer.empty() ? opt.model : opt.tokenizer);
  require(tok_->vocab_size() <= model_->config().vocab_size, "tokenizer has " + std::to_string(tok_->vocab_size()) +
                                                                 " tokens, more than the model's " +
                                                                 std::to_string(model_->config().vocab_size));
  pd_ = std::make_unique<PriceDistribution>(*tok_);
  be_ = make_cpu_backend(dtype_from_name(opt.compute_dtype));
  const int64_t room = model_->config().max_seq_len - opt.greedy_max_tokens;
  require(room >= kPromptTail + 2, "model pricer: the model's context (" +
                                       std::to_string(model_->config().max_seq_len) +
                                       " tokens) leaves no room for a prompt");
}

std::string ModelPricer::prompt_for(const std::string& text) const {
  std::string p = opt_.prompt_template;
  const auto at = p.find("{text}");
  if (at != std::string::npos)
    p.replace(at, 6, opt_.text_token_budget > 0 ? data::cut_to_tokens(text, *tok_, opt_.text_token_budget) : text);
  return p;
}

std::string ModelPricer::model_prompt(const std::string& prompt) const {
  return comparables_ ? retrieval::prompt_with_comparables(*comparables_, prompt) : prompt;
}

std::vector<int32_t> ModelPricer::encode_prompt(const std::string& prompt) const {
  PricedExample ex;
  if (tok_->bos_id() >= 0) ex.tokens.push_back(tok_->bos_id());
  for (int32_t id : tok_->encode(prompt)) ex.tokens.push_back(id);
  require(!ex.tokens.empty(), "model pricer: empty prompt");
  ex.prompt_len = static_cast<int64_t>(ex.tokens.size());
  // The cut training makes (head + "Price is $" tail), within the context left after generation.
  const int64_t max = std::min(std::max<int64_t>(opt_.max_prompt_tokens, kPromptTail + 2),
                               model_->config().max_seq_len - opt_.greedy_max_tokens);
  fit_length(ex, max, kPromptTail);
  return std::move(ex.tokens);
}

PricePrediction ModelPricer::read_logits(const float* logits, PriceMode mode) const {
  PricePrediction p;
  const int64_t vocab = model_->config().vocab_size;
  p.dist = pd_->estimate(logits, vocab, opt_.coverage, std::max(opt_.top_k, 3));
  p.price = read_price(p.dist, mode);
  p.dist.top.resize(std::min<size_t>(p.dist.top.size(), static_cast<size_t>(opt_.top_k)));
  if (opt_.keep_distribution) p.number_probs = pd_->number_probs(logits, vocab, nullptr);
  return p;
}

// Greedy decoding of a group of prompts, each with its own KV cache: the prompts in one packed
// pass, then one pass per step for those whose number is not complete yet (until EOS or the
// budget); each text parsed as a price.
void ModelPricer::generate(std::span<const std::vector<int32_t>> prompts, std::span<PricePrediction> out) {
  const auto V = static_cast<size_t>(model_->config().vocab_size);
  std::vector<KvCache> caches;
  std::vector<KvCache*> running;
  std::vector<size_t> live;
  for (size_t i = 0; i < prompts.size(); ++i) {
    caches.push_back(model_->make_cache(static_cast<int64_t>(prompts[i].size()) + opt_.greedy_max_tokens));
    live.push_back(i);
  }
  for (auto& c : caches) running.push_back(&c);
  std::vector<float> lg = model_->prefill_many(running, prompts, *be_);
  for (size_t i = 0; i < prompts.size(); ++i) out[i] = read_logits(lg.data() + i * V, PriceMode::Greedy);
  for (int64_t step = 0; !live.empty(); ++step) {
    std::vector<size_t> go;
    std::vector<int32_t> next;
    running.clear();
    for (size_t k = 0; k < live.size(); ++k) {
      PricePrediction& p = out[live[k]];
      const int32_t id = argmax(std::span<const float>(lg.data() + k * V, V));
      if (id == tok_->eos_id() || id >= tok_->vocab_size()) continue;
      p.text += tok_->token_bytes(id);
      if (number_complete(p.text) || step + 1 == opt_.greedy_max_tokens) continue;
      go.push_back(live[k]);
      next.push_back(id);
      running.push_back(&caches[live[k]]);
    }
    live = std::move(go);
    if (!live.empty()) lg = model_->decode_many(running, next, *be_);
  }
  for (PricePrediction& p : out) {
    const std::optional<double> price = price_in_text(p.text);
    p.parsed = price.has_value();
    p.price = price.value_or(p.dist.expected);
  }
}

std::vector<PricePrediction> ModelPricer::predict(const std::vector<std::string>& prompts, PriceMode mode) {
  // The distribution read by one readout serves the next on the same prompts (the ensemble and
  // eval ask for the median, then the expected value, of thousands of items).
  const bool readout = mode != PriceMode::Greedy && opt_.top_k >= 3;
  if (readout && prompts == last_prompts_) {
    std::vector<PricePrediction> out = last_readout_;
    for (PricePrediction& p : out) p.price = read_price(p.dist, mode);
    return out;
  }
  std::vector<PricePrediction> out = run(prompts, mode);
  if (readout) {
    last_prompts_ = prompts;
    last_readout_ = out;
  }
  return out;
}

std::vector<PricePrediction> ModelPricer::run(const std::vector<std::string>& prompts, PriceMode mode) {
  // Tokenizing is independent per prompt (encode is const and thread-safe).
  std::vector<std::vector<int32_t>> ids(prompts.size());
  kernels::ParallelErrors errors;
#pragma omp parallel for num_threads(threads()) schedule(dynamic, 8)
  for (size_t i = 0; i < prompts.size(); ++i) errors.run([&] { ids[i] = encode_prompt(model_prompt(prompts[i])); });
  errors.rethrow();

  std::vector<PricePrediction> out(prompts.size());
  ProgressOptions po;
  po.enabled = opt_.progress;
  Progress bar(std::string("pricing (") + price_mode_name(mode) + ")", prompts.size(), po);
  const int64_t vocab = model_->config().vocab_size;
  for (size_t i0 = 0; i0 < prompts.size(); i0 += static_cast<size_t>(opt_.batch)) {
    const size_t i1 = std::min(prompts.size(), i0 + static_cast<size_t>(opt_.batch));
    if (mode == PriceMode::Greedy) {
      generate(std::span(ids).subspan(i0, i1 - i0), std::span(out).subspan(i0, i1 - i0));
      bar.add(i1 - i0);
      continue;
    }
    // Prompts packed back to back (no padding); the head runs only at each prompt's last token.
    const std::vector<std::span<const int32_t>> batch(ids.begin() + static_cast<std::ptrdiff_t>(i0),
                                                      ids.begin() + static_cast<std::ptrdiff_t>(i1));
    const Batch b = prompt_batch(batch);
    const std::vector<int64_t> rows = last_rows(b);
    const std::vector<float> logits = model_->logits(b, rows, *be_);
    for (size_t k = 0; k < rows.size(); ++k) out[i0 + k] = read_logits(logits.data() + k * vocab, mode);
    bar.add(i1 - i0);
  }
  bar.finish();
  return out;
}

}  // namespace pricer
