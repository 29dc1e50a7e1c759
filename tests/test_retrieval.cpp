// Comparables retrieval: the inverted-index search against a plain dense cosine over every item,
// an item never its own comparable, the line and where it goes in a prompt, the index file's round
// trip and its refusal of damaged files; and training data built with comparables.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <set>

#include "core/error.h"
#include "io/gguf.h"
#include "retrieval/comparables.h"
#include "train/training_data.h"
#include "train_test_util.h"

namespace pricer {
namespace {

using retrieval::Comparable;
using retrieval::ComparablesIndex;
using namespace train_test;

// Random product-like texts over a small vocabulary, so most pairs share some words and ties occur.
std::vector<std::string> random_docs(std::size_t n, uint32_t seed) {
  static const char* words[] = {"steel", "knife", "chef", "wireless", "earbuds", "bluetooth", "garden", "hose",
                                "pack",  "set",   "red",  "blue",     "large",   "mini",      "pro",    "kit"};
  std::mt19937 rng(seed);
  std::vector<std::string> docs;
  for (std::size_t i = 0; i < n; ++i) {
    std::string d;
    const int len = 1 + static_cast<int>(rng() % 7);
    for (int w = 0; w < len; ++w) d += std::string(w ? " " : "") + words[rng() % std::size(words)];
    docs.push_back(d);
  }
  return docs;
}

// The scalar twin of ComparablesIndex::nearest: cosine of dense TF-IDF rows against every item.
std::vector<Comparable> brute_force_nearest(const std::vector<std::string>& docs, const std::vector<double>& prices,
                                            const std::string& query, int k, int64_t exclude) {
  retrieval::TfidfVectorizer v({1u << 22, 2, true});
  v.fit(docs);
  const SparseMatrix m = v.transform(docs), q = v.transform({query});
  std::vector<float> dense_q(v.vocabulary_size(), 0.0f);
  for (std::size_t p = 0; p < q.indices.size(); ++p) dense_q[q.indices[p]] = q.values[p];
  std::vector<Comparable> all;
  for (std::size_t r = 0; r < docs.size(); ++r) {
    double s = 0;
    for (std::size_t p = m.indptr[r]; p < m.indptr[r + 1]; ++p) s += dense_q[m.indices[p]] * m.values[p];
    if (s > 0 && static_cast<int64_t>(r) != exclude)
      all.push_back({static_cast<uint32_t>(r), static_cast<float>(s), prices[r]});
  }
  std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.similarity > b.similarity; });
  all.resize(std::min<std::size_t>(all.size(), static_cast<std::size_t>(k)));
  return all;
}

TEST(Comparables, NearestMatchesADenseCosineOverEveryItem) {
  const auto docs = random_docs(300, 5);
  std::vector<double> prices;
  for (std::size_t i = 0; i < docs.size(); ++i) prices.push_back(1.0 + static_cast<double>(i));
  const ComparablesIndex index(docs, prices, 5);
  const auto queries = random_docs(40, 9);
  for (std::size_t qi = 0; qi < queries.size(); ++qi) {
    const int64_t exclude = qi % 2 ? static_cast<int64_t>(qi) : -1;
    const std::string& q = qi % 2 ? docs[qi] : queries[qi];
    const auto got = index.nearest(q, exclude);
    const auto want = brute_force_nearest(docs, prices, q, 5, exclude);
    ASSERT_EQ(got.size(), want.size()) << q;
    for (std::size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(got[i].similarity, want[i].similarity, 1e-5) << q << " rank " << i;
      // Equal similarities may come in either order from the two sums; the prices must agree.
      if (std::abs(got[i].similarity - want[i].similarity) > 1e-5) continue;
      EXPECT_EQ(got[i].price, prices[got[i].item]);
      EXPECT_NE(static_cast<int64_t>(got[i].item), exclude) << "an item was its own comparable";
    }
  }
}

TEST(Comparables, AnItemSharingNoWordHasNoComparablesAndFewerThanKAreFine) {
  const std::vector<std::string> docs = {"stainless steel chef knife", "stainless steel paring knife",
                                         "wireless bluetooth headphones", "wireless bluetooth earbuds",
                                         "garden hose fifty feet"};
  const ComparablesIndex index(docs, {40, 20, 90, 50, 30}, 3);
  EXPECT_TRUE(index.nearest("cast iron skillet").empty());
  const auto knife = index.nearest(docs[0], 0);
  ASSERT_EQ(knife.size(), 1u);  // only the paring knife shares a word with the chef knife
  EXPECT_EQ(knife[0].item, 1u);
  EXPECT_EQ(retrieval::comparables_line(index.nearest("bluetooth headphones")), "Similar items sold for: $90, $50");
}

