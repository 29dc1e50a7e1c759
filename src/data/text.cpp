#include "data/text.h"

#include "core/random.h"

namespace pricer::data {

namespace {

inline bool is_space(unsigned char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

inline bool is_edge_punct(char c) {
  switch (c) {
    case ',':
    case '.':
    case ';':
    case ':':
    case '(':
    case ')':
    case '[':
    case ']':
    case '!':
    case '?':
    case '\'':
    case '"': return true;
    default: return false;
  }
}

}  // namespace

bool is_part_number(std::string_view w) {
  while (!w.empty() && is_edge_punct(w.front())) w.remove_prefix(1);
  while (!w.empty() && is_edge_punct(w.back())) w.remove_suffix(1);
  if (w.size() < 7) return false;
  bool letter = false, digit = false;
  for (char c : w) {
    if (c >= 'A' && c <= 'Z') {
      letter = true;
    } else if (c >= '0' && c <= '9') {
      digit = true;
    } else {
      return false;
    }
  }
  return letter && digit;
}

size_t append_words(std::string& out, std::string_view in, bool scrub_part_numbers) {
  size_t n = 0, i = 0;
  const size_t len = in.size();
  while (i < len) {
    while (i < len && is_space(static_cast<unsigned char>(in[i]))) ++i;
    const size_t start = i;
    while (i < len && !is_space(static_cast<unsigned char>(in[i]))) ++i;
    if (i == start) break;
    std::string_view word = in.substr(start, i - start);
    if (scrub_part_numbers && is_part_number(word)) continue;
    if (!out.empty() && out.back() != '\n') out += ' ';
    out.append(word);
    ++n;
  }
  return n;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

size_t utf8_prefix_words(std::string_view s, size_t max_chars) {
  size_t chars = 0, i = 0;
  for (; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (chars == max_chars) break;
      ++chars;
    }
  }
  if (i >= s.size()) return s.size();
  // Cut before the word that straddles the limit, unless the prefix is one giant word.
  size_t cut = i;
  while (cut > 0 && !is_space(static_cast<unsigned char>(s[cut]))) --cut;
  if (cut == 0) return i;
  while (cut > 0 && is_space(static_cast<unsigned char>(s[cut - 1]))) --cut;
  return cut;
}

void trim_partial_utf8(std::string& s) {
  // Walk back over at most 3 continuation bytes to the lead byte and check the length it needs.
  size_t i = s.size(), cont = 0;
  while (i > 0 && cont < 4 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i, ++cont;
  if (i == 0) {
    s.resize(s.size() - cont);
    return;
  }
  const auto lead = static_cast<unsigned char>(s[i - 1]);
  size_t need = 0;
  if (lead < 0x80) need = 0;
  else if ((lead & 0xE0) == 0xC0) need = 1;
  else if ((lead & 0xF0) == 0xE0) need = 2;
  else if ((lead & 0xF8) == 0xF0) need = 3;
  if (lead >= 0x80 && cont < need) s.resize(i - 1);
}

void rtrim(std::string& s) {
  while (!s.empty() && is_space(static_cast<unsigned char>(s.back()))) s.pop_back();
}

std::string cut_to_tokens(const std::string& text, const Tokenizer& tok, int64_t budget, uint32_t* n_tokens) {
  std::vector<int32_t> ids = tok.encode(text);
  std::string out = text;
  if (budget >= 0 && ids.size() > static_cast<size_t>(budget)) {
    ids.resize(static_cast<size_t>(budget));
    out = tok.decode(ids);
    const size_t decoded = out.size();
    trim_partial_utf8(out);
    rtrim(out);
    // Byte-level tokens can end mid-character; count what is actually kept.
    if (out.size() != decoded) ids = tok.encode(out);
  }
  if (n_tokens) *n_tokens = static_cast<uint32_t>(ids.size());
  return out;
}

size_t truncate_words(std::string& s, size_t max_words) {
  size_t n = 0, i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(static_cast<unsigned char>(s[i]))) ++i;
    if (i >= s.size()) break;
    if (n == max_words) {
      s.resize(i);
      rtrim(s);
      return n;
    }
    while (i < s.size() && !is_space(static_cast<unsigned char>(s[i]))) ++i;
    ++n;
  }
  return n;
}

size_t count_words(std::string_view s) {
  size_t n = 0;
  bool in_word = false;
  for (unsigned char c : s) {
    const bool sp = is_space(c);
    n += !sp && !in_word;
    in_word = !sp;
  }
  return n;
}

std::string normalize_title(std::string_view title) {
  std::string out;
  out.reserve(title.size());
  append_words(out, title, false);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

uint64_t hash64(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  return mix64(h ^ s.size());
}

}  // namespace pricer::data
