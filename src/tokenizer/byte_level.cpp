// Byte-level BPE (GPT-2, Llama 3): the text is split by a regex pre-tokenizer, each piece starts as
// one token per byte and merges by rank.
#include <cstdio>
#include <mutex>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/bpe.h"

namespace pricer {
namespace tok {
namespace {

struct StrHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StrMap = std::unordered_map<std::string, V, StrHash, std::equal_to<>>;

class ByteLevelBpe final : public BpeTokenizer {
 public:
  ByteLevelBpe(std::vector<std::string> pieces, std::vector<TokenType> types, MergeTable merges, int32_t bos,
               int32_t eos, const std::string& pattern, bool ignore_merges, const std::string& source)
      : pieces_(std::move(pieces)),
        types_(std::move(types)),
        merges_(std::move(merges)),
        splitter_(pattern, source),
        pattern_(pattern),
        bos_(bos),
        eos_(eos),
        ignore_merges_(ignore_merges) {
    byte_ids_.fill(-1);
    for (size_t i = 0; i < pieces_.size(); ++i) {
      auto id = static_cast<int32_t>(i);
      switch (types_[i]) {
        case TokenType::Normal:
          piece_ids_.try_emplace(pieces_[i], id);
          if (pieces_[i].size() == 1 && byte_ids_[static_cast<unsigned char>(pieces_[i][0])] < 0)
            byte_ids_[static_cast<unsigned char>(pieces_[i][0])] = id;
          break;
        case TokenType::Control: specials_.add(pieces_[i], id, false); break;
        case TokenType::UserDefined: specials_.add(pieces_[i], id, true); break;
        default: break;
      }
    }
    specials_.finish();
    for (int b = 0; b < 256; ++b)
      if (byte_ids_[b] < 0) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02X", b);
        throw Error(source + ": byte-level vocab has no token for byte " + hex);
      }
  }

  std::vector<int32_t> encode(std::string_view text, bool allow_special) const override {
    std::vector<int32_t> out;
    std::vector<Segment> segments;
    specials_.split(text, allow_special, segments);
    std::vector<std::string_view> words;
    std::vector<int32_t> symbols;
    for (const Segment& s : segments) {
      if (s.id >= 0) {
        out.push_back(s.id);
        continue;
      }
      words.clear();
      splitter_.split(s.text, words);
      for (std::string_view w : words) encode_word(w, out, symbols);
    }
    return out;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    for (int32_t id : ids) out += piece(id);
    return out;
  }
  std::string token_bytes(int32_t id) const override { return piece(id); }
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  int32_t bos_id() const override { return bos_; }
  int32_t eos_id() const override { return eos_; }

  VocabSpec spec() const override {
    VocabSpec v;
    v.byte_level = true;
    v.pieces = pieces_;
    v.types = types_;
    v.merges = merges_.entries();
    v.split_pattern = pattern_;
    v.ignore_merges = ignore_merges_;
    v.bos_id = bos_;
    v.eos_id = eos_;
    v.add_bos = add_bos_;
    return v;
  }

 private:
  // Word results are cached: product text repeats its words, and a lookup is far cheaper than
  // the merge loop. Bounded: the cache starts over when full.
  static constexpr size_t kCacheMax = 1 << 16;

  const std::string& piece(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= pieces_.size())
      throw Error("decode: token id " + std::to_string(id) + " outside the vocab of " + std::to_string(pieces_.size()));
    return pieces_[static_cast<size_t>(id)];
  }

