#include "tokenizer/number_tokens.h"

#include <string>

#include "core/error.h"

namespace pricer {

namespace {

// 0..999 written plainly, else -1.
int number_value(const std::string& s) {
  if (s.empty() || s.size() > 3) return -1;
  if (s.size() > 1 && s[0] == '0') return -1;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

}  // namespace

NumberTokens number_tokens(const Tokenizer& tok) {
  NumberTokens n;
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    const int v = number_value(tok.token_bytes(id));
    if (v >= 0) {
      n.ids.push_back(id);
      n.values.push_back(v);
    }
  }
  require(!n.ids.empty(), "tokenizer has no number tokens 0-999: prices cannot be read from the model");
  return n;
}

}  // namespace pricer
