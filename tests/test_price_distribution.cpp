#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "predict/price_distribution.h"

namespace pricer {
namespace {

// A vocabulary of fixed strings: enough to exercise which tokens count as prices.
class ListTokenizer : public Tokenizer {
 public:
  explicit ListTokenizer(std::vector<std::string> v) : v_(std::move(v)) {}
  std::vector<int32_t> encode(std::string_view, bool) const override { return {}; }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string s;
    for (int32_t id : ids) s += v_.at(id);
    return s;
  }
  std::string token_bytes(int32_t id) const override { return v_.at(id); }
  int32_t vocab_size() const override { return static_cast<int32_t>(v_.size()); }
  int32_t bos_id() const override { return -1; }
  int32_t eos_id() const override { return -1; }

 private:
  std::vector<std::string> v_;
};

TEST(PriceDistribution, FindsPlainNumbersOnly) {
  ListTokenizer tok({"a", "0", "10", "007", "999", "1000", " 5", "5", "$", "12.5"});
  PriceDistribution pd(tok);
  EXPECT_EQ(pd.ids(), (std::vector<int32_t>{1, 2, 4, 7}));
  EXPECT_EQ(pd.values(), (std::vector<int>{0, 10, 999, 5}));
}

TEST(PriceDistribution, ExpectedValueGreedyAndInterval) {
  // Numbers 0..99 plus two text tokens; put known probabilities on 10, 20, 30.
  std::vector<std::string> v = {"x", "y"};
  for (int i = 0; i < 100; ++i) v.push_back(std::to_string(i));
  ListTokenizer tok(v);
  PriceDistribution pd(tok);
  std::vector<float> logits(v.size(), -1e9f);
  auto id_of = [](int value) { return value + 2; };
  logits[id_of(10)] = std::log(0.2f);
  logits[id_of(20)] = std::log(0.5f);
  logits[id_of(30)] = std::log(0.2f);
  logits[0] = std::log(0.1f);  // 10% on a non-number token
  PriceEstimate e = pd.estimate(logits.data(), static_cast<int64_t>(v.size()), 0.8, 2);
  EXPECT_NEAR(e.number_mass, 0.9, 1e-6);
  EXPECT_NEAR(e.expected, (10 * 0.2 + 20 * 0.5 + 30 * 0.2) / 0.9, 1e-5);
  EXPECT_EQ(e.greedy, 20);
  EXPECT_EQ(e.median, 20);  // cdf 0.222 at 10, 0.777 at 20
  // Renormalised cdf: 10 -> 0.222, 20 -> 0.777, 30 -> 1: 10th pct is 10, 90th is 30.
  EXPECT_EQ(e.lo, 10);
  EXPECT_EQ(e.hi, 30);
  ASSERT_EQ(e.top.size(), 2u);
  EXPECT_EQ(e.top[0].value, 20);
  EXPECT_NEAR(e.top[0].prob, 0.5 / 0.9, 1e-6);
  // A long tail pulls the mean but not the median.
  std::vector<float> skew(v.size(), -1e9f);
  skew[id_of(10)] = std::log(0.6f);
  skew[id_of(90)] = std::log(0.4f);
  const PriceEstimate s = pd.estimate(skew.data(), static_cast<int64_t>(v.size()), 0.8, 2);
  EXPECT_NEAR(s.expected, 42.0, 1e-4);
  EXPECT_EQ(s.median, 10);
  // A narrower interval collapses onto the mode.
  PriceEstimate n = pd.estimate(logits.data(), static_cast<int64_t>(v.size()), 0.2, 1);
  EXPECT_EQ(n.lo, 20);
  EXPECT_EQ(n.hi, 20);
}

TEST(PriceDistribution, RejectsVocabularyWithoutNumbers) {
  ListTokenizer tok({"a", "b"});
  EXPECT_THROW(PriceDistribution{tok}, Error);
}

}  // namespace
}  // namespace pricer
