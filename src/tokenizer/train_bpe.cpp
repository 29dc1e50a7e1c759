#include "tokenizer/train_bpe.h"

#include <algorithm>
#include <optional>
#include <queue>
#include <unordered_map>

#include "core/atomic_file.h"
#include "core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/vocab_export.h"

namespace pricer {
namespace {

constexpr int32_t kNumberTokens = 990;  // "10".."999"; "0".."9" are byte tokens
const char* const kBos = "<|begin_of_text|>";
const char* const kEos = "<|end_of_text|>";

bool all_digits(std::string_view w) {
  return std::all_of(w.begin(), w.end(), [](char c) { return c >= '0' && c <= '9'; });
}

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

// Distinct pre-tokens with their counts, sorted by bytes so that ids do not depend on hashing or
// on how the texts were shared among threads. Digit runs are left out: numbers are fixed tokens.
std::vector<std::pair<std::string, int64_t>> count_words(const std::vector<std::string>& texts,
                                                         const tok::RegexSplitter& splitter) {
  std::unordered_map<std::string, int64_t> total;
#pragma omp parallel
  {
    std::unordered_map<std::string, int64_t> local;
    std::vector<std::string_view> pieces;
#pragma omp for schedule(dynamic, 64) nowait
    for (size_t i = 0; i < texts.size(); ++i) {
      pieces.clear();
      splitter.split(texts[i], pieces);
      for (std::string_view p : pieces)
        if (!all_digits(p)) ++local[std::string(p)];
    }
#pragma omp critical
    for (auto& [w, c] : local) total[w] += c;
  }
  std::vector<std::pair<std::string, int64_t>> words(total.begin(), total.end());
  std::sort(words.begin(), words.end());
  return words;
}

// The vocab as it grows: raw bytes per id and the merges in priority order.
struct BpeVocab {
  std::vector<std::string> pieces;  // raw bytes per id
  std::vector<std::pair<int32_t, int32_t>> merges;
  std::vector<int32_t> merge_result;
  std::unordered_map<std::string, int32_t> ids;
};

// The 256 bytes, then the numbers 10..999, each from every split into two number tokens, so
// whichever pair of digits merges first the run still ends as one token.
BpeVocab byte_and_number_vocab() {
  BpeVocab v;
  for (int b = 0; b < 256; ++b) {
    v.pieces.emplace_back(1, static_cast<char>(b));
    v.ids.emplace(v.pieces.back(), b);
  }
  for (int n = 10; n < 1000; ++n) {
    std::string s = std::to_string(n);
    auto id = static_cast<int32_t>(v.pieces.size());
    for (size_t k = 1; k < s.size(); ++k) {
      auto l = v.ids.find(s.substr(0, k)), r = v.ids.find(s.substr(k));
      if (l != v.ids.end() && r != v.ids.end()) v.merges.emplace_back(l->second, r->second);
    }
    v.pieces.push_back(s);
    v.ids.emplace(s, id);
  }
  v.merge_result.resize(v.merges.size());
  for (size_t m = 0; m < v.merges.size(); ++m)
    v.merge_result[m] = v.ids.at(v.pieces[v.merges[m].first] + v.pieces[v.merges[m].second]);
  return v;
}

// Adds the merge (a, b) and returns the id it produces. A pair can spell a token that exists
// already (e.g. two paths to the same bytes): that token is reused.
int32_t add_merge(BpeVocab& v, int32_t a, int32_t b) {
  std::string joined = v.pieces[a] + v.pieces[b];
  auto id = static_cast<int32_t>(v.pieces.size());
  auto existing = v.ids.find(joined);
  int32_t result = existing != v.ids.end() ? existing->second : id;
  if (existing == v.ids.end()) {
    v.pieces.push_back(joined);
    v.ids.emplace(joined, id);
  }
  v.merges.emplace_back(a, b);
  v.merge_result.push_back(result);
  return result;
}

// A distinct pre-token as token ids, with how often the texts hold it.
struct Word {
  std::vector<int32_t> syms;
  int64_t count;
};

// Every word starts as its bytes, whose ids are the byte values.
std::vector<Word> words_as_bytes(const std::vector<std::pair<std::string, int64_t>>& counted) {
  std::vector<Word> words;
  words.reserve(counted.size());
  for (auto& [w, c] : counted) {
    Word word{{}, c};
    for (unsigned char ch : w) word.syms.push_back(ch);
    words.push_back(std::move(word));
  }
  return words;
}

using PairEntry = std::pair<int64_t, uint64_t>;  // (count, pair key)

// Max-heap on count; ties go to the smaller pair key, so the result is deterministic.
struct LowerPriority {
  bool operator()(const PairEntry& a, const PairEntry& b) const {
    return a.first != b.first ? a.first < b.first : a.second > b.second;
  }
};

// Adjacent-pair counts over the words, kept current as merges rewrite the words, so that each
// merge costs only the words that hold its pair rather than a rescan of all of them.
class PairCounts {
 public:
  explicit PairCounts(std::vector<Word> words) : words_(std::move(words)), visited_(words_.size(), -1) {
    for (size_t wi = 0; wi < words_.size(); ++wi) {
      const auto& s = words_[wi].syms;
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        uint64_t k = pair_key(s[i], s[i + 1]);
        pair_count_[k] += words_[wi].count;
        auto& v = pair_words_[k];
        if (v.empty() || v.back() != static_cast<int32_t>(wi)) v.push_back(static_cast<int32_t>(wi));
      }
    }
    for (auto& [k, c] : pair_count_) heap_.push({c, k});
  }