  void encode_word(std::string_view w, std::vector<int32_t>& out, std::vector<int32_t>& symbols) const {
    if (ignore_merges_) {
      auto it = piece_ids_.find(w);
      if (it != piece_ids_.end()) {
        out.push_back(it->second);
        return;
      }
    }
    if (!reference_) {
      std::lock_guard lock(cache_mutex_);
      auto it = cache_.find(w);
      if (it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    symbols.clear();
    for (char c : w) symbols.push_back(byte_ids_[static_cast<unsigned char>(c)]);
    merge(symbols, merges_);
    out.insert(out.end(), symbols.begin(), symbols.end());
    if (!reference_) {
      std::lock_guard lock(cache_mutex_);
      if (cache_.size() >= kCacheMax) cache_.clear();
      cache_.try_emplace(std::string(w), symbols);
    }
  }

  std::vector<std::string> pieces_;  // raw bytes of each token
  std::vector<TokenType> types_;
  MergeTable merges_;
  RegexSplitter splitter_;
  std::string pattern_;
  StrMap<int32_t> piece_ids_;  // normal tokens by bytes
  std::array<int32_t, 256> byte_ids_{};
  SpecialMatcher specials_;
  int32_t bos_, eos_;
  bool ignore_merges_;
  mutable std::mutex cache_mutex_;
  mutable StrMap<std::vector<int32_t>> cache_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_level(std::vector<std::string> pieces, std::vector<TokenType> types,
                                           MergeTable merges, int32_t bos_id, int32_t eos_id,
                                           const std::string& split_pattern, bool ignore_merges,
                                           const std::string& source) {
  check_special_id(bos_id, pieces.size(), "BOS", source);
  check_special_id(eos_id, pieces.size(), "EOS", source);
  return std::make_unique<ByteLevelBpe>(std::move(pieces), std::move(types), std::move(merges), bos_id, eos_id,
                                        split_pattern, ignore_merges, source);
}

}  // namespace tok

std::string pretokenizer_pattern(const std::string& name) {
  if (name == "llama3" || name == "llama-bpe" || name == "smaug-bpe") return kLlama3Pattern;
  if (name == "gpt2" || name == "gpt-2" || name == "default" || name.empty()) return kGpt2Pattern;
  throw Error("unsupported pre-tokenizer '" + name + "' (known: llama-bpe, smaug-bpe, gpt-2, default)");
}

namespace tok {

std::unique_ptr<Tokenizer> make_byte_level_from_pairs(const std::vector<std::string>& tokens,
                                                      const std::vector<std::pair<std::string, std::string>>& merges,
                                                      const std::vector<TokenType>& types, int32_t bos_id,
                                                      int32_t eos_id, const std::string& split_pattern,
                                                      bool ignore_merges, const std::string& source) {
  const size_t n = tokens.size();
  std::vector<std::string> pieces(n);
  std::unordered_map<std::string_view, int32_t> by_spelling;  // normal tokens as spelled
  for (size_t i = 0; i < n; ++i) {
    // Control and user-defined tokens are literal text; the rest use GPT-2's byte alphabet.
    if (types[i] == TokenType::Control || types[i] == TokenType::UserDefined) {
      pieces[i] = tokens[i];
      continue;
    }
    if (!unicode_to_bytes(tokens[i], pieces[i]))
      throw Error(source + ": token " + std::to_string(i) + " '" + tokens[i] +
                  "' is not spelled in the byte-level alphabet");
    if (types[i] == TokenType::Normal) by_spelling.try_emplace(tokens[i], static_cast<int32_t>(i));
  }
  MergeTable table;
  if (merges.empty()) {
    std::vector<uint8_t> mergeable(n);
    std::vector<int32_t> rank(n);
    for (size_t i = 0; i < n; ++i) {
      mergeable[i] = types[i] == TokenType::Normal;
      rank[i] = static_cast<int32_t>(i);
    }
    add_all_splits(table, pieces, mergeable, rank);
  }
  std::string joined;
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& [left, right] = merges[r];
    joined = left + right;
    auto l = by_spelling.find(left), rt = by_spelling.find(right), j = by_spelling.find(joined);
    if (l == by_spelling.end() || rt == by_spelling.end() || j == by_spelling.end()) {
      const std::string& missing = l == by_spelling.end() ? left : rt == by_spelling.end() ? right : joined;
      throw Error(source + ": merge " + std::to_string(r) + " '" + left + " " + right + "': '" + missing +
                  "' is not a token of the vocab");
    }
    table.add(l->second, rt->second, static_cast<int32_t>(r), j->second);
  }
  return make_byte_level(std::move(pieces), types, std::move(table), bos_id, eos_id, split_pattern, ignore_merges,
                         source);
}

}  // namespace tok

std::unique_ptr<Tokenizer> make_byte_level_bpe(const std::vector<std::string>& tokens,
                                               const std::vector<std::string>& merges,
                                               const std::vector<int32_t>& token_types, int32_t bos_id, int32_t eos_id,
                                               const std::string& split_pattern, bool ignore_merges,
                                               const std::string& source) {
  const size_t n = tokens.size();
  if (!token_types.empty() && token_types.size() != n)
    throw Error(source + ": " + std::to_string(token_types.size()) + " token types for " + std::to_string(n) +
                " tokens");
  std::vector<TokenType> types(n, TokenType::Normal);
  for (size_t i = 0; i < token_types.size(); ++i) {
    if (token_types[i] < 0 || token_types[i] > 6)
      throw Error(source + ": token " + std::to_string(i) + ": unknown token type " + std::to_string(token_types[i]));
    types[i] = static_cast<TokenType>(token_types[i]);
  }
  // Byte-level spellings never hold a literal space (GPT-2 spells it "Ġ"), so one space
  // separates the two halves of a merge.
  std::vector<std::pair<std::string, std::string>> pairs;
  pairs.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const std::string& m = merges[r];
    size_t sp = m.find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 == m.size() || m.find(' ', sp + 1) != std::string::npos)
      throw Error(source + ": merge " + std::to_string(r) + " '" + m + "': expected two tokens separated by one space");
    pairs.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  return tok::make_byte_level_from_pairs(tokens, pairs, types, bos_id, eos_id, split_pattern, ignore_merges, source);
}

}  // namespace pricer
