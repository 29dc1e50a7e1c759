#pragma once
// One JSON line -> one cleaned product (or the reason it was rejected). Understands both the raw
// Amazon Reviews 2023 metadata (title, description[], features[], details{} or a JSON string,
// price as number / "None" / "$12.99" / null, main_category) and the curated JSON-lines format
// (title, category, price, text, details as a JSON string). Parsing uses simdjson On-Demand;
// a RecordCleaner keeps its parser and buffers, so use one per thread.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pricer {
class Tokenizer;
}

namespace pricer::data {

// Why a line did not become an item. The first four are bad input (reported with file:line,
// an error under --strict); the rest are the curation rules.
enum class Reject : uint8_t {
  None = 0,
  MalformedJson,
  WrongType,
  InvalidUtf8,
  LineTooLong,
  NoTitle,
  NoPrice,
  BadPrice,
  PriceOutOfRange,
  TooShort,
  DuplicateTitle,
  DuplicateText,
};
inline constexpr int kNumRejects = 12;
const char* reject_name(Reject r);  // "malformed_json", ...
inline bool is_bad_input(Reject r) {
  return r == Reject::MalformedJson || r == Reject::WrongType || r == Reject::InvalidUtf8 || r == Reject::LineTooLong;
}

// Tokens of product text a curated prompt holds (the course's 160-token prompts: about 110 of
// text plus the template); prediction cuts raw texts to the same budget.
inline constexpr int kDefaultTokenBudget = 110;

// Where the summary puts the category and the spec table (weight, size, brand, ...): right after
// the title, so the token budget keeps them (they say more about a price than the end of a
// description does), after the description, or nowhere.
enum class SpecPlacement : uint8_t { First, Last, None };
// "first" | "last" | "none"; throws Error naming the flag otherwise.
SpecPlacement parse_spec_placement(const std::string& s);
const char* spec_placement_name(SpecPlacement p);

struct CleanOptions {
  double min_price = 0.50;
  double max_price = 999.49;
  size_t min_chars = 600;  // cleaned text shorter than this is rejected
  size_t max_chars = 4000;  // cleaned text is cut to this many characters first
  int token_budget = kDefaultTokenBudget;  // the summary is cut to this many tokens
  double words_per_token = 0.75;  // word budget when no tokenizer is given
  bool scrub_part_numbers = true;
  size_t max_line_bytes = 1 << 20;
  SpecPlacement specs = SpecPlacement::First;
  // Spec-table keys left out of the text: they identify a listing, not a price, or are
  // app-store boilerplate that would crowd the budget.
  std::vector<std::string> drop_details = {
      "Part Number",       "Best Sellers Rank",       "Batteries Included?",       "Batteries Required?",
      "Item model number", "Application Permissions", "Approximate Download Time", "Date first listed on Amazon"};
  size_t word_budget() const { return static_cast<size_t>(words_per_token * token_budget); }
};

struct CleanItem {
  std::string title;  // whitespace-simplified original title
  std::string category;  // from the file name, else main_category / category, else "Unknown"
  double price = 0;
  std::string text;  // the summary: cleaned text cut to the budget
  uint32_t length = 0;  // tokens of the summary (words without a tokenizer)
};

class RecordCleaner {
 public:
  // tok may be null (word budget). The tokenizer is only read (encode/decode).
  RecordCleaner(const CleanOptions& opt, const Tokenizer* tok);
  ~RecordCleaner();
  RecordCleaner(const RecordCleaner&) = delete;
  RecordCleaner& operator=(const RecordCleaner&) = delete;

  // file_category: the category implied by the file name ("" if none). On rejection `why`
  // holds a short description (for bad input: what is wrong and where in the line).
  Reject process(std::string_view line, std::string_view file_category, CleanItem& out, std::string& why);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "meta_Cell_Phones_and_Accessories.jsonl.gz" -> "Cell Phones and Accessories"; "" otherwise.
std::string category_from_filename(std::string_view path);

// Above this a "price" is corrupt data or a parse gone wrong (1e308, "1e999"), not a product's:
// readers of prices (eval items, human guesses, model and API replies) refuse it.
inline constexpr double kMaxPlausiblePrice = 1e9;

// Price strings as found in the raw data: "$1,299.99", "12.5", " $3 ". nullopt-like: returns
// false for "None", "", ranges ("$5 - $9") and anything else that is not one number.
bool parse_price_string(std::string_view s, double& price);

}  // namespace pricer::data
