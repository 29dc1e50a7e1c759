#include "tokenizer/bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <climits>

#include "core/error.h"

namespace pricer::tok {

// ---- merges ----

void MergeTable::add(int32_t left, int32_t right, int32_t rank, int32_t result) {
  auto [it, inserted] = map_.try_emplace(key(left, right), Merge{rank, result});
  if (!inserted && rank < it->second.rank) it->second = Merge{rank, result};
}

std::vector<MergeTable::Entry> MergeTable::entries() const {
  std::vector<Entry> out;
  out.reserve(map_.size());
  for (const auto& [k, m] : map_)
    out.push_back({static_cast<int32_t>(k >> 32), static_cast<int32_t>(k & 0xFFFFFFFFu), m});
  return out;
}

std::unique_ptr<Tokenizer> with_add_bos(std::unique_ptr<Tokenizer> t, bool add_bos) {
  static_cast<BpeTokenizer&>(*t).set_add_bos(add_bos);
  return t;
}

void merge_symbols(std::vector<int32_t>& ids, const MergeTable& table) {
  const int32_t n = static_cast<int32_t>(ids.size());
  if (n < 2) return;
  struct Cand {
    int32_t rank, pos, left, right, result;
  };
  // Min-heap on (rank, position): std heaps are max-heaps, so the comparison is reversed.
  auto later = [](const Cand& a, const Cand& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
  // Scratch buffers live per thread: encode runs this once per pre-token.
  thread_local std::vector<int32_t> next;
  thread_local std::vector<int32_t> prev;
  thread_local std::vector<Cand> heap;
  next.resize(n);
  prev.resize(n);
  heap.clear();
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  auto consider = [&](int32_t pos) {
    int32_t nx = next[pos];
    if (nx < 0) return;
    if (const Merge* m = table.find(ids[pos], ids[nx])) {
      heap.push_back({m->rank, pos, ids[pos], ids[nx], m->result});
      std::push_heap(heap.begin(), heap.end(), later);
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    Cand c = heap.back();
    heap.pop_back();
    // Entries go stale when a neighbour merged first; the ids tell whether the pair still stands.
    int32_t l = c.pos;
    if (ids[l] != c.left) continue;
    int32_t r = next[l];
    if (r < 0 || ids[r] != c.right) continue;
    ids[l] = c.result;
    ids[r] = -1;
    next[l] = next[r];
    if (next[r] >= 0) prev[next[r]] = l;
    if (prev[l] >= 0) consider(prev[l]);
    consider(l);
  }
  ids.erase(std::remove(ids.begin(), ids.end(), -1), ids.end());
}

void merge_symbols_reference(std::vector<int32_t>& ids, const MergeTable& table) {
  for (;;) {
    size_t best = SIZE_MAX;
    Merge best_merge{INT32_MAX, -1};
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      const Merge* m = table.find(ids[i], ids[i + 1]);
      if (m && m->rank < best_merge.rank) {
        best = i;
        best_merge = *m;
      }
    }
    if (best == SIZE_MAX) return;
    ids[best] = best_merge.result;
    ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
}

void add_all_splits(MergeTable& table, const std::vector<std::string>& pieces, const std::vector<uint8_t>& mergeable,
                    const std::vector<int32_t>& rank) {
  std::unordered_map<std::string_view, int32_t> ids;
  ids.reserve(pieces.size());
  for (size_t i = 0; i < pieces.size(); ++i)
    if (mergeable[i] && !pieces[i].empty()) ids.try_emplace(pieces[i], static_cast<int32_t>(i));
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (!mergeable[i]) continue;
    std::string_view p = pieces[i];
    for (size_t k = 1; k < p.size(); ++k) {
      auto l = ids.find(p.substr(0, k));
      if (l == ids.end()) continue;
      auto r = ids.find(p.substr(k));
      if (r == ids.end()) continue;
      table.add(l->second, r->second, rank[i], static_cast<int32_t>(i));
    }
  }
}

// ---- GPT-2 byte <-> unicode alphabet ----

namespace {

std::string utf8_encode(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xF0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3F));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

struct ByteAlphabet {
  std::array<std::string, 256> spelling;
  std::array<int16_t, 324> byte_of;  // code point -> byte, -1 outside the alphabet
  ByteAlphabet() {
    byte_of.fill(-1);
    uint32_t shifted = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      uint32_t cp = printable ? b : shifted++;
      spelling[b] = utf8_encode(cp);
      byte_of[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

}  // namespace

const std::array<std::string, 256>& byte_to_unicode() { return alphabet().spelling; }

bool unicode_to_bytes(std::string_view s, std::string& out) {
  const auto& a = alphabet();
  out.clear();
  for (size_t i = 0; i < s.size();) {
    size_t len = utf8_char_len(s, i);
    auto c0 = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    if (len == 1) {
      if (c0 >= 0x80) return false;
      cp = c0;
    } else if (len == 2) {
      cp = ((c0 & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
    } else {
      return false;  // every code point of the alphabet is below U+0800
    }
    if (cp >= a.byte_of.size() || a.byte_of[cp] < 0) return false;
    out += static_cast<char>(a.byte_of[cp]);
    i += len;
  }
  return true;
}

// ---- UTF-8 ----

size_t utf8_char_len(std::string_view s, size_t i) {
  auto at = [&](size_t k) -> int { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : -1; };
  auto cont = [&](size_t k, int lo, int hi) {
    int c = at(k);
    return c >= lo && c <= hi;
  };
  int c = at(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1, 0x80, 0xBF) ? 2 : 1;
  if (c >= 0xE0 && c <= 0xEF) {
    int lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    return cont(1, lo, hi) && cont(2, 0x80, 0xBF) ? 3 : 1;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    int lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    return cont(1, lo, hi) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 1;
  }
  return 1;
}

// ---- pre-tokenizer ----

namespace {
std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}
}  // namespace

RegexSplitter::RegexSplitter(const std::string& pattern, const std::string& source) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  // MATCH_INVALID_UTF: invalid bytes simply never match instead of failing the whole call.
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &offset, nullptr);
  if (!code)
    throw Error(source + ": pre-tokenizer pattern: " + pcre2_message(err) + " at offset " + std::to_string(offset));
  // Without JIT support PCRE2 keeps the interpreter, which gives the same matches.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

RegexSplitter::~RegexSplitter() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void RegexSplitter::split(std::string_view text, std::vector<std::string_view>& out) const {
  auto* code = static_cast<pcre2_code*>(code_);
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(code, nullptr), &pcre2_match_data_free);
  if (!md) throw std::bad_alloc();
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    int rc = pcre2_match(code, subject, text.size(), pos, 0, md.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) {
      out.push_back(text.substr(pos));
      return;
    }
    if (rc < 0) throw Error("pre-tokenizer: " + pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    size_t start = ov[0], end = ov[1];
    if (start > pos) out.push_back(text.substr(pos, start - pos));
    if (end == start) {
      // A pattern that matches the empty string must still make progress.
      if (start >= text.size()) return;
      end = start + utf8_char_len(text, start);
    }
    out.push_back(text.substr(start, end - start));
    pos = end;
  }
}

// ---- special tokens ----

void check_special_id(int32_t id, size_t n, const char* what, const std::string& source) {
  if (id < -1 || (id >= 0 && static_cast<size_t>(id) >= n))
    throw Error(source + ": " + what + " id " + std::to_string(id) + " outside the vocab of " + std::to_string(n));
}

void SpecialMatcher::add(std::string text, int32_t id, bool always) {
  if (text.empty()) return;
  tokens_.push_back({std::move(text), id, always});
}

void SpecialMatcher::finish() {
  std::stable_sort(tokens_.begin(), tokens_.end(),
                   [](const Entry& a, const Entry& b) { return a.text.size() > b.text.size(); });
  first_byte_.fill(false);
  for (const auto& e : tokens_) first_byte_[static_cast<unsigned char>(e.text[0])] = true;
}

void SpecialMatcher::split(std::string_view text, bool allow_special, std::vector<Segment>& out) const {
  size_t start = 0;
  if (!tokens_.empty()) {
    for (size_t i = 0; i < text.size(); ++i) {
      if (!first_byte_[static_cast<unsigned char>(text[i])]) continue;
      for (const auto& e : tokens_) {
        if (!allow_special && !e.always) continue;
        if (text.compare(i, e.text.size(), e.text) != 0) continue;
        if (i > start) out.push_back({text.substr(start, i - start), -1});
        out.push_back({text.substr(i, e.text.size()), e.id});
        start = i + e.text.size();
        i = start - 1;
        break;
      }
    }
  }
  if (start < text.size()) out.push_back({text.substr(start), -1});
}

}  // namespace pricer::tok
