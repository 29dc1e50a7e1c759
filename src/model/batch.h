#pragma once
// A training / evaluation batch: sequences laid back to back as one packed token stream.
//
// targets[t] is the token position t must predict (already shifted: the next token of its
// sequence) and counts in the loss only where loss_mask[t] = 1 (completion positions). The loss is
// the mean cross-entropy over the masked positions (sum / their number, Hugging Face's convention).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace pricer {

// A target distribution for one position in place of its one-hot next token: the loss there is
// the cross-entropy -sum_k probs[k] log p(ids[k]) against a soft label (probs sum to 1). The
// trainer spreads a price's label over nearby price tokens this way (TrainConfig::price_smoothing).
struct SoftTarget {
  int64_t position = 0;  // a loss-masked row of the batch
  std::vector<int32_t> ids;
  std::vector<float> probs;
};

struct Batch {
  std::vector<int32_t> tokens;  // [T]
  std::vector<int32_t> positions;  // [T] rotary positions, restarting at 0 in every sequence
  std::vector<int32_t> cu_seqlens;  // [S + 1] sequence i occupies [cu[i], cu[i+1])
  std::vector<int32_t> targets;  // [T]
  std::vector<uint8_t> loss_mask;  // [T]
  std::vector<SoftTarget> soft_targets;  // optional, at most one per position

  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  int64_t n_sequences() const { return cu_seqlens.empty() ? 0 : int64_t(cu_seqlens.size()) - 1; }
  int64_t n_loss_tokens() const;
  // Throws Error naming `what` on inconsistent sizes, ids outside [0, vocab), bad cu_seqlens,
  // positions at or beyond max_pos, or a soft target off the loss mask or not a distribution.
  void validate(int64_t vocab, int64_t max_pos, const std::string& what) const;
};

// One example: prompt then completion; the completion tokens are the ones the loss is taken on.
struct Example {
  std::vector<int32_t> tokens;
  int64_t prompt_len = 0;  // tokens[prompt_len..] are the completion
};

enum class BatchMode {
  Padding,  // each example its own sequence, right-padded with pad_id to the longest
  Packing,  // examples back to back, no padding
};

// Builds the batch; position t of an example predicts tokens[t + 1], and the loss covers the
// positions whose target is a completion token. Throws Error on an empty example list, an example
// shorter than 2 tokens or a prompt_len outside [1, size).
Batch make_batch(std::span<const Example> examples, BatchMode mode, int32_t pad_id);

// Prompts for inference, back to back with no padding, each its own sequence whose positions start
// at offsets[i] (what its KV cache already holds; 0 for all when offsets is empty). Targets are
// blank and nothing is in the loss: the logits wanted are those of each sequence's last row.
Batch prompt_batch(std::span<const std::span<const int32_t>> prompts, std::span<const int64_t> offsets = {});
// Each sequence's last row in a batch: where the next token of each prompt is read.
std::vector<int64_t> last_rows(const Batch& b);

}  // namespace pricer
