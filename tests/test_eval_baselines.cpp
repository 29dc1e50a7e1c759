// The classic baselines on synthetic data with a planted price relationship, the solvers they
// rest on against dense references, and (when the data is present) the shared Amazon prices.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "eval/baselines.h"
#include "eval/evaluate.h"
#include "eval/features.h"
#include "eval/linalg.h"
#include "eval/xgboost_pricer.h"

using namespace pricer::eval;
using pricer::SparseMatrix;

namespace {

double mae(const std::vector<Item>& items, const std::vector<double>& pred) {
  double s = 0;
  for (std::size_t i = 0; i < items.size(); ++i) s += std::fabs(items[i].price - pred[i]);
  return s / static_cast<double>(items.size());
}

// log price = 3.5 + the sum of the planted weights of the words an item mentions.
struct WordWorld {
  std::vector<std::string> words;
  std::vector<double> weights;
  explicit WordWorld(std::mt19937& rng) {
    std::uniform_real_distribution<double> w(-0.8, 0.8);
    for (int i = 0; i < 40; ++i) {
      std::string word = "w";  // appends only: GCC 12 warns falsely (-Wrestrict) on "literal" + string
      word += static_cast<char>('a' + i % 26);
      word += static_cast<char>('a' + i / 26);
      words.push_back(word + 'x');
      weights.push_back(w(rng));
    }
  }
  std::vector<Item> sample(std::mt19937& rng, int n) const {
    std::uniform_int_distribution<std::size_t> pick(0, words.size() - 1);
    std::vector<Item> items;
    for (int i = 0; i < n; ++i) {
      Item it;
      double logp = 3.5;
      it.text = "product listing";
      for (int k = 0; k < 6; ++k) {
        const std::size_t j = pick(rng);
        it.text += " " + words[j] + " filler";
        logp += weights[j];
      }
      it.price = std::exp(logp);
      items.push_back(it);
    }
    return items;
  }
};

// price = 20 + 2·words + 30·[category A] + 60·[category B]
std::vector<Item> linear_world(std::mt19937& rng, int n) {
  std::uniform_int_distribution<int> len(3, 60), cat(0, 2);
  const char* cats[] = {"A", "B", "C"};
  std::vector<Item> items;
  for (int i = 0; i < n; ++i) {
    Item it;
    const int words = len(rng);
    for (int k = 0; k < words; ++k) {
      if (k) it.text += ' ';
      it.text += k % 2 ? "alpha" : "omega";
    }
    const int c = cat(rng);
    it.category = cats[c];
    it.price = 20.0 + 2.0 * words + (c == 0 ? 30.0 : c == 1 ? 60.0 : 0.0);
    items.push_back(it);
  }
  return items;
}

}  // namespace

TEST(EvalLinalg, CholeskySolvesKnownSystem) {
  // A = [[4,2],[2,3]], x = (1,-2) -> b = (0,-4)
  const auto x = solve_spd({4, 2, 2, 3}, {0, -4}, 2);
  EXPECT_NEAR(x[0], 1.0, 1e-12);
  EXPECT_NEAR(x[1], -2.0, 1e-12);
  EXPECT_THROW(solve_spd({1, 2, 2, 1}, {1, 1}, 2), pricer::Error);  // indefinite
  EXPECT_THROW(solve_spd({1, 0, 0}, {1, 1}, 2), pricer::Error);
}

TEST(EvalLinalg, RidgeCgMatchesDenseNormalEquations) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(0, 1);
  SparseMatrix x;
  x.rows = 50;
  x.cols = 12;
  std::vector<double> dense(x.rows * x.cols, 0.0), y(x.rows);
  for (std::size_t r = 0; r < x.rows; ++r) {
    for (uint32_t c = 0; c < x.cols; ++c)
      if (u(rng) < 0.3) {
        const double v = u(rng);
        x.indices.push_back(c);
        x.values.push_back(static_cast<float>(v));
        dense[r * x.cols + c] = static_cast<float>(v);
      }
    x.indptr.push_back(x.values.size());
    y[r] = 2.0 + u(rng) * 3.0;
  }
  const double alpha = 0.5;
  const RidgeModel m = ridge_cg(x, y, alpha, 1e-12, 500);
  // Reference: augment with a constant column whose penalty is zero, solve densely.
  const std::size_t d = x.cols + 1;
  std::vector<double> a(d * d, 0.0), b(d, 0.0);
  for (std::size_t r = 0; r < x.rows; ++r) {
    std::vector<double> row(dense.begin() + static_cast<long>(r * x.cols),
                            dense.begin() + static_cast<long>((r + 1) * x.cols));
    row.push_back(1.0);
    for (std::size_t i = 0; i < d; ++i) {
      b[i] += row[i] * y[r];
      for (std::size_t j = 0; j < d; ++j) a[i * d + j] += row[i] * row[j];
    }
  }
  for (std::size_t i = 0; i < x.cols; ++i) a[i * d + i] += alpha;
  const auto ref = solve_spd(a, b, d);
  for (std::size_t j = 0; j < x.cols; ++j) EXPECT_NEAR(m.weights[j], ref[j], 1e-7) << j;
  EXPECT_NEAR(m.intercept, ref[x.cols], 1e-7);
}

