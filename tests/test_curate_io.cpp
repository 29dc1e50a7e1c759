// Line reader (chunking, CRLF, limits), token shards (round trip and corrupt files), and the
// synthetic catalog (determinism, the hidden price rule, curation-ready text).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <set>
#include <string>

#include "core/error.h"
#include "data/curate/curate_test_util.h"
#include "data/jsonl_reader.h"
#include "data/record.h"
#include "data/shard.h"
#include "data/synthetic.h"
#include "data/text.h"

using namespace pricer::data;
using namespace curate_test;

namespace {

std::vector<std::string> all_lines(const std::string& path, size_t max_line, size_t chunk,
                                   std::vector<uint64_t>* too_long = nullptr) {
  JsonlReader r(path, max_line, chunk);
  LineChunk c;
  std::vector<std::string> out;
  uint64_t expect_first = 1;
  while (r.next(c)) {
    EXPECT_EQ(c.first_line, expect_first);
    expect_first += c.size();
    for (size_t i = 0; i < c.size(); ++i) out.emplace_back(c.line(i));
    if (too_long) too_long->insert(too_long->end(), c.too_long.begin(), c.too_long.end());
  }
  return out;
}

void put32(std::string& s, size_t at, uint32_t v) { std::memcpy(&s[at], &v, 4); }
void put64(std::string& s, size_t at, uint64_t v) { std::memcpy(&s[at], &v, 8); }

std::string expect_shard_error(const std::string& path) {
  try {
    ShardReader r(path);
  } catch (const pricer::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for " << path;
  return "";
}

}  // namespace

TEST(CurateReader, LinesChunksAndLimits) {
  TempDir dir;
  write_file(dir / "a.jsonl", "one\r\ntwo\n\nthree-is-long\nfour");
  for (size_t chunk : {1, 3, 1000}) {
    std::vector<uint64_t> tl;
    auto lines = all_lines(dir / "a.jsonl", 8, chunk, &tl);
    ASSERT_EQ(lines.size(), 5u) << chunk;
    EXPECT_EQ(lines[0], "one");  // CR stripped
    EXPECT_EQ(lines[1], "two");
    EXPECT_EQ(lines[2], "");
    EXPECT_EQ(lines[3], "");  // over the 8-byte limit: placeholder, reported by number
    EXPECT_EQ(lines[4], "four");
    EXPECT_EQ(tl, std::vector<uint64_t>{4});
  }
  write_file(dir / "empty.jsonl", "");
  EXPECT_TRUE(all_lines(dir / "empty.jsonl", 100, 100).empty());
  EXPECT_THROW(JsonlReader(dir / "missing.jsonl", 100), pricer::Error);
}

TEST(CurateShard, RoundTrip) {
  TempDir dir;
  {
    ShardWriter w(dir / "s.bin", 100, 1, 2);
    std::vector<int32_t> a = {1, 5, 6, 7, 2}, b = {1, 9, 2};
    w.add(a, 3, 12.5);
    w.add(b, 2, 0.99);
    w.finish();
  }
  ShardReader r(dir / "s.bin");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r.total_tokens(), 8u);
  EXPECT_EQ(r.vocab_size(), 100);
  EXPECT_EQ(r.bos_id(), 1);
  EXPECT_EQ(r.eos_id(), 2);
  EXPECT_EQ(std::vector<int32_t>(r[0].ids.begin(), r[0].ids.end()), (std::vector<int32_t>{1, 5, 6, 7, 2}));
  EXPECT_EQ(r[0].completion_start, 3u);
  EXPECT_EQ(r[0].price, 12.5);
  EXPECT_EQ(r[1].price, 0.99);
  EXPECT_THROW(r[2], pricer::Error);
  // Header layout as documented.
  const std::string bytes = read_file(dir / "s.bin");
  ASSERT_EQ(bytes.size(), 64u + 2 * 16 + 8 * 4);
  EXPECT_EQ(bytes.substr(0, 8), "PRICETOK");
}

