#pragma once
// Training examples (prompt + completion token ids, and the true price) from any of the dataset
// forms pricer accepts, and the order they are visited in.
//
// Sources:
//  - a curate directory: <dir>/<split>.bin token shards when present (no re-tokenizing), otherwise
//    <dir>/<split>.jsonl with prompt/completion/price, tokenized here;
//  - a JSON-lines file of {"prompt", "completion"[, "price"]} objects;
//  - a JSON-lines file of pre-tokenized {"input_ids": [...], "completion_start": n[, "price"]}.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/batch.h"
#include "tokenizer/number_tokens.h"
#include "tokenizer/tokenizer.h"

namespace pricer {

struct PricedExample {
  std::vector<int32_t> tokens;  // prompt then completion
  int64_t prompt_len = 0;
  double price = 0;  // NaN when the source has none
};

// Tokens per example in training and per prompt in prediction: room for a curated prompt (the
// text's token budget plus the template) and its completion, so neither side cuts it.
inline constexpr int64_t kDefaultMaxTokens = 256;

struct DatasetOptions {
  int64_t max_length = kDefaultMaxTokens;  // longer examples lose prompt tokens from the middle
  int64_t keep_prompt_tail = 16;  // ... keeping the prompt's last tokens ("Price is $")
  bool add_bos = true, add_eos = false;
  // When set, each prompt is rewritten before tokenizing (e.g. comparables inserted), given its
  // record's row in the split; a curate directory is then read in its JSON-lines form, since its
  // token shards hold no text.
  std::function<std::string(const std::string& prompt, std::size_t row)> rewrite_prompt;
  // When set, only the records whose prompt it keeps are loaded (cross-fitting leaves a fold out),
  // and rows count the kept records only; as with rewrite_prompt, the JSON-lines form is read.
  std::function<bool(const std::string& prompt)> keep_prompt;
};

// One priced prompt of a split, as text.
struct PromptRecord {
  std::string prompt;
  double price = 0;  // NaN when the record has none
};

// Loads one split ("train", "val", "test") of `source` (a curate directory), or the whole file
// when `source` is a JSON-lines file (split ignored). Throws Error naming the file and line.
std::vector<PricedExample> load_examples(const std::string& source, const std::string& split, const Tokenizer& tok,
                                         int64_t vocab, const DatasetOptions& opt);
// The prompts and prices of one split (JSON-lines form), in the row order load_examples uses.
std::vector<PromptRecord> load_prompt_records(const std::string& source, const std::string& split);
// True when `source` is a directory that holds `split` in either form.
bool has_split(const std::string& source, const std::string& split);

// Shortens an example to max_length tokens: the completion is kept whole, then the prompt's first
// tokens and its last keep_tail tokens, dropping the middle.
void fit_length(PricedExample& ex, int64_t max_length, int64_t keep_tail);

// The batches of one epoch, as lists of example indices: shuffled by (seed, epoch), then grouped by
// length within windows of 50 batches so each batch pads little, then the batch order shuffled.
std::vector<std::vector<int64_t>> epoch_batches(const std::vector<PricedExample>& data, int64_t batch_size,
                                                uint64_t seed, int64_t epoch);

// A Batch of the given examples, packed back to back (no padding to compute).
Batch batch_of(const std::vector<PricedExample>& data, const std::vector<int64_t>& idx);

// Spreads the label of each example's first completion token (its whole-dollar price token)
// over the number tokens, with weights exp(-(ln(1 + v) - ln(1 + v_true))^2 / (2 sigma^2)) (those
// under 1e-3 of the peak dropped): nearby prices share the credit, so the model learns from every
// example that $45 is nearer $47 than $470, which a one-hot label never says. Examples whose first
// completion token is not a number keep their one-hot label. sigma > 0.
void add_price_smoothing(Batch& b, const std::vector<PricedExample>& data, const std::vector<int64_t>& idx,
                         const NumberTokens& numbers, double sigma);

}  // namespace pricer
