// The curation pipeline on small files: dedup, bad-input accounting with file:line, --strict,
// split sizes, determinism across thread counts and chunkings, sampling balance, templates,
// gzip input and tokenized shards.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <numeric>
#include <set>
#include <string>

#include "core/error.h"
#include "data/curate.h"
#include "data/curate/curate_test_util.h"
#include "data/shard.h"

using namespace pricer::data;
using namespace curate_test;
using nlohmann::json;

namespace {

const std::string kToys = std::string(PRICER_SOURCE_DIR) + "/tests/data/curate/meta_Toys_and_Games.jsonl";

CurateOptions base(const TempDir& dir, std::vector<std::string> inputs) {
  CurateOptions o;
  o.inputs = std::move(inputs);
  o.out_dir = dir / "out";
  o.progress = false;
  o.threads = 2;
  return o;
}

// n raw records with prices spread over [1, 500] (log-uniform), in 3 categories.
std::string make_catalog(const TempDir& dir, const std::string& name, int n, uint64_t seed = 1) {
  std::string s;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, std::log(500.0));
  const char* cats[] = {"Automotive", "Books", "Toys"};
  for (int i = 0; i < n; ++i) {
    json j = raw_record(std::string("n").append(std::to_string(i)), std::round(std::exp(u(rng)) * 100) / 100);
    j["main_category"] = cats[i % 3];
    s += j.dump() + "\n";
  }
  write_file(dir / name, s);
  return dir / name;
}

uint64_t rejected(const CurateResult& r, const std::string& reason) {
  auto& rj = r.stats["rejections"];
  return rj.contains(reason) ? rj[reason]["count"].get<uint64_t>() : 0;
}

}  // namespace

TEST(CuratePipeline, BadInputIsCountedWithFileAndLine) {
  TempDir dir;
  CurateOptions o = base(dir, {kToys});
  o.train = {1.0, true};
  o.val = o.test = {0, true};
  CurateResult r = curate(o);
  const auto& c = r.stats["counts"];
  EXPECT_EQ(c["lines"], 10);
  EXPECT_EQ(c["blank_lines"], 1);
  EXPECT_EQ(c["accepted"], 3);  // lines 1, 6 and 10
  EXPECT_EQ(rejected(r, "malformed_json"), 1u);  // line 3
  EXPECT_EQ(rejected(r, "wrong_type"), 2u);  // line 4 (numeric title), line 9 (an array)
  auto ex = r.stats["rejections"]["malformed_json"]["examples"];
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0].get<std::string>().rfind(kToys + ":3: ", 0), 0u) << ex[0];
  auto wt = r.stats["rejections"]["wrong_type"]["examples"];
  ASSERT_EQ(wt.size(), 2u);
  EXPECT_EQ(wt[0].get<std::string>().rfind(kToys + ":4: ", 0), 0u) << wt[0];
  EXPECT_EQ(wt[1].get<std::string>().rfind(kToys + ":9: ", 0), 0u) << wt[1];
  EXPECT_EQ(r.stats["rejections"]["invalid_utf8"]["examples"][0].get<std::string>().rfind(kToys + ":5: ", 0), 0u);
  EXPECT_EQ(r.stats["rejections"]["no_price"]["examples"][0].get<std::string>().rfind(kToys + ":7: ", 0), 0u);
  EXPECT_EQ(r.stats["rejections"]["duplicate_title"]["examples"][0].get<std::string>().rfind(kToys + ":8: ", 0), 0u);
  auto train = read_jsonl(dir / "out/train.jsonl");
  ASSERT_EQ(train.size(), 3u);
  std::set<std::string> titles;
  for (auto& j : train) {
    titles.insert(j["title"]);
    EXPECT_EQ(j["category"], "Toys and Games");  // from the file name
    if (j["title"] == "Glow in the Dark Star Projector for Kids") {
      EXPECT_EQ(j["price"].get<double>(), 24.99);  // "$24.99" read exactly
      EXPECT_EQ(j["completion"], "25.00");
    }
  }
  EXPECT_TRUE(titles.count("Classic Wooden Train Set, 40 Pieces"));
  EXPECT_TRUE(titles.count("Glow in the Dark Star Projector for Kids"));
  EXPECT_TRUE(titles.count("Giant Floor Puzzle of the World Map"));
  // Every line is accounted for exactly once.
  uint64_t total = c["accepted"].get<uint64_t>() + c["rejected"].get<uint64_t>() + c["blank_lines"].get<uint64_t>();
  EXPECT_EQ(total, 10u);
}

