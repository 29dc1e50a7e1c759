// Reading items (curate splits and plain product lines) and the human pricer's CSV files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "eval/human.h"
#include "eval/item.h"

using namespace pricer::eval;
namespace fs = std::filesystem;

namespace {

const fs::path kData = fs::path(PRICER_SOURCE_DIR) / "tests/data/eval";

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("pricer_eval_io_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path write(const std::string& name, const std::string& content) const {
    std::ofstream(path / name, std::ios::binary) << content;
    return path / name;
  }
};

// The Error message of f(), or "" when it does not throw.
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const pricer::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(EvalItems, CurateSplitDirectory) {
  const auto train = read_split(kData / "split", "train");
  ASSERT_EQ(train.size(), 4u);
  EXPECT_EQ(train[0].title, "Chef Knife");
  EXPECT_EQ(train[0].category, "Home");
  EXPECT_DOUBLE_EQ(train[0].price, 34.99);
  EXPECT_NE(train[0].prompt.find("Stainless steel chef knife"), std::string::npos);
  EXPECT_EQ(train[0].text, train[0].prompt);  // no separate text: the prompt is what is read
  EXPECT_EQ(train[3].category, "");  // null
  EXPECT_EQ(default_eval_split(kData / "split"), "test");
  EXPECT_EQ(read_split(kData / "split", "test").size(), 2u);
  EXPECT_EQ(read_split(kData / "split", "train", 3).size(), 3u);
  EXPECT_NE(error_of([] { read_split(kData / "split", "val"); }).find("no val.jsonl"), std::string::npos);
}

TEST(EvalItems, PlainLinesAndShards) {
  const auto items = read_items(kData / "plain.jsonl");  // a blank line in the middle
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[1].category, "");
  EXPECT_EQ(items[2].category, "");  // missing
  EXPECT_EQ(items[2].text, "Blender\n1000 watt countertop blender, 64 oz jar");
  EXPECT_TRUE(items[2].prompt.empty());

  TempDir t;
  const std::string line = R"({"text": "x", "price": 1})";
  t.write("train-01.jsonl", line + "\n" + line + "\n");
  t.write("train-00.jsonl", R"({"text": "first", "price": 2})"
                            "\n");
  t.write("val.jsonl", line + "\n");
  const auto shards = read_split(t.path, "train");
  ASSERT_EQ(shards.size(), 3u);
  EXPECT_EQ(shards[0].text, "first");  // shards in name order
  EXPECT_EQ(read_split(t.path, "train", 2).size(), 2u);
  EXPECT_EQ(default_eval_split(t.path), "val");
}