TEST(Comparables, TheLineGoesJustBeforeTheAnswerCue) {
  using retrieval::insert_comparables;
  const std::string line = "Similar items sold for: $5";
  EXPECT_EQ(insert_comparables("Price this\n\nA lamp\n\nPrice is $", line),
            "Price this\n\nA lamp\n\nSimilar items sold for: $5\n\nPrice is $");
  EXPECT_EQ(insert_comparables("A lamp\nPrice is $", line), "A lamp\nSimilar items sold for: $5\nPrice is $");
  EXPECT_EQ(insert_comparables("A lamp, price: $", line), "Similar items sold for: $5\nA lamp, price: $");
  EXPECT_EQ(insert_comparables("A lamp\n\nPrice is $", ""), "A lamp\n\nPrice is $");
  // Whole dollars, half away from zero, most similar first.
  EXPECT_EQ(retrieval::comparables_line({{0, 0.9f, 99.95}, {1, 0.5f, 12.5}, {2, 0.1f, 0.49}}),
            "Similar items sold for: $100, $13, $0");
}

TEST(Comparables, TheIndexFileRoundTripsAndAnswersAlike) {
  ScratchDir dir;
  const auto docs = random_docs(120, 3);
  std::vector<double> prices;
  for (std::size_t i = 0; i < docs.size(); ++i) prices.push_back(0.5 + 7.25 * static_cast<double>(i));
  const ComparablesIndex index(docs, prices, 4);
  const std::string path = (dir.path() / "comparables.gguf").string();
  index.save(path);
  const ComparablesIndex back = ComparablesIndex::load(path);
  EXPECT_EQ(back.k(), 4);
  EXPECT_EQ(back.size(), docs.size());
  for (const auto& q : random_docs(30, 11)) {
    const auto a = index.nearest(q), b = back.nearest(q);
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].item, b[i].item);
      EXPECT_EQ(a[i].similarity, b[i].similarity);
      EXPECT_EQ(a[i].price, b[i].price);
    }
  }
}

