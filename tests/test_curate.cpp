// Curation rules on hand-made records: text cleaning, price parsing, the record parser's
// accept/reject decisions, and the token/word budgets.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "data/curate.h"
#include "data/curate/curate_test_util.h"
#include "data/record.h"
#include "data/text.h"

using namespace pricer::data;
using curate_test::ByteTokenizer;
using curate_test::raw_record;
using nlohmann::json;

namespace {

Reject run(const std::string& line, CleanItem& out, const CleanOptions& opt = {},
           const pricer::Tokenizer* tok = nullptr, std::string_view file_cat = "") {
  RecordCleaner c(opt, tok);
  std::string why;
  return c.process(line, file_cat, out, why);
}

Reject run(const std::string& line, const CleanOptions& opt = {}) {
  CleanItem out;
  return run(line, out, opt);
}

// A curated-format line whose text is exactly `chars` ASCII characters.
std::string curated_with_chars(size_t chars) {
  std::string text;
  while (text.size() < chars) text += text.empty() ? "word" : " word";
  text.resize(chars);
  if (text.back() == ' ') text.back() = 'x';
  return json{{"title", "T"}, {"category", "Books"}, {"price", 10.0}, {"text", text}}.dump();
}

}  // namespace

TEST(CurateText, PartNumbers) {
  EXPECT_TRUE(is_part_number("WPW10314173"));
  EXPECT_TRUE(is_part_number("661570V"));
  EXPECT_TRUE(is_part_number("(W10837240),"));
  EXPECT_FALSE(is_part_number("4392067"));  // digits only
  EXPECT_FALSE(is_part_number("ABCDEFGH"));  // letters only
  EXPECT_FALSE(is_part_number("A1B2C3"));  // too short
  EXPECT_FALSE(is_part_number("Wp10314173"));  // lower case
  EXPECT_FALSE(is_part_number("XK-48213B"));  // hyphen: not only capitals/digits
}

TEST(CurateText, WhitespaceAndScrubbing) {
  std::string out;
  EXPECT_EQ(append_words(out, "  Fits \t models\n\nWPW10314173 and   661570V.  ", true), 3u);
  EXPECT_EQ(out, "Fits models and");
  out = "line one\n";
  append_words(out, " two  three ", false);
  EXPECT_EQ(out, "line one\ntwo three");
  EXPECT_EQ(normalize_title("  USB-C   Cable "), normalize_title("usb-c cable"));
  EXPECT_NE(hash64("a"), hash64("b"));
  EXPECT_EQ(hash64("stable"), hash64(std::string("stable")));
}

TEST(CurateText, Utf8SafeCuts) {
  EXPECT_EQ(utf8_length("caf\xc3\xa9"), 4u);
  // Cut at a word boundary before the 9th character.
  std::string s = "abcd efgh ijkl";
  EXPECT_EQ(s.substr(0, utf8_prefix_words(s, 8)), "abcd");
  EXPECT_EQ(utf8_prefix_words(s, 100), s.size());
  // One giant word: cut inside it, but never inside a code point.
  std::string e = "\xc3\xa9\xc3\xa9\xc3\xa9";
  EXPECT_EQ(utf8_prefix_words(e, 2), 4u);
  std::string partial = "ok \xe2\x82";  // first two bytes of the euro sign
  trim_partial_utf8(partial);
  EXPECT_EQ(partial, "ok ");
  std::string whole = "ok \xe2\x82\xac";
  trim_partial_utf8(whole);
  EXPECT_EQ(whole, "ok \xe2\x82\xac");
  std::string w = "one two\nthree four";
  EXPECT_EQ(truncate_words(w, 3), 3u);
  EXPECT_EQ(w, "one two\nthree");
  EXPECT_EQ(count_words(" a  b\nc "), 3u);
}

TEST(CurateText, PriceStringsAndFileCategories) {
  double p = 0;
  EXPECT_TRUE(parse_price_string("$12.99", p));
  EXPECT_DOUBLE_EQ(p, 12.99);
  EXPECT_TRUE(parse_price_string(" $1,299.00 ", p));
  EXPECT_DOUBLE_EQ(p, 1299.0);
  EXPECT_FALSE(parse_price_string("None", p));
  EXPECT_FALSE(parse_price_string("", p));
  EXPECT_FALSE(parse_price_string("$5 - $9", p));
  EXPECT_FALSE(parse_price_string("-3", p));
  EXPECT_EQ(category_from_filename("/x/meta_Cell_Phones_and_Accessories.jsonl.gz"), "Cell Phones and Accessories");
  EXPECT_EQ(category_from_filename("train-00.jsonl"), "");
}

