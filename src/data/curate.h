#pragma once
// `pricer curate`: product metadata (JSON lines, plain or .gz) -> a price-prediction dataset
// directory: train/val/test.jsonl (+ tokenized .bin shards with a tokenizer), stats.json and
// charts. Streaming with bounded memory: a reader thread cuts the input into chunks of lines,
// worker threads parse and clean them, and the results are merged in input order, so the output
// is identical for any thread count. Cleaned items wait in a spill file in the output directory;
// only compact records (price, category, hashes, offsets) stay in memory for dedup and sampling.
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/record.h"

namespace pricer {
class Tokenizer;
}

namespace pricer::data {

// A split size: a fraction of the sampled items, or a count.
struct SplitSize {
  double value = 0;
  bool fraction = true;
};
// "0.8", ".5" -> fraction; "20000" -> count; throws Error for anything else (negative, "1.5").
SplitSize parse_split_size(const std::string& s, const std::string& flag);

struct CurateOptions {
  std::vector<std::string> inputs;
  std::string out_dir;
  CleanOptions clean;
  uint64_t seed = 42;
  uint64_t sample = 0;  // items to sample before splitting; 0: sum of counts, or all
  SplitSize train{0.8, true}, val{0.1, true}, test{0.1, true};
  double price_weight_power = 2.0;  // sampling weight (price / max price)^power
  std::map<std::string, double> category_weights;  // missing categories weigh 1
  // {text}, {title}, {category} in the prompt; {price} (rounded dollars) in the completion.
  std::string prompt_template = "What does this cost to the nearest dollar?\n\n{text}\n\nPrice is $";
  std::string completion_template = "{price}.00";
  const Tokenizer* tokenizer = nullptr;  // null: word budget, no .bin shards
  std::string tokenizer_path;  // for stats.json
  bool strict = false;  // first bad input line -> Error naming file:line
  bool dedup = true;  // by normalised title and by summary text
  int threads = 0;  // worker threads; 0: pricer::threads()
  size_t chunk_bytes = 1 << 20;
  bool progress = true;  // progress bar and summary on stderr
  int max_examples = 5;  // file:line examples kept per rejection reason
  bool charts = true;
};

struct CurateResult {
  nlohmann::ordered_json stats;  // what stats.json holds
  uint64_t train = 0, val = 0, test = 0;
};

// Runs the whole curation; throws Error on unreadable inputs, bad options, or (strict) the first
// bad line.
CurateResult curate(const CurateOptions& opt);

// "{x}" placeholders replaced by values; unknown placeholders are left as they are.
std::string fill_template(const std::string& tmpl, const std::vector<std::pair<std::string, std::string>>& values);

}  // namespace pricer::data
