#pragma once
// The LLM pricers: a base model (any format pricer loads), optionally with a LoRA adapter, reading
// prices off the next-token distribution after "...Price is $". Loaded once, then every item goes
// through batched forward passes that compute the head only at each prompt's last position;
// greedy decoding runs each prompt through a KV cache.
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "data/record.h"
#include "kernels/backend.h"
#include "model/llama.h"
#include "predict/price_distribution.h"
#include "retrieval/comparables.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset.h"

namespace pricer {

struct ModelPricerOptions {
  std::string model;
  std::string adapter;  // PEFT directory or GGUF LoRA; empty = the base model alone
  std::string tokenizer;  // default: the model's
  std::string base_dtype = "nf4";
  std::string compute_dtype = "bf16";  // the base's linears, as `pricer train --compute-dtype`  // how the projections
                                       // are held, as `pricer train --base-dtype`
  std::string prompt_template = "What does this cost to the nearest dollar?\n\n{text}\n\nPrice is $";
  // A raw product text is cut to this many tokens before it fills the template, as curation cuts
  // every training text (0 = no cut); curated prompts are used as they are.
  int64_t text_token_budget = data::kDefaultTokenBudget;
  // Longer prompts lose their middle (head and last 16 tokens kept), as `pricer train
  // --max-length` cuts training examples (the same default).
  int64_t max_prompt_tokens = kDefaultMaxTokens;
  int64_t batch = 16;  // prompts per forward pass
  double coverage = 0.8;  // probability of the prediction interval
  int top_k = 5;  // number tokens listed per prediction
  int64_t greedy_max_tokens = 8;  // generation budget of greedy mode
  bool keep_distribution = false;  // fill PricePrediction::number_probs (calibration)
  bool progress = false;  // progress bar on stderr
};

struct PricePrediction {
  double price = 0;
  PriceEstimate dist;
  std::string text;  // greedy mode: the generated completion
  bool parsed = true;  // greedy mode: false when the text held no number (price = dist.expected)
  std::vector<double> number_probs;  // with keep_distribution, in PriceDistribution::ids() order
};

class ModelPricer {
 public:
  explicit ModelPricer(const ModelPricerOptions& opt);
  // A prompt per item (already templated), predictions in order; model_prompt() is applied here.
  // Asked again for the same prompts in another readout than greedy, it reads the distributions
  // it kept instead of running the model again.
  std::vector<PricePrediction> predict(const std::vector<std::string>& prompts, PriceMode mode);
  std::string prompt_for(const std::string& text) const;
  // The prompt as the model was trained to read it: with its comparables when the model or
  // adapter was trained with them (their index beside it), otherwise unchanged.
  std::string model_prompt(const std::string& prompt) const;
  // The comparables index in use (nullptr when none) and the file it came from.
  const retrieval::ComparablesIndex* comparables() const { return comparables_.get(); }
  const std::string& comparables_path() const { return comparables_path_; }
  // BOS (when the tokenizer has one) + the prompt's tokens, shortened to fit max_prompt_tokens
  // and the model's context (leaving room for greedy generation).
  std::vector<int32_t> encode_prompt(const std::string& prompt) const;

  const ModelPricerOptions& options() const { return opt_; }
  const Tokenizer& tokenizer() const { return *tok_; }
  const PriceDistribution& distribution() const { return *pd_; }
  const LlamaModel& model() const { return *model_; }
  // The loaded model and its backend for text generation beside pricing (`pricer serve`). Not
  // thread-safe: one thread at a time runs the model, as predict() does.
  LlamaModel& model() { return *model_; }
  Backend& backend() { return *be_; }

 private:
  std::vector<PricePrediction> run(const std::vector<std::string>& prompts, PriceMode mode);
  PricePrediction read_logits(const float* logits, PriceMode mode) const;
  void generate(std::span<const std::vector<int32_t>> prompts, std::span<PricePrediction> out);

  ModelPricerOptions opt_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<Backend> be_;
  std::unique_ptr<PriceDistribution> pd_;
  std::unique_ptr<retrieval::ComparablesIndex> comparables_;
  std::string comparables_path_;
  // The last readout's prompts and predictions (the top tokens kept to at least 3, so Top3 can
  // be read again).
  std::vector<std::string> last_prompts_;
  std::vector<PricePrediction> last_readout_;
};

}  // namespace pricer
