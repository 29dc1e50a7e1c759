// `pricer curate` end to end through the CLI binary, and on the curated Amazon prices data in
// ../shared when it is present.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "cli_test_util.h"
#include "data/curate.h"
#include "data/curate/curate_test_util.h"

using namespace curate_test;
using nlohmann::json;

namespace {

int run_cli(const std::string& args, std::string* output = nullptr) {
  const pricer::cli_test::CliRun r = pricer::cli_test::run_cli(args);
  if (output) *output = r.out;
  return r.rc;
}

}  // namespace

TEST(CurateCli, SyntheticCatalogEndToEnd) {
  TempDir dir;
  const std::string out = dir / "ds";
  std::string log;
  ASSERT_EQ(run_cli("-t 2 curate --synthetic 400 --seed 3 -o " + out + " --train 200 --val 20 --test 30", &log), 0)
      << log;
  EXPECT_NE(log.find("train 200, val 20, test 30"), std::string::npos) << log;
  EXPECT_EQ(read_jsonl(out + "/train.jsonl").size(), 200u);
  EXPECT_EQ(read_jsonl(out + "/val.jsonl").size(), 20u);
  auto test = read_jsonl(out + "/test.jsonl");
  ASSERT_EQ(test.size(), 30u);
  for (auto& j : test) {
    EXPECT_TRUE(j["prompt"].get<std::string>().ends_with("Price is $"));
    EXPECT_TRUE(j.contains("price") && j.contains("category") && j.contains("title"));
  }
  json st = json::parse(read_file(out + "/stats.json"));
  EXPECT_EQ(st["counts"]["lines"], 400);
  EXPECT_EQ(st["counts"]["train"], 200);
  for (const char* f : {"synthetic_catalog.jsonl", "price_hist.svg", "token_length_hist.svg", "category_mix.svg"})
    EXPECT_TRUE(std::filesystem::exists(out + "/" + f)) << f;
  // Same seed, same dataset.
  ASSERT_EQ(run_cli("-t 1 curate -q --synthetic 400 --seed 3 -o " + dir / "ds2" + " --train 200 --val 20 --test 30"),
            0);
  EXPECT_EQ(read_file(out + "/train.jsonl"), read_file(dir / "ds2/train.jsonl"));
}

TEST(CurateCli, FlagsReachTheRules) {
  TempDir dir;
  std::string log;
  ASSERT_EQ(run_cli("curate -q --synthetic 100 -o " + dir / "ds" +
                        " --max-price 50 --token-budget 40 --prompt-template 'Q: {text}\\nA: $'"
                        " --category-weight Books=0",
                    &log),
            0)
      << log;
  json st = json::parse(read_file(dir / "ds/stats.json"));
  EXPECT_EQ(st["rules"]["max_price"], 50.0);
  EXPECT_EQ(st["budget"]["word_budget"], 30);
  for (const char* split : {"train", "val", "test"})
    for (auto& j : read_jsonl(dir / "ds/" + std::string(split) + ".jsonl")) {
      EXPECT_LE(j["price"].get<double>(), 50.0);
      EXPECT_NE(j["category"], "Books");
      const std::string p = j["prompt"];
      EXPECT_EQ(p.rfind("Q: ", 0), 0u);
      EXPECT_TRUE(p.ends_with("\nA: $")) << p;
    }
}

TEST(CurateCli, ErrorsExitNonZeroWithAMessage) {
  TempDir dir;
  std::string log;
  EXPECT_EQ(run_cli("curate -o " + dir / "ds" + " " + dir / "nope.jsonl", &log), 1);
  EXPECT_NE(log.find("nope.jsonl"), std::string::npos) << log;
  EXPECT_EQ(run_cli("curate -o " + dir / "ds" + " --synthetic 10 --train ten", &log), 1);
  EXPECT_NE(log.find("--train"), std::string::npos) << log;
  const std::string bad = std::string(PRICER_SOURCE_DIR) + "/tests/data/curate/meta_Toys_and_Games.jsonl";
  EXPECT_EQ(run_cli("curate --strict -o " + dir / "ds" + " " + bad, &log), 1);
  EXPECT_NE(log.find("meta_Toys_and_Games.jsonl:3"), std::string::npos) << log;
}

TEST(CurateCli, CuratedAmazonPrices) {
  const std::string val = std::string(PRICER_SHARED_DIR) + "/data/amazon-prices/val.jsonl";
  if (!std::filesystem::exists(val)) GTEST_SKIP() << "shared data not found at " << val << " (../shared is optional)";
  TempDir dir;
  pricer::data::CurateOptions o;
  o.inputs = {val};
  o.out_dir = dir / "ds";
  o.progress = false;
  o.train = {1.0, true};
  o.val = o.test = {0, true};
  pricer::data::CurateResult r = pricer::data::curate(o);
  const auto& c = r.stats["counts"];
  EXPECT_EQ(c["lines"], 1000);
  const uint64_t accepted = c["accepted"];
  // Curated items were already filtered; most survive, the shortest texts (< 600 chars) do not.
  EXPECT_GT(accepted, 700u);
  EXPECT_LT(accepted, 1000u);
  EXPECT_EQ(accepted + c["rejected"].get<uint64_t>(), 1000u);
  EXPECT_FALSE(r.stats["rejections"].contains("malformed_json"));
  auto recs = read_jsonl(dir / "ds/train.jsonl");
  EXPECT_EQ(recs.size(), accepted);
  size_t unknown = 0;
  for (auto& j : recs) {
    const double p = j["price"];
    EXPECT_GE(p, 0.5);
    EXPECT_LE(p, 999.49);
    unknown += j["category"] == "Unknown";
  }
  EXPECT_GT(unknown, 0u) << "items with a null category are kept as Unknown";
  EXPECT_LT(unknown, accepted / 2);
}
