#pragma once
// The number tokens of a vocabulary: the tokens that are exactly a decimal number 0..999 written
// without leading zeros ("0", "7", "42", "999"; not "007" or "1000"). A price's whole dollars are
// one such token after "Price is $", so prices are read from them (predict), trained as rows of
// their own (--trainable-tokens numbers) and smoothed over (--price-smoothing).
#include <cstdint>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace pricer {

struct NumberTokens {
  std::vector<int32_t> ids;  // ascending
  std::vector<int> values;  // values[i] is the number ids[i] spells
};

// Throws Error when the vocabulary has none: prices cannot be read from such a model.
NumberTokens number_tokens(const Tokenizer& tok);

}  // namespace pricer
