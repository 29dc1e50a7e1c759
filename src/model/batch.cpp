#include "model/batch.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace pricer {

int64_t Batch::n_loss_tokens() const {
  int64_t n = 0;
  for (uint8_t m : loss_mask) n += m != 0;
  return n;
}

void Batch::validate(int64_t vocab, int64_t max_pos, const std::string& what) const {
  const size_t T = tokens.size();
  require(T > 0, what + ": empty batch");
  require(positions.size() == T && targets.size() == T && loss_mask.size() == T,
          what + ": tokens, positions, targets and loss_mask differ in length (" + std::to_string(T) + ", " +
              std::to_string(positions.size()) + ", " + std::to_string(targets.size()) + ", " +
              std::to_string(loss_mask.size()) + ")");
  require(cu_seqlens.size() >= 2 && cu_seqlens.front() == 0 && cu_seqlens.back() == static_cast<int32_t>(T),
          what + ": cu_seqlens must run from 0 to the token count " + std::to_string(T));
  for (size_t i = 1; i < cu_seqlens.size(); ++i) {
    require(cu_seqlens[i] > cu_seqlens[i - 1], [&] {
      return what + ": cu_seqlens[" + std::to_string(i) + "] = " + std::to_string(cu_seqlens[i]) + " does not increase";
    });
  }
  for (size_t t = 0; t < T; ++t) {
    require(tokens[t] >= 0 && tokens[t] < vocab, [&] {
      return what + ": token " + std::to_string(tokens[t]) + " at row " + std::to_string(t) +
             " outside the vocabulary of " + std::to_string(vocab);
    });
    require(positions[t] >= 0 && positions[t] < max_pos, [&] {
      return what + ": position " + std::to_string(positions[t]) + " at row " + std::to_string(t) + " outside [0, " +
             std::to_string(max_pos) + ")";
    });
    if (loss_mask[t]) {
      require(targets[t] >= 0 && targets[t] < vocab, [&] {
        return what + ": target " + std::to_string(targets[t]) + " at row " + std::to_string(t) +
               " outside the vocabulary of " + std::to_string(vocab);
      });
    }
  }
  std::vector<uint8_t> soft_at(T, 0);
  for (const SoftTarget& st : soft_targets) {
    const std::string where = what + ": soft target at row " + std::to_string(st.position);
    require(st.position >= 0 && st.position < static_cast<int64_t>(T) && loss_mask[st.position],
            where + " is not a loss-masked row");
    require(!soft_at[st.position]++, where + " is given twice");
    require(!st.ids.empty() && st.ids.size() == st.probs.size(), where + ": ids and probs differ in length");
    double sum = 0;
    for (size_t k = 0; k < st.ids.size(); ++k) {
      require(st.ids[k] >= 0 && st.ids[k] < vocab,
              [&] { return where + ": id " + std::to_string(st.ids[k]) + " outside the vocabulary"; });
      require(std::isfinite(st.probs[k]) && st.probs[k] >= 0,
              [&] { return where + ": probabilities must be finite and >= 0"; });
      sum += st.probs[k];
    }
    require(std::abs(sum - 1.0) < 1e-3, where + ": probabilities sum to " + std::to_string(sum) + ", not 1");
  }
}

Batch make_batch(std::span<const Example> examples, BatchMode mode, int32_t pad_id) {
  require(!examples.empty(), "make_batch: no examples");
  size_t longest = 0;
  for (size_t i = 0; i < examples.size(); ++i) {
    const Example& e = examples[i];
    require(e.tokens.size() >= 2 && e.prompt_len >= 1 && e.prompt_len < static_cast<int64_t>(e.tokens.size()),
            "make_batch: example " + std::to_string(i) + " has " + std::to_string(e.tokens.size()) +
                " tokens and prompt_len " + std::to_string(e.prompt_len) + " (need 1 <= prompt_len < tokens)");
    longest = std::max(longest, e.tokens.size());
  }
  Batch b;
  b.cu_seqlens.push_back(0);
  for (const Example& e : examples) {
    const size_t n = e.tokens.size();
    const size_t len = mode == BatchMode::Padding ? longest : n;
    for (size_t t = 0; t < len; ++t) {
      b.tokens.push_back(t < n ? e.tokens[t] : pad_id);
      b.positions.push_back(static_cast<int32_t>(t));
      // Right padding keeps the real tokens first, so causal attention never lets them see a pad.
      const bool counted = t + 1 < n && static_cast<int64_t>(t) + 1 >= e.prompt_len;
      b.targets.push_back(counted ? e.tokens[t + 1] : 0);
      b.loss_mask.push_back(counted ? 1 : 0);
    }
    b.cu_seqlens.push_back(static_cast<int32_t>(b.tokens.size()));
  }
  return b;
}

Batch prompt_batch(std::span<const std::span<const int32_t>> prompts, std::span<const int64_t> offsets) {
  require(offsets.empty() || offsets.size() == prompts.size(), "prompt_batch: one offset per prompt");
  Batch b;
  b.cu_seqlens.push_back(0);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int64_t start = offsets.empty() ? 0 : offsets[i];
    for (size_t t = 0; t < prompts[i].size(); ++t) {
      b.tokens.push_back(prompts[i][t]);
      b.positions.push_back(static_cast<int32_t>(start + static_cast<int64_t>(t)));
    }
    b.cu_seqlens.push_back(static_cast<int32_t>(b.tokens.size()));
  }
  b.targets.assign(b.tokens.size(), 0);
  b.loss_mask.assign(b.tokens.size(), 0);
  return b;
}

std::vector<int64_t> last_rows(const Batch& b) {
  std::vector<int64_t> rows;
  for (size_t i = 1; i < b.cu_seqlens.size(); ++i) rows.push_back(b.cu_seqlens[i] - 1);
  return rows;
}

}  // namespace pricer
