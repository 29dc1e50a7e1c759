#pragma once
// The unit every pricer sees: one product with its true price. Read from curate splits
// (prompt/completion/price/category/title) or plain product lines (title/category/price/text).
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

namespace pricer::eval {

struct Item {
  std::string title;
  std::string category;  // "" when the source has none (null or missing)
  std::string text;  // the product description a pricer reads
  std::string prompt;  // the curate prompt verbatim, "" for plain product lines
  double price = 0.0;
};

// Longest JSON line accepted; a longer one is rejected instead of buffered without bound.
inline constexpr std::size_t kMaxLineBytes = 4u << 20;

// Reads one JSON-lines file. Each line needs a finite, non-negative numeric "price" and a string
// "text" or "prompt"; "title" and "category" are optional strings (null allowed). Blank lines
// are skipped. limit > 0 stops after that many items. Errors name the file and line.
std::vector<Item> read_items(const std::filesystem::path& file, std::size_t limit = 0);

// Items of one split. A file is read as is; a directory yields <split>.jsonl, or else the
// shards <split>-*.jsonl in name order (e.g. train-00.jsonl, train-01.jsonl, ...).
std::vector<Item> read_split(const std::filesystem::path& dir_or_file, const std::string& split, std::size_t limit = 0);

// The split a directory is evaluated on: "test" when test.jsonl (or shards) exist, else "val".
std::string default_eval_split(const std::filesystem::path& dir);

}  // namespace pricer::eval
