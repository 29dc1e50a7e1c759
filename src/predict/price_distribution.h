#pragma once
// Reads a price off the model's next-token distribution. After "...Price is $" the completion
// starts with the whole-dollar amount; with Llama 3's tokenizer (and the ones `pricer pretrain`
// trains) every number 0-999 is a single token, so the distribution over those tokens is a
// distribution over prices: its mean is a point estimate, its quantiles an interval.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace pricer {

struct PriceTopToken {
  int32_t id;
  int value;
  double prob;  // renormalised over number tokens
};

struct PriceEstimate {
  double expected = 0;  // mean over number tokens, renormalised
  double greedy = 0;  // the most likely number token's value
  double median = 0;  // the distribution's median: the estimate with the least expected
                      // absolute error, where the mean is pulled by a long tail
  double lo = 0, hi = 0;  // central interval from the distribution's quantiles
  double number_mass = 0;  // probability the model put on number tokens at all
  std::vector<PriceTopToken> top;
};

// How a point price is read off the distribution. One default for every reader: training's
// validation MAE, `pricer predict` and eval's "finetuned"/"base" pricers.
enum class PriceMode {
  Median,  // the distribution's median: the estimate with the least expected absolute error
  Expected,  // mean over all number tokens
  Top3,  // mean over the three most likely number tokens, renormalised (the course's way)
  Greedy,  // generate greedily and parse the text (the model pricer's; reads as Expected here)
};
inline constexpr PriceMode kDefaultPriceMode = PriceMode::Median;
PriceMode price_mode_from_name(const std::string& name);  // median | expected | top3 | greedy
const char* price_mode_name(PriceMode mode);
// Words for reports: "median of the price distribution", ...
const char* price_mode_description(PriceMode mode);
// The point estimate of `mode` (Greedy reads as Expected: the text is the model pricer's job).
double read_price(const PriceEstimate& e, PriceMode mode);

class PriceDistribution {
 public:
  // Finds the tokens that are exactly a decimal number 0..999 written without leading zeros.
  explicit PriceDistribution(const Tokenizer& tok);

  size_t n_number_tokens() const { return ids_.size(); }
  const std::vector<int32_t>& ids() const { return ids_; }
  const std::vector<int>& values() const { return values_; }

  // logits [vocab] of the first completion position. coverage: the interval's probability
  // (0.8 = 10th to 90th percentile), in (0, 1). top_k: how many top number tokens to list.
  PriceEstimate estimate(const float* logits, int64_t vocab, double coverage = 0.8, int top_k = 5) const;

  // The softmax over the whole vocabulary restricted to the number tokens (in ids() order) and
  // renormalised; *mass receives the probability they held before renormalising. All zeros when
  // the mass underflows to 0.
  std::vector<double> number_probs(const float* logits, int64_t vocab, double* mass) const;
  // Central interval [lo, hi] of number_probs: lo is the smallest value whose cdf reaches
  // (1 - coverage) / 2, hi the smallest whose cdf reaches (1 + coverage) / 2.
  std::pair<double, double> interval(const std::vector<double>& probs, double coverage) const;

 private:
  std::vector<int32_t> ids_;
  std::vector<int> values_;
  std::vector<size_t> by_value_;  // indices into ids_ in ascending value
};

}  // namespace pricer
