#include "eval/item.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/record.h"
#include "io/json_util.h"

namespace pricer::eval {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// getline with a cap, so a file without newlines cannot make us allocate without bound.
bool read_line(std::istream& in, std::string& line, const std::string& where) {
  line.clear();
  char c;
  bool any = false;
  while (in.get(c)) {
    any = true;
    if (c == '\n') return true;
    line.push_back(c);
    require(line.size() <= kMaxLineBytes, where + ": line longer than " + std::to_string(kMaxLineBytes) + " bytes");
  }
  return any;
}

std::string optional_string(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  require(it->is_string(), where + ": \"" + key + "\" must be a string or null, got " + std::string(it->type_name()));
  return it->get<std::string>();
}

Item parse_item(const std::string& line, const std::string& where) {
  // Strict: a key given twice is an error, not the last one silently winning.
  const json obj = parse_json_strict(line, where);
  require(obj.is_object(), where + ": expected a JSON object, got " + std::string(obj.type_name()));
  Item item;
  auto price = obj.find("price");
  require(price != obj.end(), where + ": missing \"price\"");
  require(price->is_number(), where + ": \"price\" must be a number, got " + std::string(price->type_name()));
  item.price = price->get<double>();
  require(std::isfinite(item.price) && item.price >= 0.0 && item.price <= data::kMaxPlausiblePrice,
          where + ": \"price\" must be a price from 0 to " +
              std::to_string(static_cast<long long>(data::kMaxPlausiblePrice)) + ", got " + price->dump());
  item.title = optional_string(obj, "title", where);
  item.category = optional_string(obj, "category", where);
  item.prompt = optional_string(obj, "prompt", where);
  item.text = optional_string(obj, "text", where);
  if (item.text.empty()) item.text = item.prompt;
  require(!item.text.empty(), where + ": needs a non-empty \"text\" or \"prompt\"");
  return item;
}

std::vector<fs::path> split_files(const fs::path& dir, const std::string& split) {
  if (fs::is_regular_file(dir / (split + ".jsonl"))) return {dir / (split + ".jsonl")};
  std::vector<fs::path> shards;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && name.starts_with(split + "-") && name.ends_with(".jsonl"))
      shards.push_back(entry.path());
  }
  require(!ec, dir.string() + ": cannot list directory: " + ec.message());
  std::sort(shards.begin(), shards.end());
  return shards;
}

}  // namespace

std::vector<Item> read_items(const fs::path& file, std::size_t limit) {
  std::ifstream in(file, std::ios::binary);
  require(in.good(), file.string() + ": cannot open");
  std::vector<Item> items;
  std::string line;
  std::size_t lineno = 0;
  while (read_line(in, line, file.string() + ":" + std::to_string(lineno + 1))) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    items.push_back(parse_item(line, file.string() + ":" + std::to_string(lineno)));
    if (limit > 0 && items.size() >= limit) break;
  }
  return items;
}

std::vector<Item> read_split(const fs::path& dir_or_file, const std::string& split, std::size_t limit) {
  if (!fs::is_directory(dir_or_file)) return read_items(dir_or_file, limit);
  const auto files = split_files(dir_or_file, split);
  require(!files.empty(), dir_or_file.string() + ": no " + split + ".jsonl or " + split + "-*.jsonl in this directory");
  std::vector<Item> items;
  for (const auto& f : files) {
    auto part = read_items(f, limit > 0 ? limit - items.size() : 0);
    items.insert(items.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
    if (limit > 0 && items.size() >= limit) break;
  }
  return items;
}

std::string default_eval_split(const fs::path& dir) { return split_files(dir, "test").empty() ? "val" : "test"; }

}  // namespace pricer::eval
