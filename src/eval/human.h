#pragma once
// The human pricer: the items are exported as CSV (id,text) for a person to price, and their
// guesses come back as CSV (id,price). Ids are positions in the evaluated item list, so export
// and evaluate with the same --data, split and --limit.
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "eval/pricer.h"

namespace pricer::eval {

// RFC 4180 field: quoted (with "" for ") when it holds a comma, quote, CR, LF or edge spaces.
std::string csv_field(std::string_view s);

struct CsvRecord {
  std::size_t line = 0;  // line where the record starts (quoted fields may span lines)
  std::vector<std::string> fields;
};

// Parses RFC 4180 CSV (LF or CRLF line ends, quoted fields with "" escapes and line breaks).
// `name` is used in error messages, which give name:line and the problem.
std::vector<CsvRecord> parse_csv(std::string_view text, const std::string& name);

// Largest guesses file read; a person does not type more.
inline constexpr std::size_t kMaxCsvBytes = 64u << 20;

// Writes id,text for every item (header included).
void write_human_csv(const std::filesystem::path& file, const std::vector<Item>& items);

// Reads guesses for `count` items from a CSV with a header naming "id" and "price" columns (any
// order, other columns ignored, so the exported file with a price column added works too). Every
// id in [0, count) must appear exactly once; prices are finite, non-negative numbers, optionally
// written with a leading '$' and thousands separators.
std::vector<double> read_human_csv(const std::filesystem::path& file, std::size_t count);
// The same from the file's text (`name` for messages).
std::vector<double> parse_human_csv(std::string text, const std::string& name, std::size_t count);

class HumanPricer : public Pricer {
 public:
  explicit HumanPricer(std::filesystem::path csv) : csv_(std::move(csv)) {}
  std::string name() const override { return "human"; }
  std::vector<double> predict(const std::vector<Item>& items) override { return read_human_csv(csv_, items.size()); }
  nlohmann::json stats() const override { return {{"guesses", csv_.string()}}; }
  bool shardable() const override { return false; }  // guesses are read by item position

 private:
  std::filesystem::path csv_;
};

}  // namespace pricer::eval