TEST(CuratePipeline, StrictStopsAtTheFirstBadLine) {
  TempDir dir;
  CurateOptions o = base(dir, {kToys});
  o.strict = true;
  try {
    curate(o);
    FAIL() << "expected an error";
  } catch (const pricer::Error& e) {
    EXPECT_NE(std::string(e.what()).find(kToys + ":3: malformed_json"), std::string::npos) << e.what();
  }
}

TEST(CuratePipeline, OverlongLinesAreSkippedAndNothingValidIsLost) {
  TempDir dir;
  std::string s = raw_record("a", 10).dump() + "\n";
  json big = raw_record("big", 10);
  big["description"] = {std::string(50000, 'x')};
  s += big.dump() + "\n" + raw_record("b", 20).dump() + "\n" + big.dump();  // no final newline
  write_file(dir / "in.jsonl", s);
  CurateOptions o = base(dir, {dir / "in.jsonl"});
  o.clean.max_line_bytes = 10000;
  o.chunk_bytes = 100;  // several chunks, over-long lines spanning reads
  CurateResult r = curate(o);
  EXPECT_EQ(r.stats["counts"]["accepted"], 2);
  EXPECT_EQ(rejected(r, "line_too_long"), 2u);
  auto ex = r.stats["rejections"]["line_too_long"]["examples"];
  EXPECT_EQ(ex[0].get<std::string>().rfind(dir / "in.jsonl:2: ", 0), 0u) << ex[0];
  EXPECT_EQ(ex[1].get<std::string>().rfind(dir / "in.jsonl:4: ", 0), 0u) << ex[1];
}

TEST(CuratePipeline, DeduplicatesByTitleAndByText) {
  TempDir dir;
  json a = raw_record("a", 10);
  json same_title = raw_record("b", 11);
  same_title["title"] = "  STURDY item a for everyday use ";  // same title after normalising
  json b = raw_record("c", 12);
  write_file(dir / "in.jsonl", a.dump() + "\n" + same_title.dump() + "\n" + b.dump() + "\n");
  CurateOptions o = base(dir, {dir / "in.jsonl"});
  CurateResult r = curate(o);
  EXPECT_EQ(r.stats["counts"]["accepted"], 2);
  EXPECT_EQ(rejected(r, "duplicate_title"), 1u);
  // Raw records put the title into the text, so identical texts come from the curated format.
  json c1 = {{"title", "One"}, {"price", 5}, {"text", std::string(700, 'y')}};
  json c2 = {{"title", "Two"}, {"price", 6}, {"text", std::string(700, 'y')}};
  write_file(dir / "cur.jsonl", c1.dump() + "\n" + c2.dump() + "\n");
  CurateOptions o2 = base(dir, {dir / "cur.jsonl"});
  CurateResult r2 = curate(o2);
  EXPECT_EQ(r2.stats["counts"]["accepted"], 1);
  EXPECT_EQ(rejected(r2, "duplicate_text"), 1u);
  o2.dedup = false;
  EXPECT_EQ(curate(o2).stats["counts"]["accepted"], 2);
}

TEST(CuratePipeline, SplitSizesAndOutputFormat) {
  TempDir dir;
  CurateOptions o = base(dir, {make_catalog(dir, "cat.jsonl", 300)});
  o.train = {100, false};
  o.val = {20, false};
  o.test = {30, false};
  CurateResult r = curate(o);
  EXPECT_EQ(r.train, 100u);
  EXPECT_EQ(r.val, 20u);
  EXPECT_EQ(r.test, 30u);
  auto train = read_jsonl(dir / "out/train.jsonl");
  auto val = read_jsonl(dir / "out/val.jsonl");
  auto test = read_jsonl(dir / "out/test.jsonl");
  ASSERT_EQ(train.size(), 100u);
  ASSERT_EQ(val.size(), 20u);
  ASSERT_EQ(test.size(), 30u);
  std::set<std::string> seen;
  for (auto* split : {&train, &val, &test})
    for (auto& j : *split) {
      EXPECT_TRUE(seen.insert(j["title"].get<std::string>()).second) << "item in two splits";
      const std::string prompt = j["prompt"];
      EXPECT_EQ(prompt.rfind("What does this cost to the nearest dollar?\n\n", 0), 0u);
      EXPECT_TRUE(prompt.ends_with("\n\nPrice is $"));
      const double price = j["price"];
      EXPECT_EQ(j["completion"], std::to_string(std::llround(price)) + ".00");
    }
  // Fractions of everything, with a shortfall on counts.
  o.train = {0.5, true};
  o.val = {0.25, true};
  o.test = {0.25, true};
  r = curate(o);
  EXPECT_EQ(r.train + r.val + r.test, 300u);
  EXPECT_EQ(r.val, 75u);
  o.train = {1000, false};
  o.val = {10, false};
  o.test = {10, false};
  r = curate(o);
  EXPECT_EQ(r.test, 10u);
  EXPECT_EQ(r.val, 10u);
  EXPECT_EQ(r.train, 280u);
  EXPECT_EQ(r.stats["counts"]["shortfall"], 720);
}