// Rewrites one tensor of a saved index (or its k) and expects load to refuse, naming the file.
void expect_refused(const std::string& good, const std::string& bad, const std::string& tensor,
                    const std::function<void(std::vector<uint8_t>&)>& damage, const std::string& what) {
  const GgufFile f = GgufFile::open(good);
  GgufWriter w;
  for (const auto& kv : f.metadata()) w.add(kv.key, kv.value);
  for (const auto& t : f.tensors()) {
    const auto d = f.tensor_data(t);
    std::vector<uint8_t> bytes(d.begin(), d.end());
    if (t.name == tensor) damage(bytes);
    w.add_tensor(t.name, t.ne, t.type, bytes);
  }
  w.write(bad);
  try {
    ComparablesIndex::load(bad);
    ADD_FAILURE() << "a comparables index with " << what << " was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

TEST(Comparables, DamagedIndexFilesAreRefusedNamingTheFile) {
  ScratchDir dir;
  const auto docs = random_docs(50, 4);
  const std::string good = (dir.path() / "good.gguf").string(), bad = (dir.path() / "bad.gguf").string();
  ComparablesIndex(docs, std::vector<double>(docs.size(), 10.0), 3).save(good);
  const auto set_i32 = [](int32_t v) { return [v](std::vector<uint8_t>& b) { std::memcpy(b.data(), &v, 4); }; };
  const auto set_f64 = [](double v) { return [v](std::vector<uint8_t>& b) { std::memcpy(b.data(), &v, 8); }; };
  expect_refused(good, bad, "postings.item", set_i32(1000), "names item 1000");
  expect_refused(good, bad, "postings.item", set_i32(-1), "names item -1");
  expect_refused(good, bad, "items.price", set_f64(-3.0), "bad price");
  expect_refused(good, bad, "items.price", set_f64(std::numeric_limits<double>::quiet_NaN()), "bad price");
  expect_refused(good, bad, "terms.idf", set_f64(std::numeric_limits<double>::infinity()), "idf");
  expect_refused(
      good, bad, "postings.offset", [](std::vector<uint8_t>& b) { std::memset(b.data() + 8, 0xff, 8); }, "offsets");
  // Another GGUF (a model) is not an index.
  write_tiny_model((dir.path() / "model.gguf").string(), 3);
  EXPECT_THROW(ComparablesIndex::load((dir.path() / "model.gguf").string()), Error);
  // k out of range and bad prices are refused when building, too.
  EXPECT_THROW(ComparablesIndex(docs, std::vector<double>(docs.size(), 10.0), 0), Error);
  EXPECT_THROW(ComparablesIndex(docs, std::vector<double>(docs.size(), 0.0), 3), Error);
}

TEST(Comparables, TrainingPromptsHoldTheirNeighboursPricesNeverTheirOwn) {
  ScratchDir dir;
  // Pairs of near-identical items with distinct prices: each one's nearest is its twin.
  std::vector<PricePrompt> train;
  const char* kinds[] = {"oak dining table", "wool winter coat", "steel claw hammer", "glass water bottle"};
  for (int i = 0; i < 4; ++i)
    for (int twin = 0; twin < 2; ++twin) {
      const int price = 10 * (2 * i + twin) + 7;
      train.push_back({std::string(kinds[i]) + " model " + std::to_string(twin) + "\n\nPrice is $",
                       std::to_string(price) + ".00", static_cast<double>(price)});
    }
  fs::create_directories(dir.path() / "data");
  write_price_jsonl((dir.path() / "data/train.jsonl").string(), train);
  write_price_jsonl((dir.path() / "data/val.jsonl").string(), {{"oak dining table\n\nPrice is $", "20.00", 20}});
  TrainConfig cfg;
  cfg.dataset = (dir.path() / "data").string();
  cfg.comparables = 1;
  const Tokenizer& tok = tiny_tokenizer();
  const TrainingData d = load_training_data(cfg, "", tok, tok.vocab_size());
  ASSERT_EQ(d.train.size(), 8u);
  ASSERT_TRUE(d.comparables);
  const auto prompt_of = [&](const PricedExample& ex) {
    return tok.decode(std::vector<int32_t>(ex.tokens.begin() + (tok.bos_id() >= 0), ex.tokens.begin() + ex.prompt_len));
  };
  for (int i = 0; i < 8; ++i) {
    const int twin_price = 10 * (i ^ 1) + 7;
    EXPECT_NE(
        prompt_of(d.train[i]).find("\n\nSimilar items sold for: $" + std::to_string(twin_price) + "\n\nPrice is $"),
        std::string::npos)
        << prompt_of(d.train[i]);
  }
  // A validation item sees the training items: both oak tables tie, the first row first.
  ASSERT_EQ(d.val.size(), 1u);
  EXPECT_NE(prompt_of(d.val[0]).find("Similar items sold for: $7\n"), std::string::npos) << prompt_of(d.val[0]);
  // Without comparables the prompts are the curated ones.
  cfg.comparables = 0;
  const TrainingData plain = load_training_data(cfg, "", tok, tok.vocab_size());
  EXPECT_FALSE(plain.comparables);
  EXPECT_EQ(prompt_of(plain.train[0]), train[0].prompt);
}

// Cross-fitting leaves one fold out of everything the run learns from: its items are neither
// trained on nor anyone's comparables, every item is left out by exactly one fold, and a fold that
// holds none or all of the items is refused.
TEST(CrossFitting, AFoldLeftOutIsNeitherTrainedOnNorAComparable) {
  ScratchDir dir;
  std::vector<PricePrompt> train;
  for (int i = 0; i < 40; ++i)  // distinct whole prices, so a comparables line names its items
    train.push_back({"steel bolt number " + std::to_string(i) + " of a box\n\nPrice is $",
                     std::to_string(100 + i) + ".00", 100.0 + i});
  fs::create_directories(dir.path() / "data");
  write_price_jsonl((dir.path() / "data/train.jsonl").string(), train);
  TrainConfig cfg;
  cfg.dataset = (dir.path() / "data").string();
  cfg.comparables = 3;
  cfg.cross_fit_folds = 4;
  const Tokenizer& tok = tiny_tokenizer();
  const auto prompt_of = [&](const PricedExample& ex) {
    return tok.decode(std::vector<int32_t>(ex.tokens.begin() + (tok.bos_id() >= 0), ex.tokens.begin() + ex.prompt_len));
  };
  std::vector<int> times_left_out(train.size(), 0);
  for (int fold = 0; fold < 4; ++fold) {
    cfg.cross_fit_fold = fold;
    const TrainingData d = load_training_data(cfg, "", tok, tok.vocab_size());
    ASSERT_TRUE(d.comparables);
    EXPECT_EQ(d.comparables->size(), d.train.size()) << "the index holds the kept items only";
    std::set<double> kept_prices;
    for (const auto& ex : d.train) kept_prices.insert(ex.price);
    EXPECT_EQ(kept_prices.size(), d.train.size());
    EXPECT_GT(d.train.size(), 20u) << "fold " << fold << " is a fair share, not most of the items";
    EXPECT_LT(d.train.size(), 40u);
    for (size_t i = 0; i < train.size(); ++i) times_left_out[i] += kept_prices.contains(train[i].price) ? 0 : 1;
    for (const auto& ex : d.train) {
      const std::string p = prompt_of(ex);
      for (size_t i = 0; i < train.size(); ++i) {
        if (!kept_prices.contains(train[i].price)) {
          EXPECT_EQ(p.find("$" + std::to_string(100 + i)), std::string::npos) << "fold " << fold << ": " << p;
        }
      }
    }
  }
  for (size_t i = 0; i < train.size(); ++i) EXPECT_EQ(times_left_out[i], 1) << "item " << i;
  // One item in two folds: one fold holds all of it, the other none; both are refused.
  write_price_jsonl((dir.path() / "data/train.jsonl").string(), {train[0]});
  cfg.cross_fit_folds = 2;
  for (int fold = 0; fold < 2; ++fold) {
    cfg.cross_fit_fold = fold;
    EXPECT_THROW(load_training_data(cfg, "", tok, tok.vocab_size()), Error);
  }
  cfg.cross_fit_fold = 2;
  EXPECT_THROW(cfg.validate(), Error);
  cfg.cross_fit_folds = 1;
  cfg.cross_fit_fold = 0;
  EXPECT_THROW(cfg.validate(), Error);
}

}  // namespace
}  // namespace pricer