TEST(EvalItems, BadLinesNameFileAndLine) {
  TempDir t;
  const std::string ok = R"({"text": "fine", "price": 3})"
                         "\n";
  struct Case {
    std::string line, expect;
  } cases[] = {
      {"{\"text\": \"x\", \"price\": 3", "invalid JSON"},
      {R"({"text": "x", "price": 3, "price": 300})", "duplicate JSON key 'price'"},
      {"[1, 2]", "expected a JSON object"},
      {R"({"text": "x"})", "missing \"price\""},
      {R"({"text": "x", "price": "12.5"})", "\"price\" must be a number"},
      {R"({"text": "x", "price": -1})", "must be a price from 0 to"},
      {R"({"text": "x", "price": 1e308})", "must be a price from 0 to"},
      {R"({"price": 3})", "needs a non-empty \"text\" or \"prompt\""},
      {R"({"text": 7, "price": 3})", "\"text\" must be a string"},
      {R"({"text": "x", "price": 3, "category": 5})", "\"category\" must be a string or null"},
  };
  for (const auto& c : cases) {
    const auto f = t.write("bad.jsonl", ok + ok + c.line + "\n");
    const std::string msg = error_of([&] { read_items(f); });
    EXPECT_NE(msg.find(f.string() + ":3: "), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << msg;
  }
  EXPECT_NE(error_of([&] { read_items(t.path / "absent.jsonl"); }).find("cannot open"), std::string::npos);
}

TEST(EvalItems, OverlongLineIsRejected) {
  TempDir t;
  const auto f = t.write("long.jsonl", std::string(kMaxLineBytes + 10, 'x'));
  const std::string msg = error_of([&] { read_items(f); });
  EXPECT_NE(msg.find(":1: line longer than"), std::string::npos) << msg;
}

TEST(EvalCsv, FieldQuoting) {
  EXPECT_EQ(csv_field("plain"), "plain");
  EXPECT_EQ(csv_field("a,b"), "\"a,b\"");
  EXPECT_EQ(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(csv_field("two\nlines"), "\"two\nlines\"");
  EXPECT_EQ(csv_field(" edge"), "\" edge\"");
  EXPECT_EQ(csv_field(""), "");
}

TEST(EvalCsv, ParserHandlesQuotesAndLineBreaks) {
  const auto recs = parse_csv("id,text\r\n0,\"a, \"\"b\"\"\nc\"\n\n1,plain\n2,\n", "t.csv");
  ASSERT_EQ(recs.size(), 4u);
  EXPECT_EQ(recs[1].line, 2u);
  EXPECT_EQ(recs[1].fields, (std::vector<std::string>{"0", "a, \"b\"\nc"}));
  EXPECT_EQ(recs[2].line, 5u);  // the quoted break and the blank line are counted
  EXPECT_EQ(recs[2].fields, (std::vector<std::string>{"1", "plain"}));
  EXPECT_EQ(recs[3].fields, (std::vector<std::string>{"2", ""}));
  EXPECT_NE(error_of([] { parse_csv("id\n\"open\n", "t.csv"); }).find("t.csv:2: unterminated"), std::string::npos);
  EXPECT_NE(error_of([] { parse_csv("a\nx\"y\n", "t.csv"); }).find("t.csv:2: quote inside"), std::string::npos);
  EXPECT_NE(error_of([] { parse_csv("\"a\"b\n", "t.csv"); }).find("t.csv:1: text after"), std::string::npos);
}

TEST(EvalCsv, HumanExportImportRoundTrip) {
  TempDir t;
  auto items = read_split(kData / "split", "train");
  items[1].text = "Mouse, \"pro\"\nsecond line";  // every character that needs quoting
  write_human_csv(t.path / "todo.csv", items);
  std::ifstream in(t.path / "todo.csv", std::ios::binary);
  const std::string csv((std::istreambuf_iterator<char>(in)), {});
  const auto recs = parse_csv(csv, "todo.csv");
  ASSERT_EQ(recs.size(), items.size() + 1);
  EXPECT_EQ(recs[0].fields, (std::vector<std::string>{"id", "text"}));
  for (std::size_t i = 0; i < items.size(); ++i) {
    EXPECT_EQ(recs[i + 1].fields[0], std::to_string(i));
    EXPECT_EQ(recs[i + 1].fields[1], items[i].text);
  }
  // A person fills in a price column in any order, with $ signs and thousands separators.
  const auto guesses = t.write("done.csv", "price,id,note\n\"$1,250.50\",2,big\n30,0,\n 12 ,1,\n7,3,\"x,y\"\n");
  HumanPricer human(guesses);
  EXPECT_EQ(human.predict(items), (std::vector<double>{30, 12, 1250.5, 7}));
  // Thousands written without quotes, in the last column, and a spreadsheet's UTF-8 BOM.
  const auto loose = t.write("loose.csv", "\xEF\xBB\xBFid,price\n2,$1,250\n0,30\n1,12\n3,\"$7\"\n");
  EXPECT_EQ(read_human_csv(loose, 4), (std::vector<double>{30, 12, 1250, 7}));
}

TEST(EvalCsv, HumanImportValidates) {
  TempDir t;
  struct Case {
    std::string csv, expect;
  } cases[] = {
      {"id,guess\n0,1\n", ":1: header needs \"id\" and \"price\""},
      {"id,price\n0,1\nx,2\n", ":3: id \"x\" is not a non-negative integer"},
      {"id,price\n0,1\n-1,2\n", ":3: id \"-1\" is not"},
      {"id,price\n0,1\n5,2\n", ":3: id 5 out of range: the evaluation has 2 items"},
      {"id,price\n0,1\n0,2\n", ":3: id 0 appears twice"},
      {"id,price\n0,1\n1,abc\n", ":3: price \"abc\" is not a price"},
      {"id,price\n0,1\n1,-4\n", ":3: price \"-4\" is not a price"},
      {"id,price\n0,1\n1,1e308\n", ":3: price \"1e308\" is not a price"},
      {"id,price\n0,1\n1,99999999999\n", ":3: price \"99999999999\" is beyond"},
      {"price,id\n1,0\n$1,250,1\n", ":3: 3 fields for a 2-column header (quote prices"},
      {"id,price\n0,1\n1,inf\n", ":3: price"},
      {"id,price\n0,1\n1\n", ":3: expected at least 2 fields"},
      {"id,price\n0,1\n", "no guess for id 1 (1 ids missing)"},
      {"", "empty file"},
  };
  for (const auto& c : cases) {
    const auto f = t.write("g.csv", c.csv);
    const std::string msg = error_of([&] { read_human_csv(f, 2); });
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.csv << " -> " << msg;
    EXPECT_NE(msg.find(f.string()), std::string::npos) << msg;
  }
}