TEST(CurateRecord, RawRecordBecomesCleanText) {
  json j;
  j["title"] = "Dryer   Repair Kit W10837240";
  j["description"] = {"Fixes noisy dryers.", "Includes   rollers."};
  j["features"] = {"Fits WPW10314173 drums", "Easy install"};
  j["details"] = {
      {"Brand", "Acme"},           {"Part Number", "4392067"},    {"Best Sellers Rank", {{"Appliances", 12}}},
      {"Item model number", "X1"}, {"Batteries Required?", "No"}, {"Item Weight", "1.7 pounds"}};
  j["price"] = "$22.99";
  j["main_category"] = "Tools";
  j["images"] = {{{"large", "https://x/y.jpg"}}};
  CleanOptions opt;
  opt.min_chars = 10;
  CleanItem out;
  ASSERT_EQ(run(j.dump(), out, opt), Reject::None);
  // The category and spec table come right after the title, so a token budget keeps them.
  EXPECT_EQ(out.text,
            "Dryer Repair Kit\nCategory: Tools\nBrand: Acme; Item Weight: 1.7 pounds\nFixes "
            "noisy dryers.\nIncludes rollers.\nFits drums\nEasy install");
  EXPECT_EQ(out.title, "Dryer Repair Kit W10837240");  // the title field keeps its words
  EXPECT_DOUBLE_EQ(out.price, 22.99);
  EXPECT_EQ(out.category, "Tools");
  // The file name's category wins over main_category.
  ASSERT_EQ(run(j.dump(), out, opt, nullptr, "Appliances"), Reject::None);
  EXPECT_EQ(out.category, "Appliances");
  // Part numbers kept when asked.
  opt.scrub_part_numbers = false;
  ASSERT_EQ(run(j.dump(), out, opt), Reject::None);
  EXPECT_NE(out.text.find("WPW10314173"), std::string::npos);
}

TEST(CurateRecord, DetailsAsJsonStringAndCuratedFormat) {
  CleanOptions opt;
  opt.min_chars = 5;
  CleanItem out;
  json raw = {{"title", "Lamp"},
              {"description", json::array()},
              {"details", R"({"Brand": "Lux", "Part Number": "P1", "Wattage": 40})"},
              {"price", 10}};
  ASSERT_EQ(run(raw.dump(), out, opt), Reject::None);
  EXPECT_EQ(out.text, "Lamp\nBrand: Lux; Wattage: 40");  // no category known: no category line
  // A details string that is not JSON is kept as text.
  raw["details"] = "hand written spec";
  ASSERT_EQ(run(raw.dump(), out, opt), Reject::None);
  EXPECT_EQ(out.text, "Lamp\nhand written spec");
  // Curated format: the text already starts with the title; category from the record; its
  // details string goes after the title line like a raw record's.
  json cur = {{"title", "Desk Lamp"},
              {"category", "Home"},
              {"price", 25.5},
              {"text", "Desk Lamp\nBright  and adjustable"},
              {"details", "{}"}};
  ASSERT_EQ(run(cur.dump(), out, opt), Reject::None);
  EXPECT_EQ(out.text, "Desk Lamp\nCategory: Home\nBright and adjustable");
  cur["details"] = R"({"Item Weight": "2 pounds", "Part Number": "P1"})";
  ASSERT_EQ(run(cur.dump(), out, opt), Reject::None);
  EXPECT_EQ(out.text, "Desk Lamp\nCategory: Home\nItem Weight: 2 pounds\nBright and adjustable");
  EXPECT_EQ(out.category, "Home");
  cur["category"] = nullptr;
  ASSERT_EQ(run(cur.dump(), out, opt), Reject::None);
  EXPECT_EQ(out.category, "Unknown");
}

