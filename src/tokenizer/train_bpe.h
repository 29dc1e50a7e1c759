#pragma once
// Byte-level BPE training for pretraining small models on product text. Texts are split with
// the Llama 3 pattern (digits in runs of 1-3); the vocab starts from the 256 bytes plus every
// number 0-999 as one token (so a price's digits never split oddly), learns merges by pair
// frequency, and ends with <|begin_of_text|> (BOS) and <|end_of_text|> (EOS). Deterministic:
// the same texts and options give the same vocab, whatever the thread count.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace pricer {

struct BpeTrainOptions {
  int32_t vocab_size = 4096;  // total, specials included; at least 256 bytes + 990 numbers + 2
  int64_t min_frequency = 2;  // a pair seen fewer times than this is never merged
};

// A trained vocab in the form a GGUF `gpt2` vocab stores it (tokenizer.ggml.tokens / .merges /
// .token_type / .bos_token_id / .eos_token_id; see vocab_export.h).
struct TrainedBpe {
  std::vector<std::string> tokens;  // GPT-2 byte-to-unicode spelling; specials literal
  std::vector<std::string> merges;  // "left right", in priority order
  std::vector<int32_t> token_types;  // TokenType values
  int32_t bos_id = -1;
  int32_t eos_id = -1;
};

TrainedBpe train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& options = {});

// Hugging Face tokenizer.json for a trained vocab (loads back with parse_tokenizer_json).
std::string trained_bpe_json(const TrainedBpe& bpe);
void save_tokenizer_json(const TrainedBpe& bpe, const std::string& path);
// The tokenizer itself, without a round trip through a file.
std::unique_ptr<Tokenizer> make_trained_tokenizer(const TrainedBpe& bpe);

}  // namespace pricer