TEST(CuratePipeline, OutputIsIdenticalForAnyThreadCountAndChunking) {
  TempDir dir;
  CurateOptions o = base(dir, {make_catalog(dir, "cat.jsonl", 400), kToys});
  o.train = {150, false};
  o.val = {25, false};
  o.test = {25, false};
  o.threads = 1;
  o.chunk_bytes = 1 << 20;
  curate(o);
  const std::string t1 = read_file(dir / "out/train.jsonl"), v1 = read_file(dir / "out/val.jsonl"),
                    s1 = read_file(dir / "out/test.jsonl");
  o.threads = 3;
  o.chunk_bytes = 3000;  // many chunks in flight
  curate(o);
  EXPECT_EQ(read_file(dir / "out/train.jsonl"), t1);
  EXPECT_EQ(read_file(dir / "out/val.jsonl"), v1);
  EXPECT_EQ(read_file(dir / "out/test.jsonl"), s1);
  // A different seed gives a different sample/split.
  o.seed = 7;
  curate(o);
  EXPECT_NE(read_file(dir / "out/train.jsonl"), t1);
}

TEST(CuratePipeline, PriceWeightsFavourPricierItems) {
  TempDir dir;
  const std::string in = make_catalog(dir, "cat.jsonl", 900);
  auto mean_price = [&](double power) {
    CurateOptions o = base(dir, {in});
    o.price_weight_power = power;
    o.train = {200, false};
    o.val = o.test = {0, false};
    curate(o);
    double s = 0;
    auto recs = read_jsonl(dir / "out/train.jsonl");
    for (auto& j : recs) s += j["price"].get<double>();
    return s / recs.size();
  };
  CurateOptions all = base(dir, {in});
  const double pool_mean = curate(all).stats["pool"]["price"]["mean"];
  const double flat = mean_price(0), squared = mean_price(2);
  EXPECT_GT(squared, flat * 1.5) << "power 2 should pull the sample towards higher prices";
  EXPECT_GT(squared, pool_mean);
  EXPECT_LT(std::abs(flat - pool_mean), pool_mean * 0.3) << "power 0 samples uniformly";
}

TEST(CuratePipeline, CategoryWeights) {
  TempDir dir;
  CurateOptions o = base(dir, {make_catalog(dir, "cat.jsonl", 300)});
  o.price_weight_power = 0;
  o.category_weights["Books"] = 0;
  o.category_weights["Toys"] = 0.2;
  o.train = {120, false};
  o.val = o.test = {0, false};
  CurateResult r = curate(o);
  std::map<std::string, int> n;
  for (auto& j : read_jsonl(dir / "out/train.jsonl")) ++n[j["category"]];
  EXPECT_EQ(n["Books"], 0);
  EXPECT_GT(n["Automotive"], 2 * n["Toys"]);
  EXPECT_EQ(r.stats["counts"]["eligible"], 200);
}

TEST(CuratePipeline, CustomTemplates) {
  TempDir dir;
  CurateOptions o = base(dir, {make_catalog(dir, "cat.jsonl", 20)});
  o.prompt_template = "[{category}] {title}: {text} =>";
  o.completion_template = " ${price}";
  curate(o);
  auto recs = read_jsonl(dir / "out/train.jsonl");
  ASSERT_FALSE(recs.empty());
  const std::string p = recs[0]["prompt"];
  const std::string head = std::string("[")
                               .append(recs[0]["category"].get<std::string>())
                               .append("] ")
                               .append(recs[0]["title"].get<std::string>())
                               .append(": ");
  EXPECT_EQ(p.rfind(head, 0), 0u);
  EXPECT_EQ(recs[0]["completion"],
            std::string(" $").append(std::to_string(std::llround(recs[0]["price"].get<double>()))));
}