TEST(EvalFeatures, TokensAndTfidfWeights) {
  EXPECT_EQ(word_tokens("Hello, WORLD a b2 x_y 12"), (std::vector<std::string>{"hello", "world", "b2", "x_y", "12"}));
  TfidfVectorizer v({100, 1, true});
  v.fit({"red red apple", "green apple"});
  // Vocabulary: apple, green, red, "red red", "red apple", "green apple".
  EXPECT_EQ(v.vocabulary_size(), 6u);
  ASSERT_GE(v.column("apple"), 0);
  ASSERT_GE(v.column("red apple"), 0);
  EXPECT_EQ(v.column("banana"), -1);
  EXPECT_DOUBLE_EQ(v.idf(static_cast<std::size_t>(v.column("apple"))), 1.0);  // in both docs
  const double idf1 = std::log(3.0 / 2.0) + 1.0;  // in one doc
  const auto m = v.transform({"red red apple"});
  ASSERT_EQ(m.rows, 1u);
  double red = 0, apple = 0, norm = 0;
  for (std::size_t p = m.indptr[0]; p < m.indptr[1]; ++p) {
    norm += double(m.values[p]) * m.values[p];
    if (m.indices[p] == static_cast<uint32_t>(v.column("red"))) red = m.values[p];
    if (m.indices[p] == static_cast<uint32_t>(v.column("apple"))) apple = m.values[p];
  }
  EXPECT_NEAR(norm, 1.0, 1e-6);
  // Sublinear tf: "red" twice weighs (1 + ln 2)·idf against apple's 1·1.
  EXPECT_NEAR(red / apple, (1.0 + std::log(2.0)) * idf1, 1e-5);
}

// The spec table's quantities, as curate writes them: weight in pounds whatever the unit, the
// volume of the dimensions in cubic inches, a pack's count; 0 with a 0 flag when not stated.
TEST(EvalFeatures, SpecQuantitiesReadWeightVolumeAndCount) {
  SimpleFeatures f;
  f.fit({});
  const auto names = f.names();
  const auto at = [&](const std::vector<double>& row, const std::string& name) {
    const auto it = std::find(names.begin(), names.end(), name);
    EXPECT_NE(it, names.end()) << name;
    return row[static_cast<std::size_t>(it - names.begin())];
  };
  Item a;
  a.text = "Drill\nItem Weight: 32 Ounces\nProduct Dimensions: 10 x 2 x 5 inches\nPack of 3 bits";
  const auto ra = f.row(a);
  ASSERT_EQ(ra.size(), f.size());
  EXPECT_DOUBLE_EQ(at(ra, "has_weight"), 1.0);
  EXPECT_NEAR(at(ra, "log_pounds"), std::log1p(2.0), 1e-12);
  EXPECT_NEAR(at(ra, "log_volume"), std::log1p(100.0), 1e-12);
  EXPECT_NEAR(at(ra, "log_count"), std::log1p(3.0), 1e-12);
  Item b;
  b.text = "Package Dimensions: 25.4 x 2.54 x 10 cm; Weight: 2 kg, 12-Pack";
  const auto rb = f.row(b);
  EXPECT_NEAR(at(rb, "log_pounds"), std::log1p(4.4092), 1e-9);
  EXPECT_NEAR(at(rb, "log_volume"), std::log1p(10.0 * 1.0 * 10.0 / 2.54), 1e-9);
  EXPECT_NEAR(at(rb, "log_count"), std::log1p(12.0), 1e-12);
  Item c;
  c.text = "A plain description with 42 words and no spec table";
  const auto rc = f.row(c);
  for (const char* name : {"log_pounds", "has_weight", "log_volume", "has_volume", "log_count", "has_count"})
    EXPECT_DOUBLE_EQ(at(rc, name), 0.0) << name;
  // What is not a stated quantity: a unit glued to more word, a number past its digit bound, a
  // colon beyond the line; a later statement that does read is taken.
  const auto spec = [](const std::string& text) { return spec_quantities(text); };
  EXPECT_EQ(spec("Weight: 3 lbs2")[1], 0.0);
  EXPECT_EQ(spec("Weight: 1234567890 pounds")[1], 0.0);
  EXPECT_EQ(spec("Weight:          3 pounds")[1], 0.0) << "nine spaces";
  EXPECT_NEAR(spec("weight: 3 gr; Weight: 16 oz")[0], std::log1p(1.0), 1e-12);
  EXPECT_EQ(spec("Dimensions\n: 1 x 2 x 3")[3], 0.0);
  EXPECT_NEAR(spec("Dimensions: 1 x 2 x 3      cm")[2], std::log1p(6.0), 1e-12) << "the unit too far: inches";
  EXPECT_EQ(spec("a 12345-pack")[5], 0.0);
  EXPECT_NEAR(spec("2 packs, then a 6 Count box")[4], std::log1p(6.0), 1e-12);
  EXPECT_EQ(spec(std::string(1 << 20, '9') + " pounds weight: " + std::string(1 << 20, ' '))[1], 0.0);
}