TEST(CurateRecord, SpecPlacementAndCaps) {
  CleanOptions opt;
  opt.min_chars = 5;
  CleanItem out;
  const std::string long_value(200, 'x');
  json cur = {{"title", "Desk Lamp"},
              {"category", "Home"},
              {"price", 25.5},
              {"text", "Desk Lamp\nBright and adjustable\nSecond line"},
              {"details", json({{"Brand", "Lux"}, {"Included Components", "bulb " + long_value}}).dump()}};
  ASSERT_EQ(run(cur.dump(), out, opt), Reject::None);
  // A value longer than a fact is cut at a word boundary.
  EXPECT_EQ(out.text,
            "Desk Lamp\nCategory: Home\nBrand: Lux; Included Components: bulb\nBright and "
            "adjustable\nSecond line");
  opt.specs = SpecPlacement::Last;
  ASSERT_EQ(run(cur.dump(), out, opt), Reject::None);
  EXPECT_EQ(out.text,
            "Desk Lamp\nBright and adjustable\nSecond line\nCategory: Home\nBrand: Lux; "
            "Included Components: bulb");
  opt.specs = SpecPlacement::None;
  ASSERT_EQ(run(cur.dump(), out, opt), Reject::None);
  EXPECT_EQ(out.text, "Desk Lamp\nBright and adjustable\nSecond line");
  // The whole table is capped too, so the description keeps part of the budget.
  opt.specs = SpecPlacement::First;
  json many;
  for (int i = 0; i < 40; ++i) many["Key" + std::to_string(i)] = "value " + std::to_string(i);
  cur["details"] = many.dump();
  ASSERT_EQ(run(cur.dump(), out, opt), Reject::None);
  const size_t table = out.text.find('\n', out.text.find("Key0"));
  EXPECT_LE(table - out.text.find("Key0"), 300u);
  EXPECT_NE(out.text.find("Bright and adjustable"), std::string::npos);
  EXPECT_EQ(parse_spec_placement("last"), SpecPlacement::Last);
  EXPECT_THROW(parse_spec_placement("middle"), pricer::Error);
}

TEST(CurateRecord, PriceRules) {
  json j = raw_record("p", 0);
  auto with = [&](json price) {
    j["price"] = price;
    return run(j.dump());
  };
  EXPECT_EQ(with(0.49), Reject::PriceOutOfRange);
  EXPECT_EQ(with(0.50), Reject::None);
  EXPECT_EQ(with(999.49), Reject::None);
  EXPECT_EQ(with(999.5), Reject::PriceOutOfRange);
  EXPECT_EQ(with("$12.99"), Reject::None);
  EXPECT_EQ(with("$1,299.00"), Reject::PriceOutOfRange);
  EXPECT_EQ(with("None"), Reject::NoPrice);
  EXPECT_EQ(with(nullptr), Reject::NoPrice);
  EXPECT_EQ(with("call for price"), Reject::BadPrice);
  EXPECT_EQ(with(json::array({1})), Reject::WrongType);
  j.erase("price");
  EXPECT_EQ(run(j.dump()), Reject::NoPrice);
  // Configurable range.
  CleanOptions opt;
  opt.max_price = 50;
  j["price"] = 60;
  EXPECT_EQ(run(j.dump(), opt), Reject::PriceOutOfRange);
}

TEST(CurateRecord, MinCharsBoundaryAndCeiling) {
  EXPECT_EQ(run(curated_with_chars(600)), Reject::None);
  EXPECT_EQ(run(curated_with_chars(599)), Reject::TooShort);
  CleanOptions opt;
  opt.min_chars = 100;
  EXPECT_EQ(run(curated_with_chars(100), opt), Reject::None);
  EXPECT_EQ(run(curated_with_chars(99), opt), Reject::TooShort);
  // The cleaned text is cut to max_chars before the budget (budget large enough to show it).
  opt.max_chars = 300;
  opt.token_budget = 10000;
  CleanItem out;
  ASSERT_EQ(run(curated_with_chars(5000), out, opt), Reject::None);
  EXPECT_LE(out.text.size(), 300u);
  EXPECT_GT(out.text.size(), 290u);
}

TEST(CurateRecord, TitleRules) {
  json j = raw_record("t", 10);
  j.erase("title");
  EXPECT_EQ(run(j.dump()), Reject::NoTitle);
  j["title"] = "   ";
  EXPECT_EQ(run(j.dump()), Reject::NoTitle);
  j["title"] = nullptr;
  EXPECT_EQ(run(j.dump()), Reject::NoTitle);
  j["title"] = 42;
  EXPECT_EQ(run(j.dump()), Reject::WrongType);
}

