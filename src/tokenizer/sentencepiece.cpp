// SentencePiece-style BPE (Llama 2 GGUF `llama` vocab, llama2.c tok*.bin, Hugging Face
// tokenizer.json with byte_fallback): the text, with spaces as pieces' "▁" and a dummy prefix
// space, starts as one token per character and merges by score; characters outside the vocab
// fall back to <0xNN> byte tokens.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/bpe.h"

namespace pricer {
namespace tok {
namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581 "▁"

// The byte of a "<0xNN>" token, or -1.
int parse_byte_token(std::string_view s) {
  if (s.size() != 6 || s.substr(0, 3) != "<0x" || s[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  int hi = hex(s[3]), lo = hex(s[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

class SentencePieceBpe final : public BpeTokenizer {
 public:
  SentencePieceBpe(std::vector<std::string> pieces, std::vector<TokenType> types, MergeTable merges, int32_t bos,
                   int32_t eos, int32_t unk, bool add_space_prefix, const std::string& source,
                   std::vector<float> scores)
      : pieces_(std::move(pieces)),
        types_(std::move(types)),
        merges_(std::move(merges)),
        scores_(std::move(scores)),
        bos_(bos),
        eos_(eos),
        unk_(unk),
        add_space_prefix_(add_space_prefix) {
    byte_ids_.fill(-1);
    for (size_t i = 0; i < pieces_.size(); ++i) {
      auto id = static_cast<int32_t>(i);
      switch (types_[i]) {
        case TokenType::Normal: piece_ids_.try_emplace(pieces_[i], id); break;
        case TokenType::Byte: {
          int b = parse_byte_token(pieces_[i]);
          if (b < 0)
            throw Error(source + ": token " + std::to_string(i) + " '" + pieces_[i] +
                        "' has type byte but is not spelled <0xNN>");
          if (byte_ids_[b] < 0) byte_ids_[b] = id;
          pieces_[i].assign(1, static_cast<char>(b));  // decode emits the byte itself
          break;
        }
        case TokenType::Control: specials_.add(pieces_[i], id, false); break;
        case TokenType::UserDefined: specials_.add(pieces_[i], id, true); break;
        default: break;
      }
    }
    specials_.finish();
  }

  std::vector<int32_t> encode(std::string_view text, bool allow_special) const override {
    std::vector<int32_t> out;
    std::vector<Segment> segments;
    specials_.split(text, allow_special, segments);
    std::vector<int32_t> symbols;
    std::string s;
    bool after_special = true;  // the dummy prefix goes at the start and after special tokens
    for (const Segment& seg : segments) {
      if (seg.id >= 0) {
        out.push_back(seg.id);
        after_special = true;
        continue;
      }
      s.clear();
      if (add_space_prefix_ && after_special) s += ' ';
      s += seg.text;
      after_special = false;
      symbols.clear();
      for (size_t i = 0; i < s.size();) {
        size_t len = utf8_char_len(s, i);
        auto it = piece_ids_.find(std::string_view(s).substr(i, len));
        if (it != piece_ids_.end()) {
          symbols.push_back(it->second);
        } else {
          fallback(std::string_view(s).substr(i, len), symbols);
        }
        i += len;
      }
      merge(symbols, merges_);
      out.insert(out.end(), symbols.begin(), symbols.end());
    }
    return out;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    bool strip = add_space_prefix_;  // drop the dummy prefix encode put in
    for (int32_t id : ids) {
      check(id);
      TokenType t = types_[static_cast<size_t>(id)];
      const std::string& p = pieces_[static_cast<size_t>(id)];
      if (t == TokenType::Control || t == TokenType::UserDefined) {
        out += p;
        strip = add_space_prefix_;
        continue;
      }
      if (strip && t != TokenType::Byte && !p.empty() && p[0] == ' ') out.append(p, 1);
      else out += p;
      strip = false;
    }
    return out;
  }

  std::string token_bytes(int32_t id) const override {
    check(id);
    return pieces_[static_cast<size_t>(id)];
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  int32_t bos_id() const override { return bos_; }
  int32_t eos_id() const override { return eos_; }

  VocabSpec spec() const override {
    VocabSpec v;
    v.byte_level = false;
    v.pieces = pieces_;
    v.types = types_;
    v.merges = merges_.entries();
    v.scores = scores_;
    v.add_space_prefix = add_space_prefix_;
    v.bos_id = bos_;
    v.eos_id = eos_;
    v.unk_id = unk_;
    v.add_bos = add_bos_;
    return v;
  }

 private:
  void check(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= pieces_.size())
      throw Error("decode: token id " + std::to_string(id) + " outside the vocab of " + std::to_string(pieces_.size()));
  }

  // A character outside the vocab: its bytes as <0xNN> tokens, else one <unk>.
  void fallback(std::string_view ch, std::vector<int32_t>& symbols) const {
    bool all_bytes =
        std::all_of(ch.begin(), ch.end(), [&](char c) { return byte_ids_[static_cast<unsigned char>(c)] >= 0; });
    if (all_bytes) {
      for (char c : ch) symbols.push_back(byte_ids_[static_cast<unsigned char>(c)]);
    } else if (unk_ >= 0) {
      symbols.push_back(unk_);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(ch[0]));
      throw Error(std::string("encode: no token for the character starting with byte ") + hex +
                  " (the vocab has neither byte fallback nor <unk>)");
    }
  }

  std::vector<std::string> pieces_;  // raw bytes, ' ' for a space; a byte token holds its byte
  std::vector<TokenType> types_;
  MergeTable merges_;
  std::vector<float> scores_;  // as loaded; empty when the merges came as ranks
  std::unordered_map<std::string_view, int32_t> piece_ids_;  // normal tokens (views of pieces_)
  std::array<int32_t, 256> byte_ids_{};
  SpecialMatcher specials_;
  int32_t bos_, eos_, unk_;
  bool add_space_prefix_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_sentencepiece(std::vector<std::string> pieces, std::vector<TokenType> types,
                                              MergeTable merges, int32_t bos_id, int32_t eos_id, int32_t unk_id,
                                              bool add_space_prefix, const std::string& source,
                                              std::vector<float> scores) {
  check_special_id(bos_id, pieces.size(), "BOS", source);
  check_special_id(eos_id, pieces.size(), "EOS", source);
  check_special_id(unk_id, pieces.size(), "UNK", source);
  return std::make_unique<SentencePieceBpe>(std::move(pieces), std::move(types), std::move(merges), bos_id, eos_id,
                                            unk_id, add_space_prefix, source, std::move(scores));
}

std::string spm_piece_to_raw(std::string_view token) {
  std::string out;
  for (size_t i = 0; i < token.size();) {
    if (token.compare(i, kSpaceMarker.size(), kSpaceMarker) == 0) {
      out += ' ';
      i += kSpaceMarker.size();
    } else {
      out += token[i++];
    }
  }
  return out;
}

std::vector<TokenType> spm_guess_types(const std::vector<std::string>& tokens, int32_t bos_id, int32_t eos_id) {
  std::vector<TokenType> types(tokens.size(), TokenType::Normal);
  for (size_t i = 0; i < tokens.size(); ++i) {
    auto id = static_cast<int32_t>(i);
    if (id == bos_id || id == eos_id) types[i] = TokenType::Control;
    else if (tokens[i] == "<unk>") types[i] = TokenType::Unknown;
    else if (parse_byte_token(tokens[i]) >= 0) types[i] = TokenType::Byte;
  }
  return types;
}

}  // namespace tok

std::unique_ptr<Tokenizer> make_sentencepiece_bpe(const std::vector<std::string>& tokens,
                                                  const std::vector<float>& scores,
                                                  const std::vector<int32_t>& token_types, int32_t bos_id,
                                                  int32_t eos_id, bool add_space_prefix, const std::string& source) {
  const size_t n = tokens.size();
  if (scores.size() != n)
    throw Error(source + ": " + std::to_string(scores.size()) + " scores for " + std::to_string(n) + " tokens");
  if (!token_types.empty() && token_types.size() != n)
    throw Error(source + ": " + std::to_string(token_types.size()) + " token types for " + std::to_string(n) +
                " tokens");
  tok::check_special_id(bos_id, n, "BOS", source);
  tok::check_special_id(eos_id, n, "EOS", source);
  std::vector<TokenType> types;
  if (token_types.empty()) {
    types = tok::spm_guess_types(tokens, bos_id, eos_id);
  } else {
    types.resize(n);
    for (size_t i = 0; i < n; ++i) {
      if (token_types[i] < 0 || token_types[i] > 6)
        throw Error(source + ": token " + std::to_string(i) + ": unknown token type " + std::to_string(token_types[i]));
      types[i] = static_cast<TokenType>(token_types[i]);
    }
  }
  std::vector<std::string> pieces(n);
  std::vector<uint8_t> mergeable(n);
  int32_t unk_id = -1;
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(scores[i])) throw Error(source + ": token " + std::to_string(i) + " has a NaN score");
    pieces[i] = types[i] == TokenType::Normal ? tok::spm_piece_to_raw(tokens[i]) : tokens[i];
    mergeable[i] = types[i] == TokenType::Normal;
    if (types[i] == TokenType::Unknown && unk_id < 0) unk_id = static_cast<int32_t>(i);
  }
  // Merge priority: the higher the score of the merged piece, the earlier. Equal scores share a
  // rank so that, as in SentencePiece, the leftmost pair goes first.
  std::vector<float> distinct(scores);
  std::sort(distinct.begin(), distinct.end(), std::greater<>());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::vector<int32_t> rank(n);
  for (size_t i = 0; i < n; ++i)
    rank[i] = static_cast<int32_t>(std::lower_bound(distinct.begin(), distinct.end(), scores[i], std::greater<>()) -
                                   distinct.begin());
  tok::MergeTable table;
  tok::add_all_splits(table, pieces, mergeable, rank);
  return tok::make_sentencepiece(std::move(pieces), std::move(types), std::move(table), bos_id, eos_id, unk_id,
                                 add_space_prefix, source, scores);
}

}  // namespace pricer