TEST(CurateShard, CorruptShardsAreErrorsNamingThePlace) {
  TempDir dir;
  {
    ShardWriter w(dir / "good.bin", 50, -1, -1);
    std::vector<int32_t> a = {3, 4, 5}, b = {7, 8};
    w.add(a, 1, 3.0);
    w.add(b, 2, 4.0);
    w.finish();
    ShardWriter unfinished(dir / "unfinished.bin", 50, -1, -1);
    unfinished.add(a, 1, 3.0);
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "unfinished.bin")) << "a shard never finished is never published";
  for (const auto& e : std::filesystem::directory_iterator(dir.path))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path() << " left behind";
  const std::string good = read_file(dir / "good.bin");
  auto variant = [&](const std::string& name, auto mutate) {
    std::string s = good;
    mutate(s);
    write_file(dir / name, s);
    return expect_shard_error(dir / name);
  };
  EXPECT_NE(variant("magic.bin", [](std::string& s) { s[0] = 'X'; }).find("magic"), std::string::npos);
  EXPECT_NE(variant("version.bin", [](std::string& s) { put32(s, 8, 9); }).find("version 9"), std::string::npos);
  EXPECT_NE(variant("short.bin", [](std::string& s) { s.resize(40); }).find("shorter"), std::string::npos);
  EXPECT_NE(variant("trunc.bin", [](std::string& s) { s.resize(s.size() - 4); }).find("payload"), std::string::npos);
  // Hostile counts must fail before allocating.
  EXPECT_NE(variant("huge.bin", [](std::string& s) { put64(s, 16, 1ull << 60); }).find("exceed"), std::string::npos);
  // Record 1's token id 8 -> 99 (vocab 50).
  std::string e = variant("id.bin", [](std::string& s) { put32(s, 64 + 16 + 12 + 16 + 4, 99); });
  EXPECT_NE(e.find("record 1"), std::string::npos) << e;
  EXPECT_NE(e.find("outside"), std::string::npos) << e;
  e = variant("cs.bin", [](std::string& s) { put32(s, 64 + 4, 7); });
  EXPECT_NE(e.find("record 0"), std::string::npos) << e;
  EXPECT_NE(e.find("completion start"), std::string::npos) << e;
  e = variant("ntok.bin", [](std::string& s) { put32(s, 64, 1000); });
  EXPECT_NE(e.find("past the end"), std::string::npos) << e;
  e = variant("price.bin", [](std::string& s) {
    const double nan = std::nan("");
    std::memcpy(&s[64 + 8], &nan, 8);
  });
  EXPECT_NE(e.find("price"), std::string::npos) << e;
  e = variant("total.bin", [](std::string& s) { put64(s, 24, 4); });
  EXPECT_NE(e.find("tokens"), std::string::npos) << e;
}

TEST(CurateSynthetic, DeterministicBySeedAndIndex) {
  EXPECT_EQ(synthetic_item(1, 0).line, synthetic_item(1, 0).line);
  EXPECT_EQ(synthetic_item(1, 17).line, synthetic_item(1, 17).line);
  EXPECT_NE(synthetic_item(1, 0).line, synthetic_item(2, 0).line);
  EXPECT_NE(synthetic_item(1, 0).line, synthetic_item(1, 1).line);
  TempDir dir;
  write_synthetic_catalog(dir / "a.jsonl", 50, 9);
  write_synthetic_catalog(dir / "b.jsonl", 50, 9);
  EXPECT_EQ(read_file(dir / "a.jsonl"), read_file(dir / "b.jsonl"));
}

TEST(CurateSynthetic, PriceFollowsTheHiddenRule) {
  const int n = 2000;
  double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
  std::set<std::string> cats, brands;
  for (int i = 0; i < n; ++i) {
    SyntheticItem it = synthetic_item(5, i);
    const double x = std::log(it.rule_price), y = std::log(it.price);
    sx += x, sy += y, sxx += x * x, syy += y * y, sxy += x * y;
    cats.insert(it.category);
    brands.insert(it.brand);
  }
  const double cov = sxy / n - sx / n * sy / n;
  const double r = cov / std::sqrt((sxx / n - sx / n * sx / n) * (syy / n - sy / n * sy / n));
  EXPECT_GT(r, 0.9) << "log price should track the rule (noise sigma 0.25)";
  EXPECT_LT(r, 0.999) << "the noise is real";
  EXPECT_GE(cats.size(), 7u);
  EXPECT_GE(brands.size(), 8u);
}

TEST(CurateSynthetic, ProductsPassCurationWithScrubbedModelNumbers) {
  CleanOptions opt;
  RecordCleaner cleaner(opt, nullptr);
  int accepted = 0;
  std::set<std::string> texts;
  for (int i = 0; i < 300; ++i) {
    SyntheticItem it = synthetic_item(11, i);
    CleanItem out;
    std::string why;
    Reject r = cleaner.process(it.line, "", out, why);
    if (r != Reject::None) continue;
    ++accepted;
    EXPECT_EQ(out.category, it.category);
    EXPECT_NEAR(out.price, it.price, 1e-9);
    EXPECT_NE(out.text.find(it.brand), std::string::npos);
    for (size_t p = 0; p < out.text.size();) {  // no part-number-like words survive
      size_t q = out.text.find_first_of(" \n", p);
      if (q == std::string::npos) q = out.text.size();
      EXPECT_FALSE(is_part_number(out.text.substr(p, q - p))) << out.text.substr(p, q - p);
      p = q + 1;
    }
    texts.insert(out.text);
  }
  EXPECT_GE(accepted, 295) << "synthetic products are written long enough (>= 600 chars)";
  EXPECT_GE(texts.size(), 290u) << "sentence templates vary";
}
