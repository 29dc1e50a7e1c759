#include "tokenizer/text_stream.h"

#include <algorithm>

namespace pricer {

size_t utf8_complete_prefix(const std::string& s) {
  // Only the last (up to 3) bytes can be an unfinished character: find its lead byte.
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: keep looking for the lead
    const size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

TextStream::TextStream(const Tokenizer& tok, std::vector<int32_t> context) : tok_(tok), ids_(std::move(context)) {
  emitted_ = ids_.empty() ? 0 : tok_.decode(ids_).size();
}

std::string TextStream::push(int32_t id) {
  ids_.push_back(id);
  // Decoding the whole sequence again keeps every decode rule exact; it costs microseconds per
  // token, far below one forward pass.
  const std::string text = tok_.decode(ids_);
  if (text.size() <= emitted_) return {};
  const size_t end = std::max(emitted_, utf8_complete_prefix(text));
  std::string out = text.substr(emitted_, end - emitted_);
  emitted_ = end;
  return out;
}

std::string TextStream::finish() {
  if (ids_.empty()) return {};
  const std::string text = tok_.decode(ids_);
  std::string out = emitted_ < text.size() ? text.substr(emitted_) : std::string();
  emitted_ = text.size();
  return out;
}

}  // namespace pricer
