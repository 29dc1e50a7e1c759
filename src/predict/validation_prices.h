#pragma once
// The training loop's price metrics, read as `predict` and `eval` read prices: the next-token
// distribution over number tokens at the end of each prompt, its default readout, its mean and its
// 80% interval. Wired into TrainHooks::score_prices by the commands that train.
#include "tokenizer/tokenizer.h"
#include "train/trainer.h"

namespace pricer {

// A scorer for validation items with prices; empty (no price metrics) when `tok` has no number
// tokens to read a price from. `tok` must outlive the scorer.
PriceScorer validation_price_scorer(const Tokenizer& tok);

// `hooks` with score_prices set from `tok` (as validation_price_scorer).
TrainHooks with_price_scores(TrainHooks hooks, const Tokenizer& tok);

}  // namespace pricer
