#include "tokenizer/train_bpe.h"

#include <algorithm>
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

}  // namespace

TrainedBpe train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& options) {
  const int32_t min_vocab = 256 + kNumberTokens + 2;
  if (options.vocab_size < min_vocab)
    throw Error("train_bpe: vocab_size " + std::to_string(options.vocab_size) + " below the minimum " +
                std::to_string(min_vocab) + " (256 bytes, 990 numbers, 2 specials)");
  const int32_t learned_max = options.vocab_size - 2;  // ids below this are bytes, numbers, merges

  std::vector<std::string> pieces;  // raw bytes per id
  std::vector<std::pair<int32_t, int32_t>> merges;
  std::unordered_map<std::string, int32_t> ids;
  for (int b = 0; b < 256; ++b) {
    pieces.emplace_back(1, static_cast<char>(b));
    ids.emplace(pieces.back(), b);
  }
  // Numbers 10..999, each from every split into two number tokens, so whichever pair of digits
  // merges first the run still ends as one token.
  for (int n = 10; n < 1000; ++n) {
    std::string s = std::to_string(n);
    auto id = static_cast<int32_t>(pieces.size());
    for (size_t k = 1; k < s.size(); ++k) {
      auto l = ids.find(s.substr(0, k)), r = ids.find(s.substr(k));
      if (l != ids.end() && r != ids.end()) merges.emplace_back(l->second, r->second);
    }
    pieces.push_back(s);
    ids.emplace(s, id);
  }
  std::vector<int32_t> merge_result(merges.size());
  for (size_t m = 0; m < merges.size(); ++m)
    merge_result[m] = ids.at(pieces[merges[m].first] + pieces[merges[m].second]);

  // ---- learned merges: most frequent adjacent pair first ----
  tok::RegexSplitter splitter(kLlama3Pattern, "train_bpe");
  auto counted = count_words(texts, splitter);
  struct Word {
    std::vector<int32_t> syms;
    int64_t count;
  };
  std::vector<Word> words;
  words.reserve(counted.size());
  for (auto& [w, c] : counted) {
    Word word{{}, c};
    for (unsigned char ch : w) word.syms.push_back(ch);
    words.push_back(std::move(word));
  }
  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> pair_words;  // may hold stale entries
  for (size_t wi = 0; wi < words.size(); ++wi) {
    const auto& s = words[wi].syms;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      uint64_t k = pair_key(s[i], s[i + 1]);
      pair_count[k] += words[wi].count;
      auto& v = pair_words[k];
      if (v.empty() || v.back() != static_cast<int32_t>(wi)) v.push_back(static_cast<int32_t>(wi));
    }
  }
  // Max-heap on count; ties go to the smaller pair key, so the result is deterministic. Entries
  // go stale as counts drop; a popped entry is checked against the live count.
  using Entry = std::pair<int64_t, uint64_t>;
  auto lower = [](const Entry& a, const Entry& b) {
    return a.first != b.first ? a.first < b.first : a.second > b.second;
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(lower)> heap(lower);
  for (auto& [k, c] : pair_count) heap.push({c, k});
  std::vector<int32_t> visited(words.size(), -1);
  std::vector<uint64_t> touched;
  while (static_cast<int32_t>(pieces.size()) < learned_max && !heap.empty()) {
    auto [count, key] = heap.top();
    heap.pop();
    auto live = pair_count.find(key);
    int64_t now = live == pair_count.end() ? 0 : live->second;
    if (now != count) {
      if (now > 0) heap.push({now, key});
      continue;
    }
    if (count < options.min_frequency) break;
    auto a = static_cast<int32_t>(key >> 32), b = static_cast<int32_t>(key & 0xFFFFFFFFu);
    std::string joined = pieces[a] + pieces[b];
    auto id = static_cast<int32_t>(pieces.size());
    // A pair can spell a token that exists already (e.g. two paths to the same bytes): reuse it.
    auto existing = ids.find(joined);
    int32_t result = existing != ids.end() ? existing->second : id;
    if (existing == ids.end()) {
      pieces.push_back(joined);
      ids.emplace(joined, id);
    }
    merges.emplace_back(a, b);
    merge_result.push_back(result);
    touched.clear();
    auto bump = [&](int32_t l, int32_t r, int64_t delta, int32_t wi) {
      uint64_t k = pair_key(l, r);
      pair_count[k] += delta;
      if (delta > 0) {
        auto& v = pair_words[k];
        if (v.empty() || v.back() != wi) v.push_back(wi);
        touched.push_back(k);
      }
    };
    const auto stamp = static_cast<int32_t>(merges.size());
    std::vector<int32_t> where = std::move(pair_words[key]);
    pair_words.erase(key);
    for (int32_t wi : where) {
      if (visited[wi] == stamp) continue;  // a word can be listed twice
      visited[wi] = stamp;
      auto& s = words[wi].syms;
      const int64_t c = words[wi].count;
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
    pair_count.erase(key);
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint64_t k : touched)
      if (auto it = pair_count.find(k); it != pair_count.end() && it->second > 0) heap.push({it->second, k});
  }

  TrainedBpe out;
  const auto& spell = tok::byte_to_unicode();
  for (const auto& p : pieces) {
    std::string s;
    for (unsigned char c : p) s += spell[c];
    out.tokens.push_back(std::move(s));
    out.token_types.push_back(static_cast<int32_t>(TokenType::Normal));
  }
  for (auto& [l, r] : merges) out.merges.push_back(out.tokens[l] + " " + out.tokens[r]);
  out.bos_id = static_cast<int32_t>(out.tokens.size());
  out.tokens.push_back(kBos);
  out.eos_id = static_cast<int32_t>(out.tokens.size());
  out.tokens.push_back(kEos);
  out.token_types.push_back(static_cast<int32_t>(TokenType::Control));
  out.token_types.push_back(static_cast<int32_t>(TokenType::Control));
  return out;
}

std::string trained_bpe_json(const TrainedBpe& bpe) { return *hf_tokenizer_json(*make_trained_tokenizer(bpe)); }

void save_tokenizer_json(const TrainedBpe& bpe, const std::string& path) {
  write_file_atomic(path, trained_bpe_json(bpe));
}

std::unique_ptr<Tokenizer> make_trained_tokenizer(const TrainedBpe& bpe) {
  // pretrain puts BOS before every text.
  return tok::with_add_bos(make_byte_level_bpe(bpe.tokens, bpe.merges, bpe.token_types, bpe.bos_id,
                                               bpe.eos_id, kLlama3Pattern, false, "trained BPE"),
                           true);
}

}  // namespace pricer
