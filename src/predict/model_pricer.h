#pragma once
// The LLM pricers: a base model (any format pricer loads), optionally with a LoRA adapter, reading
// prices off the next-token distribution after "...Price is $". Loaded once, then every item of a
// batch goes through batched forward passes.
#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "model/llama.h"
#include "predict/price_distribution.h"
#include "tokenizer/tokenizer.h"

namespace pricer {

enum class PriceMode {
  Expected,  // mean over all number tokens (the default)
  Top3,      // mean over the three most likely number tokens, renormalised
  Greedy,    // generate greedily and parse the text
};
PriceMode price_mode_from_name(const std::string& name);  // expected | top3 | greedy

struct ModelPricerOptions {
  std::string model;
  std::string adapter;  // PEFT directory or GGUF LoRA; empty = the base model alone
  std::string tokenizer;  // default: the model's
  std::string base_dtype = "nf4";
  std::string prompt_template = "What does this cost to the nearest dollar?\n\n{text}\n\nPrice is $";
  int64_t max_prompt_tokens = 160;
  int64_t batch = 16;
  double coverage = 0.8;
};

struct PricePrediction {
  double price = 0;
  PriceEstimate dist;
  std::string text;  // greedy mode: the generated completion
};

class ModelPricer {
 public:
  explicit ModelPricer(const ModelPricerOptions& opt);
  // A prompt per item (already templated), predictions in order.
  std::vector<PricePrediction> predict(const std::vector<std::string>& prompts, PriceMode mode);
  std::string prompt_for(const std::string& text) const;
  const Tokenizer& tokenizer() const { return *tok_; }

 private:
  std::vector<int32_t> encode_prompt(const std::string& prompt) const;

  ModelPricerOptions opt_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<Backend> be_;
  std::unique_ptr<PriceDistribution> pd_;
};

// Parses the first number of a completion ("123.00", "1,299", " $45"); NaN when none.
double parse_price(const std::string& text);

}  // namespace pricer
