#pragma once
// Building blocks shared by the tokenizers: the BPE merge loop (fast and reference), GPT-2's
// byte<->unicode alphabet, the PCRE2 pre-tokenizer, special-token splitting and UTF-8 helpers.
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace pricer::tok {

// ---- merges ----

struct Merge {
  int32_t rank;  // lower merges first
  int32_t result;  // id of the merged token
};

// (left id, right id) -> merge. A pair added twice keeps its lowest rank.
class MergeTable {
 public:
  void add(int32_t left, int32_t right, int32_t rank, int32_t result);
  const Merge* find(int32_t left, int32_t right) const {
    auto it = map_.find(key(left, right));
    return it == map_.end() ? nullptr : &it->second;
  }
  size_t size() const { return map_.size(); }

  struct Entry {
    int32_t left, right;
    Merge merge;
  };
  std::vector<Entry> entries() const;  // in no particular order

 private:
  static uint64_t key(int32_t l, int32_t r) { return (uint64_t(uint32_t(l)) << 32) | uint32_t(r); }
  std::unordered_map<uint64_t, Merge> map_;
};

// Merges adjacent symbols in place until no pair merges: lowest rank first, leftmost among equal
// ranks (the rule tiktoken, Hugging Face and SentencePiece share). A heap of candidate pairs over
// a linked list of symbols: O(n log n).
void merge_symbols(std::vector<int32_t>& ids, const MergeTable& table);
// The plain reference: rescans every adjacent pair after each merge, O(n^2).
void merge_symbols_reference(std::vector<int32_t>& ids, const MergeTable& table);

// Adds a merge for every split of every token into two tokens (tiktoken's and SentencePiece's
// rule: any pair whose concatenation is a token merges). pieces[id] are raw bytes; mergeable[id]
// says which tokens take part; rank[id] is the priority of producing token id.
void add_all_splits(MergeTable& table, const std::vector<std::string>& pieces, const std::vector<uint8_t>& mergeable,
                    const std::vector<int32_t>& rank);

// ---- GPT-2 byte <-> unicode alphabet ----

// UTF-8 spelling of each byte in GPT-2's alphabet (printable bytes stand for themselves, the
// others are shifted to U+0100..).
const std::array<std::string, 256>& byte_to_unicode();
// Raw bytes of a token spelled in that alphabet; false if a character is outside it.
bool unicode_to_bytes(std::string_view s, std::string& out);

// ---- UTF-8 ----

// Length of the valid UTF-8 sequence starting at s[i], or 1 for a byte that does not start one.
size_t utf8_char_len(std::string_view s, size_t i);

// ---- pre-tokenizer ----

// Splits text with a PCRE2 pattern (UTF + UCP, JIT when available). Bytes no match covers (invalid
// UTF-8) come out as their own pieces, so the pieces always concatenate back to the text.
class RegexSplitter {
 public:
  RegexSplitter(const std::string& pattern, const std::string& source);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;
  void split(std::string_view text, std::vector<std::string_view>& out) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8
};

// ---- special tokens ----

struct Segment {
  std::string_view text;  // plain text when id < 0
  int32_t id = -1;  // special token id
};

// Finds special-token text in input. Tokens marked `always` match even without allow_special
// (user-defined / non-special added tokens); the longest token wins at a position.
class SpecialMatcher {
 public:
  void add(std::string text, int32_t id, bool always);
  void finish();  // call once after the last add()
  bool empty() const { return tokens_.empty(); }
  void split(std::string_view text, bool allow_special, std::vector<Segment>& out) const;

 private:
  struct Entry {
    std::string text;
    int32_t id;
    bool always;
  };
  std::vector<Entry> tokens_;  // longest first
  std::array<bool, 256> first_byte_{};
};

// ---- tokenizer base ----

// Everything a BPE tokenizer is made of, so it can be written out in another format.
struct VocabSpec {
  bool byte_level = true;  // false: SentencePiece-style
  std::vector<std::string> pieces;  // as held: raw bytes (SentencePiece: ' ' for a space, a byte
                                    // token its byte), special tokens their text
  std::vector<TokenType> types;
  std::vector<MergeTable::Entry> merges;
  std::vector<float> scores;  // SentencePiece-style from scores only; else empty
  std::string split_pattern;  // byte-level only
  bool ignore_merges = false;  // byte-level only
  bool add_space_prefix = false;  // SentencePiece-style only
  int32_t bos_id = -1, eos_id = -1, unk_id = -1;
  int add_bos = -1;  // whether BOS goes before a text: 1, 0, or -1 unknown
};

// Common base of the BPE tokenizers built here. Reference mode swaps in the plain O(n^2) merge
// loop and bypasses every cache, so tests and benchmarks can hold the fast path against it.
class BpeTokenizer : public Tokenizer {
 public:
  void set_reference_mode(bool on) { reference_ = on; }
  // Recorded by the loaders that know it (tiktoken, llama2.c, GGUF, ...), for writers.
  void set_add_bos(bool on) { add_bos_ = on ? 1 : 0; }
  virtual VocabSpec spec() const = 0;

 protected:
  void merge(std::vector<int32_t>& ids, const MergeTable& table) const {
    if (reference_) merge_symbols_reference(ids, table);
    else merge_symbols(ids, table);
  }
  bool reference_ = false;
  int add_bos_ = -1;
};

// Records add_bos on a tokenizer built by the factories here (all of them BpeTokenizers).
std::unique_ptr<Tokenizer> with_add_bos(std::unique_ptr<Tokenizer> t, bool add_bos);

// ---- internal factories ----

// Throws Error unless id is -1 (none) or a token of a vocab of n.
void check_special_id(int32_t id, size_t n, const char* what, const std::string& source);

// SentencePiece-style BPE with an explicit merge table (Hugging Face tokenizer.json with
// byte_fallback uses merge ranks instead of scores). pieces are raw bytes with ' ' for spaces.
// scores: the per-token scores the merge ranks were derived from, kept for writers (may be empty).
std::unique_ptr<Tokenizer> make_sentencepiece(std::vector<std::string> pieces, std::vector<TokenType> types,
                                              MergeTable merges, int32_t bos_id, int32_t eos_id, int32_t unk_id,
                                              bool add_space_prefix, const std::string& source,
                                              std::vector<float> scores = {});

// Byte-level BPE from tokens spelled in GPT-2's alphabet and merges as (left, right) spellings in
// priority order (see make_byte_level_bpe).
std::unique_ptr<Tokenizer> make_byte_level_from_pairs(const std::vector<std::string>& tokens,
                                                      const std::vector<std::pair<std::string, std::string>>& merges,
                                                      const std::vector<TokenType>& types, int32_t bos_id,
                                                      int32_t eos_id, const std::string& split_pattern,
                                                      bool ignore_merges, const std::string& source);

// SentencePiece spelling to raw bytes: "▁" becomes ' '.
std::string spm_piece_to_raw(std::string_view token);
// Token kinds for a vocab that does not store them (llama2.c): <0xNN> bytes, <unk>, BOS/EOS.
std::vector<TokenType> spm_guess_types(const std::vector<std::string>& tokens, int32_t bos_id, int32_t eos_id);

// Byte-level BPE from raw-byte pieces and a merge table.
std::unique_ptr<Tokenizer> make_byte_level(std::vector<std::string> pieces, std::vector<TokenType> types,
                                           MergeTable merges, int32_t bos_id, int32_t eos_id,
                                           const std::string& split_pattern, bool ignore_merges,
                                           const std::string& source);

}  // namespace pricer::tok