TEST(CuratePipeline, GzipInputMatchesPlainInput) {
  TempDir dir;
  const std::string plain = make_catalog(dir, "meta_Books.jsonl", 120);
  const std::string content = read_file(plain);
  const std::string gz = dir / "gz/meta_Books.jsonl.gz";
  std::filesystem::create_directories(dir / "gz");
  gzFile f = gzopen(gz.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, content.data(), static_cast<unsigned>(content.size())), static_cast<int>(content.size()));
  gzclose(f);
  CurateOptions o = base(dir, {plain});
  curate(o);
  const std::string expect = read_file(dir / "out/train.jsonl");
  o.inputs = {gz};
  CurateResult r = curate(o);
  EXPECT_EQ(read_file(dir / "out/train.jsonl"), expect);
  EXPECT_EQ(r.stats["counts"]["accepted"], 120);
  // A truncated gzip file is an error naming the file, not a silent short read.
  const std::string bytes = read_file(gz);
  write_file(dir / "gz/cut.jsonl.gz", bytes.substr(0, bytes.size() / 2));
  o.inputs = {dir / "gz/cut.jsonl.gz"};
  try {
    curate(o);
    FAIL() << "expected an error";
  } catch (const pricer::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cut.jsonl.gz"), std::string::npos) << e.what();
  }
}

TEST(CuratePipeline, TokenizedShardsMatchTheJsonLines) {
  TempDir dir;
  ByteTokenizer tok;
  CurateOptions o = base(dir, {make_catalog(dir, "cat.jsonl", 60)});
  o.tokenizer = &tok;
  o.tokenizer_path = "bytes";
  o.clean.token_budget = 200;
  CurateResult r = curate(o);
  EXPECT_EQ(r.stats["budget"]["unit"], "tokens");
  for (const char* split : {"train", "val", "test"}) {
    auto recs = read_jsonl(dir / "out/" + std::string(split) + ".jsonl");
    ShardReader shard(dir / "out/" + std::string(split) + ".bin");
    ASSERT_EQ(shard.size(), recs.size()) << split;
    EXPECT_EQ(shard.vocab_size(), 258);
    for (size_t i = 0; i < recs.size(); ++i) {
      ShardRecord s = shard[i];
      std::vector<int32_t> ids(s.ids.begin(), s.ids.end());
      ASSERT_GE(ids.size(), 2u);
      EXPECT_EQ(ids.front(), 256);  // BOS
      EXPECT_EQ(ids.back(), 257);  // EOS
      std::vector<int32_t> prompt(ids.begin() + 1, ids.begin() + s.completion_start);
      std::vector<int32_t> completion(ids.begin() + s.completion_start, ids.end() - 1);
      EXPECT_EQ(tok.decode(prompt), recs[i]["prompt"].get<std::string>());
      EXPECT_EQ(tok.decode(completion), recs[i]["completion"].get<std::string>());
      EXPECT_EQ(s.price, recs[i]["price"].get<double>());
    }
  }
}

TEST(CuratePipeline, StatsAndCharts) {
  TempDir dir;
  CurateOptions o = base(dir, {make_catalog(dir, "cat.jsonl", 100)});
  CurateResult r = curate(o);
  json st = json::parse(read_file(dir / "out/stats.json"));
  EXPECT_EQ(st["budget"]["unit"], "words");
  EXPECT_NE(st["budget"]["note"].get<std::string>().find("82 words"), std::string::npos);
  EXPECT_EQ(st["splits"]["train"]["count"], r.train);
  EXPECT_EQ(st["splits"]["train"]["price"]["count"], r.train);
  EXPECT_LE(st["splits"]["train"]["price"]["min"].get<double>(),
            st["splits"]["train"]["price"]["median"].get<double>());
  EXPECT_EQ(st["splits"]["train"]["categories"].size(), 3u);
  EXPECT_LE(st["splits"]["val"]["summary_length"]["max"].get<double>(), 82);
  for (const char* chart : {"price_hist.svg", "token_length_hist.svg", "category_mix.svg"}) {
    const std::string svg = read_file(dir / "out/" + std::string(chart));
    EXPECT_EQ(svg.rfind("<svg", 0), 0u) << chart;
  }
  EXPECT_NE(read_file(dir / "out/category_mix.svg").find("Automotive"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir / "out/.curate-spill.tmp"));
}

TEST(CuratePipeline, BadOptionsAndMissingFilesAreErrors) {
  TempDir dir;
  CurateOptions o = base(dir, {dir / "missing.jsonl"});
  EXPECT_THROW(curate(o), pricer::Error);
  o = base(dir, {kToys});
  o.clean.min_price = 10;
  o.clean.max_price = 5;
  EXPECT_THROW(curate(o), pricer::Error);
  o = base(dir, {kToys});
  o.category_weights["Toys"] = -1;
  EXPECT_THROW(curate(o), pricer::Error);
}