  // The most frequent pair, or nothing once no pair is left. Heap entries go stale as counts
  // drop; a popped entry is checked against the live count.
  std::optional<PairEntry> pop_most_frequent() {
    while (!heap_.empty()) {
      auto [count, key] = heap_.top();
      heap_.pop();
      auto live = pair_count_.find(key);
      int64_t now = live == pair_count_.end() ? 0 : live->second;
      if (now == count) return PairEntry{count, key};
      if (now > 0) heap_.push({now, key});
    }
    return std::nullopt;
  }

  // Rewrites every (a, b) in the words as result.
  void merge(int32_t a, int32_t b, int32_t result) {
    const uint64_t key = pair_key(a, b);
    touched_.clear();
    const int32_t stamp = ++merges_applied_;
    std::vector<int32_t> where = std::move(pair_words_[key]);
    pair_words_.erase(key);
    for (int32_t wi : where) {
      if (visited_[wi] == stamp) continue;  // a word can be listed twice
      visited_[wi] = stamp;
      merge_in_word(wi, a, b, result);
    }
    pair_count_.erase(key);
    std::sort(touched_.begin(), touched_.end());
    touched_.erase(std::unique(touched_.begin(), touched_.end()), touched_.end());
    for (uint64_t k : touched_)
      if (auto it = pair_count_.find(k); it != pair_count_.end() && it->second > 0) heap_.push({it->second, k});
  }

 private:
  void merge_in_word(int32_t wi, int32_t a, int32_t b, int32_t result) {
    auto& s = words_[wi].syms;
    const int64_t c = words_[wi].count;
    for (size_t i = 0; i + 1 < s.size();) {
      if (s[i] != a || s[i + 1] != b) {
        ++i;
        continue;
      }
      if (i > 0) {
        bump(s[i - 1], a, -c, wi);
        bump(s[i - 1], result, c, wi);
      }
      if (i + 2 < s.size()) {
        bump(b, s[i + 2], -c, wi);
        bump(result, s[i + 2], c, wi);
      }
      bump(a, b, -c, wi);
      s[i] = result;
      s.erase(s.begin() + static_cast<std::ptrdiff_t>(i) + 1);
      ++i;
    }
  }