TEST(EvalBaselines, MeanAndRandom) {
  std::vector<Item> train(4);
  const double prices[] = {10, 20, 30, 100};
  for (int i = 0; i < 4; ++i) train[i].price = prices[i];
  std::vector<Item> test(500);
  MeanPricer mean;
  EXPECT_TRUE(mean.needs_training());
  mean.fit(train);
  for (double p : mean.predict(test)) EXPECT_DOUBLE_EQ(p, 40.0);
  RandomPricer r1(5), r2(5), r3(6);
  r1.fit(train);
  r2.fit(train);
  r3.fit(train);
  const auto a = r1.predict(test), b = r2.predict(test), c = r3.predict(test);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  double s = 0;
  for (double p : a) {
    EXPECT_GE(p, 10.0);
    EXPECT_LE(p, 100.0);
    s += p;
  }
  EXPECT_NEAR(s / 500.0, 55.0, 5.0);
  EXPECT_THROW(mean.fit({}), pricer::Error);
}

TEST(EvalBaselines, LinearRecoversPlantedRelationship) {
  std::mt19937 rng(1);
  const auto train = linear_world(rng, 400), test = linear_world(rng, 100);
  LinearPricer lin;
  lin.fit(train);
  const auto pred = lin.predict(test);
  EXPECT_LT(mae(test, pred), 0.05);
  const auto w = lin.stats()["weights"];
  EXPECT_NEAR(w["words"].get<double>(), 2.0, 0.01);
  // One-hot columns are collinear with the intercept; their differences are identified.
  EXPECT_NEAR(w["cat:B"].get<double>() - w["cat:A"].get<double>(), 30.0, 0.05);
  EXPECT_NEAR(w["cat:A"].get<double>() - w["cat:C"].get<double>(), 30.0, 0.05);
}

TEST(EvalBaselines, TfidfRidgeLearnsWordPricesAndBeatsTheMean) {
  std::mt19937 rng(2);
  WordWorld world(rng);
  const auto train = world.sample(rng, 800), test = world.sample(rng, 200);
  MeanPricer mean;
  mean.fit(train);
  TfidfRidgePricer ridge;
  ridge.fit(train);
  const double mean_mae = mae(test, mean.predict(test));
  const double ridge_mae = mae(test, ridge.predict(test));
  EXPECT_LT(ridge_mae, 0.5 * mean_mae) << "ridge " << ridge_mae << " mean " << mean_mae;
  // The planted weights come back in order: the priciest word beats the cheapest alone.
  std::size_t hi = 0, lo = 0;
  for (std::size_t j = 0; j < world.words.size(); ++j) {
    if (world.weights[j] > world.weights[hi]) hi = j;
    if (world.weights[j] < world.weights[lo]) lo = j;
  }
  Item a, b;
  a.text = "product listing " + world.words[hi] + " filler";
  b.text = "product listing " + world.words[lo] + " filler";
  const auto p = ridge.predict({a, b});
  EXPECT_GT(p[0], p[1]);
}

