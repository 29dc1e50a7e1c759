#pragma once
// The LLM pricers of `pricer eval`: the fine-tuned model (base + adapter, or a merged model) and
// the untuned base, each in any decoding mode. The model is loaded once per evaluation: pricers
// with the same model settings (e.g. finetuned and finetuned-greedy) share one ModelPricer.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "eval/pricer.h"
#include "predict/model_average.h"
#include "predict/model_pricer.h"

namespace pricer::eval {

class LlmPricer : public Pricer {
 public:
  // Several models (the runs of one recipe) price as their average (predict/model_average.h).
  LlmPricer(std::string name, std::vector<std::shared_ptr<ModelPricer>> models, PriceMode mode);
  std::string name() const override { return name_; }
  // Curate items are priced from their prompt verbatim (what the model was trained on), plain
  // product lines from the prompt template filled with their text.
  std::vector<double> predict(const std::vector<Item>& items) override;
  // mode, model, adapter, the interval's nominal and observed coverage on these items, its mean
  // width, the mean probability on number tokens, and (greedy) completions without a number.
  nlohmann::json stats() const override;
  // "interval_width": the width of each item's interval in log(1 + price), how unsure the model was.
  std::map<std::string, std::vector<double>> item_signals() const override;
  nlohmann::json combine_stats(const std::vector<nlohmann::json>& shares) const override;

 private:
  std::string name_;
  ModelAverage models_;
  PriceMode mode_;
  nlohmann::json stats_ = nlohmann::json::object();
  std::vector<double> interval_width_;
};

// The ModelPricer for these options: the live one when another pricer holds it, else loaded now.
std::shared_ptr<ModelPricer> shared_model_pricer(const ModelPricerOptions& opt);

// Builds "finetuned", "base" (the default readout, kDefaultPriceMode: the median) and their
// "-median" / "-expected" / "-top3" / "-greedy" variants from --param settings:
//   model=PATH           base model (both pricers)
//   adapter=PATH[,PATH]  LoRA adapter(s) of "finetuned" (PEFT directory or GGUF LoRA)
//   finetuned_model=PATH[,PATH] merged fine-tuned model(s), instead of model + adapter
// Several adapters or models price as one: their prices averaged in log(1 + price).
//   tokenizer=PATH  base_dtype=nf4|bf16|f32  mode=median|expected|top3|greedy (plain names)
//   coverage=0.8  batch=16  max_prompt_tokens=256  text_tokens=110  prompt_template=...
std::unique_ptr<Pricer> make_llm_pricer(const std::string& name, const PricerContext& ctx);

// Fold twins of a fine-tuned model: merged models (or adapters: a GGUF LoRA, or a directory with
// adapter.gguf) trained with `train --cross-fit-folds K --cross-fit-fold k`, in any order,
// returned by fold (entry k left fold k out) as their metadata says. Every fold of one K exactly
// once; errors name the file. An empty list gives an empty list.
std::vector<std::string> fold_twins_by_fold(const std::vector<std::string>& paths, bool adapters);

}  // namespace pricer::eval
