#pragma once
// Text of a growing token sequence, handed out piece by piece as tokens arrive (streamed
// generation). What it hands out, concatenated, is exactly tok.decode(ids pushed) (after the
// context): multi-byte UTF-8 characters split over several byte tokens are held back until
// complete, and a tokenizer's own decode rules (SentencePiece's dummy-prefix space after BOS, a
// special token's text) apply as in a whole-sequence decode.
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace pricer {

class TextStream {
 public:
  // context: tokens before the streamed ones (e.g. BOS, or a prompt not to be echoed); they shape
  // the decode of what follows but their own text is not handed out.
  explicit TextStream(const Tokenizer& tok, std::vector<int32_t> context = {});
  // The text that became complete with this token (may be empty).
  std::string push(int32_t id);
  // Whatever is still held back (an incomplete UTF-8 character at the very end).
  std::string finish();

 private:
  const Tokenizer& tok_;
  std::vector<int32_t> ids_;
  size_t emitted_ = 0;  // bytes of decode(ids_) handed out or belonging to the context
};

// Length of the longest prefix of s that does not end inside an incomplete UTF-8 character
// (invalid bytes count as complete, so they are never held back forever).
size_t utf8_complete_prefix(const std::string& s);

}  // namespace pricer