  // Only pairs whose count grew need a fresh heap entry; a drop is caught when the entry pops.
  void bump(int32_t l, int32_t r, int64_t delta, int32_t wi) {
    uint64_t k = pair_key(l, r);
    pair_count_[k] += delta;
    if (delta > 0) {
      auto& v = pair_words_[k];
      if (v.empty() || v.back() != wi) v.push_back(wi);
      touched_.push_back(k);
    }
  }

  std::vector<Word> words_;
  std::unordered_map<uint64_t, int64_t> pair_count_;
  std::unordered_map<uint64_t, std::vector<int32_t>> pair_words_;  // may hold stale entries
  std::priority_queue<PairEntry, std::vector<PairEntry>, LowerPriority> heap_;
  std::vector<int32_t> visited_;  // the last merge that rewrote each word
  std::vector<uint64_t> touched_;
  int32_t merges_applied_ = 0;
};

// Tokens in GPT-2's byte-to-unicode spelling, merges as "left right", then BOS and EOS.
TrainedBpe spelled_vocab(const BpeVocab& v) {
  TrainedBpe out;
  const auto& spell = tok::byte_to_unicode();
  for (const auto& p : v.pieces) {
    std::string s;
    for (unsigned char c : p) s += spell[c];
    out.tokens.push_back(std::move(s));
    out.token_types.push_back(static_cast<int32_t>(TokenType::Normal));
  }
  for (auto& [l, r] : v.merges) out.merges.push_back(out.tokens[l] + " " + out.tokens[r]);
  out.bos_id = static_cast<int32_t>(out.tokens.size());
  out.tokens.push_back(kBos);
  out.eos_id = static_cast<int32_t>(out.tokens.size());
  out.tokens.push_back(kEos);
  out.token_types.push_back(static_cast<int32_t>(TokenType::Control));
  out.token_types.push_back(static_cast<int32_t>(TokenType::Control));
  return out;
}

}  // namespace

TrainedBpe train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& options) {
  const int32_t min_vocab = 256 + kNumberTokens + 2;
  if (options.vocab_size < min_vocab)
    throw Error("train_bpe: vocab_size " + std::to_string(options.vocab_size) + " below the minimum " +
                std::to_string(min_vocab) + " (256 bytes, 990 numbers, 2 specials)");
  const int32_t learned_max = options.vocab_size - 2;  // ids below this are bytes, numbers, merges

  BpeVocab vocab = byte_and_number_vocab();
  // ---- learned merges: most frequent adjacent pair first ----
  tok::RegexSplitter splitter(kLlama3Pattern, "train_bpe");
  PairCounts pairs(words_as_bytes(count_words(texts, splitter)));
  while (static_cast<int32_t>(vocab.pieces.size()) < learned_max) {
    std::optional<PairEntry> top = pairs.pop_most_frequent();
    if (!top || top->first < options.min_frequency) break;
    auto a = static_cast<int32_t>(top->second >> 32), b = static_cast<int32_t>(top->second & 0xFFFFFFFFu);
    pairs.merge(a, b, add_merge(vocab, a, b));
  }
  return spelled_vocab(vocab);
}

std::string trained_bpe_json(const TrainedBpe& bpe) { return *hf_tokenizer_json(*make_trained_tokenizer(bpe)); }

void save_tokenizer_json(const TrainedBpe& bpe, const std::string& path) {
  write_file_atomic(path, trained_bpe_json(bpe));
}

std::unique_ptr<Tokenizer> make_trained_tokenizer(const TrainedBpe& bpe) {
  // pretrain puts BOS before every text.
  return tok::with_add_bos(make_byte_level_bpe(bpe.tokens, bpe.merges, bpe.token_types, bpe.bos_id, bpe.eos_id,
                                               kLlama3Pattern, false, "trained BPE"),
                           true);
}

}  // namespace pricer