TEST(CurateRecord, BadInputIsClassified) {
  std::string why;
  RecordCleaner c(CleanOptions{}, nullptr);
  CleanItem out;
  EXPECT_EQ(c.process(R"({"title": "x", "price": 3)", "", out, why), Reject::MalformedJson);
  EXPECT_FALSE(why.empty());
  EXPECT_EQ(c.process(R"({"title": "x"} {"a": 1})", "", out, why), Reject::MalformedJson);
  EXPECT_EQ(c.process("[1, 2]", "", out, why), Reject::WrongType);
  EXPECT_EQ(c.process("\"just a string\"", "", out, why), Reject::WrongType);
  EXPECT_EQ(c.process(std::string("{\"title\": \"bad \xff\"}"), "", out, why), Reject::InvalidUtf8);
  json j = raw_record("w", 10);
  j["description"] = 17;
  EXPECT_EQ(c.process(j.dump(), "", out, why), Reject::WrongType);
  EXPECT_NE(why.find("description"), std::string::npos) << why;
  j["description"] = {"ok", 5};
  EXPECT_EQ(c.process(j.dump(), "", out, why), Reject::WrongType);
  EXPECT_NE(why.find("description[1]"), std::string::npos) << why;
  j["description"] = {"fine"};
  j["details"] = 3;
  EXPECT_EQ(c.process(j.dump(), "", out, why), Reject::WrongType);
  // The same cleaner still accepts a valid record afterwards.
  EXPECT_EQ(c.process(raw_record("ok", 10).dump(), "", out, why), Reject::None);
  CleanOptions small;
  small.max_line_bytes = 100;
  RecordCleaner c2(small, nullptr);
  EXPECT_EQ(c2.process(raw_record("long", 10).dump(), "", out, why), Reject::LineTooLong);
}

TEST(CurateRecord, WordBudgetWithoutTokenizer) {
  CleanOptions opt;
  CleanItem out;
  ASSERT_EQ(run(curated_with_chars(3000), out, opt), Reject::None);
  EXPECT_EQ(opt.word_budget(), 82u);  // 0.75 x 110
  EXPECT_EQ(count_words(out.text), 82u);
  EXPECT_EQ(out.length, 82u);
  opt.token_budget = 20;
  ASSERT_EQ(run(curated_with_chars(3000), out, opt), Reject::None);
  EXPECT_EQ(count_words(out.text), 15u);
}

TEST(CurateRecord, TokenBudgetWithTokenizerKeepsUtf8Whole) {
  ByteTokenizer tok;
  CleanOptions opt;
  opt.min_chars = 10;
  opt.token_budget = 11;
  CleanItem out;
  // Each euro sign is 3 bytes: an 11-byte cut lands inside the third one.
  json j = {{"title", "t"}, {"price", 5}, {"text", "ab \xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac more words"}};
  ASSERT_EQ(run(j.dump(), out, opt, &tok), Reject::None);
  EXPECT_EQ(out.length, 9u);  // the tokens actually kept
  EXPECT_EQ(out.text, "ab \xe2\x82\xac\xe2\x82\xac");
  // Short texts are kept whole with their real token count.
  opt.token_budget = 1000;
  ASSERT_EQ(run(j.dump(), out, opt, &tok), Reject::None);
  EXPECT_EQ(out.length, out.text.size());
}

TEST(CurateTemplate, FillsKnownPlaceholdersOnly) {
  EXPECT_EQ(fill_template("{a}-{b}-{c}", {{"a", "1"}, {"b", "{a}"}}), "1-{a}-{c}");
  EXPECT_EQ(fill_template("x{", {{"a", "1"}}), "x{");
  EXPECT_EQ(fill_template("{text}", {{"text", ""}}), "");
  SplitSize s = parse_split_size("0.8", "--train");
  EXPECT_TRUE(s.fraction);
  EXPECT_DOUBLE_EQ(s.value, 0.8);
  s = parse_split_size("2000", "--train");
  EXPECT_FALSE(s.fraction);
  EXPECT_DOUBLE_EQ(s.value, 2000);
  EXPECT_TRUE(parse_split_size("1.0", "--train").fraction);
  EXPECT_THROW(parse_split_size("1.5", "--train"), pricer::Error);
  EXPECT_THROW(parse_split_size("-3", "--train"), pricer::Error);
  EXPECT_THROW(parse_split_size("ten", "--train"), pricer::Error);
}