TEST(EvalBaselines, ComparablesPriceAtTheMedianOfTheMostSimilarItems) {
  const auto item = [](std::string text, double price) {
    Item it;
    it.text = std::move(text);
    it.price = price;
    return it;
  };
  const std::vector<Item> train = {item("oak dining table", 300),       item("oak dining table set", 500),
                                   item("oak dining table large", 400), item("usb cable", 5),
                                   item("usb cable braided", 9),        item("usb cable short", 7)};
  ComparablesPricer knn(3);
  knn.fit(train);
  const auto p =
      knn.predict({item("oak dining table for six", 0), item("braided usb cable", 0), item("garden gnome", 0)});
  EXPECT_EQ(p[0], 400);  // median of 300, 500, 400
  EXPECT_EQ(p[1], 7);  // median of 9, 5, 7
  EXPECT_EQ(p[2], 0.5 * (9 + 300)) << "an item sharing no word gets the training median";
  EXPECT_EQ(knn.stats()["without_comparables"], 1);
  // On a world where words set prices, retrieval beats the mean.
  std::mt19937 rng(3);
  WordWorld world(rng);
  const auto big = world.sample(rng, 800), test = world.sample(rng, 200);
  MeanPricer mean;
  mean.fit(big);
  ComparablesPricer five;
  five.fit(big);
  EXPECT_LT(mae(test, five.predict(test)), 0.8 * mae(test, mean.predict(test)));
}

TEST(EvalBaselines, XgboostBeatsTheMean) {
#ifdef PRICER_HAVE_XGBOOST
  std::mt19937 rng(4);
  WordWorld world(rng);
  const auto train = world.sample(rng, 600), test = world.sample(rng, 150);
  MeanPricer mean;
  mean.fit(train);
  XgboostOptions o;
  o.rounds = 40;
  o.tfidf_terms = 60;
  o.threads = 1;  // small data: threads would only wait on each other
  XgboostPricer xgb(o);
  xgb.fit(train);
  const auto a = xgb.predict(test);
  EXPECT_LT(mae(test, a), 0.7 * mae(test, mean.predict(test)));
  // Seeded: a second fit predicts the same.
  XgboostPricer again(o);
  again.fit(train);
  EXPECT_EQ(a, again.predict(test));
#else
  GTEST_SKIP() << "built without libxgboost";
#endif
}

TEST(EvalBaselines, SharedAmazonPricesMatchTheKnownBar) {
  const std::filesystem::path dir = std::filesystem::path(PRICER_SHARED_DIR) / "data/amazon-prices";
  if (!std::filesystem::is_directory(dir))
    GTEST_SKIP() << "shared data not present at " << dir << "; skipping the real-data check";
  const auto train = read_split(dir, "train");
  const auto val = read_split(dir, "val");
  ASSERT_GT(train.size(), 10000u);
  ASSERT_EQ(val.size(), 1000u);
  MeanPricer mean;
  TfidfRidgePricer ridge;
  const auto rm = evaluate_pricer(mean, train, val);
  const auto rr = evaluate_pricer(ridge, train, val);
  // The published bar: constant mean ≈ $108, TF-IDF ridge on log price ≈ $61.
  EXPECT_NEAR(rm.metrics.mae, 108.0, 6.0);
  EXPECT_NEAR(rr.metrics.mae, 61.0, 6.0);
}

TEST(EvalLeaderboard, ColumnsStayAlignedWithLongNames) {
  std::vector<Item> train(4), test(20);
  const double prices[] = {10, 20, 30, 100};
  for (int i = 0; i < 4; ++i) train[i].price = prices[i];
  for (int i = 0; i < 20; ++i) test[i].price = 5.0 * (i + 1);
  MeanPricer mean;
  RandomPricer random(3);
  std::vector<PricerResult> results = {evaluate_pricer(mean, train, test), evaluate_pricer(random, train, test)};
  results[0].name = "a-very-long-pricer-name-indeed";
  results[1].name = "short";
  sort_by_mae(results);
  const std::string text = leaderboard_text(results);
  // Every line puts the MAE column at the same place: the header's "MAE $" ends where each
  // row's MAE number ends.
  std::vector<std::string> lines;
  for (std::size_t at = 0, nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1)
    lines.push_back(text.substr(at, nl - at));
  ASSERT_EQ(lines.size(), 3u);
  const std::size_t mae_end = lines[0].find("MAE $") + 5;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const double mae = results[i - 1].metrics.mae;
    char number[32];
    std::snprintf(number, sizeof number, "%.2f", mae);
    const std::size_t at = lines[i].find(std::string(" ") + number + " ");
    ASSERT_NE(at, std::string::npos) << lines[i];
    EXPECT_EQ(at + 1 + std::strlen(number), mae_end) << lines[i];
    EXPECT_EQ(lines[i].size(), lines[0].size()) << lines[i];
  }
}
