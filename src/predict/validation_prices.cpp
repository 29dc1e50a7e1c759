#include "predict/validation_prices.h"

#include <cmath>
#include <memory>

#include "core/error.h"
#include "predict/price_distribution.h"

namespace pricer {

namespace {

PriceScores score(const PriceDistribution& pd, LlamaModel& model, Backend& be, std::span<const PricedExample> items,
                  int64_t micro_batch) {
  PriceScores r;
  r.readout = price_mode_name(kDefaultPriceMode);
  if (items.empty()) return r;
  double abs_err = 0, abs_err_mean = 0, covered = 0;
  const int64_t vocab = model.config().vocab_size;
  for (size_t i = 0; i < items.size(); i += static_cast<size_t>(micro_batch)) {
    const auto group = items.subspan(i, std::min(items.size() - i, static_cast<size_t>(micro_batch)));
    std::vector<std::span<const int32_t>> prompts;
    for (const PricedExample& ex : group)
      prompts.push_back(std::span(ex.tokens).first(static_cast<size_t>(ex.prompt_len)));
    const Batch b = prompt_batch(prompts);
    const std::vector<float> logits = model.logits(b, last_rows(b), be);
    for (size_t k = 0; k < group.size(); ++k) {
      const PriceEstimate e = pd.estimate(logits.data() + k * static_cast<size_t>(vocab), vocab, 0.8, 3);
      const double truth = group[k].price;
      abs_err += std::abs(read_price(e, kDefaultPriceMode) - truth);
      abs_err_mean += std::abs(e.expected - truth);
      covered += (truth >= e.lo && truth <= e.hi + 1.0) ? 1 : 0;  // whole-dollar tokens cover [v, v+1)
    }
  }
  const double n = static_cast<double>(items.size());
  r.mae = abs_err / n;
  r.mae_mean = abs_err_mean / n;
  r.interval_coverage = covered / n;
  return r;
}

}  // namespace

PriceScorer validation_price_scorer(const Tokenizer& tok) {
  std::shared_ptr<const PriceDistribution> pd;
  try {
    pd = std::make_shared<const PriceDistribution>(tok);
  } catch (const Error&) {
    return {};  // a vocabulary without number tokens has no price reading
  }
  return [pd](LlamaModel& model, Backend& be, std::span<const PricedExample> items, int64_t micro_batch) {
    return score(*pd, model, be, items, micro_batch);
  };
}

TrainHooks with_price_scores(TrainHooks hooks, const Tokenizer& tok) {
  hooks.score_prices = validation_price_scorer(tok);
  return hooks;
}

}  // namespace pricer
