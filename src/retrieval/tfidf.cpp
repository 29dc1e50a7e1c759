#include "retrieval/tfidf.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/error.h"

namespace pricer::retrieval {

namespace {

bool word_byte(unsigned char c) { return std::isalnum(c) != 0 || c == '_' || c >= 0x80; }

uint64_t fnv1a(std::string_view s, uint64_t h = 0xcbf29ce484222325ULL) {
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

// Hash of "first second", computed without building the string.
uint64_t bigram_hash(const std::string& first, const std::string& second) {
  return fnv1a(second, fnv1a(" ", fnv1a(first)));
}

uint64_t term_hash(const std::string& term) {
  const auto space = term.find(' ');
  if (space == std::string::npos) return fnv1a(term);
  return bigram_hash(term.substr(0, space), term.substr(space + 1));
}

}  // namespace

std::vector<std::string> word_tokens(std::string_view text) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && !word_byte(static_cast<unsigned char>(text[i]))) ++i;
    std::size_t j = i;
    while (j < text.size() && word_byte(static_cast<unsigned char>(text[j]))) ++j;
    if (j - i >= 2) {
      std::string tok(text.substr(i, j - i));
      for (auto& c : tok) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.push_back(std::move(tok));
    }
    i = j;
  }
  return out;
}

std::vector<uint64_t> TfidfVectorizer::terms(std::string_view doc) const {
  const auto words = word_tokens(doc);
  std::vector<uint64_t> out;
  out.reserve(opt_.bigrams ? 2 * words.size() : words.size());
  for (const auto& w : words) out.push_back(fnv1a(w));
  if (opt_.bigrams)
    for (std::size_t i = 0; i + 1 < words.size(); ++i) out.push_back(bigram_hash(words[i], words[i + 1]));
  return out;
}

void TfidfVectorizer::fit(const std::vector<std::string>& docs) {
  require(!docs.empty(), "tf-idf: no training documents");
  std::unordered_map<uint64_t, std::size_t> df;
  for (const auto& d : docs) {
    auto t = terms(d);
    std::sort(t.begin(), t.end());
    t.erase(std::unique(t.begin(), t.end()), t.end());
    for (uint64_t term : t) ++df[term];
  }
  std::vector<std::pair<uint64_t, std::size_t>> kept;
  for (auto& [term, count] : df)
    if (count >= opt_.min_df) kept.emplace_back(term, count);
  // Highest document frequency first, ties by hash, so the vocabulary is deterministic.
  std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (kept.size() > opt_.max_features) kept.resize(opt_.max_features);
  std::sort(kept.begin(), kept.end());
  vocab_.clear();
  idf_.clear();
  const double n = static_cast<double>(docs.size());
  for (const auto& [term, count] : kept) {
    vocab_.emplace(term, static_cast<uint32_t>(idf_.size()));
    idf_.push_back(std::log((1.0 + n) / (1.0 + static_cast<double>(count))) + 1.0);
  }
}

long TfidfVectorizer::column(const std::string& term) const {
  auto it = vocab_.find(term_hash(term));
  return it == vocab_.end() ? -1 : static_cast<long>(it->second);
}

SparseMatrix TfidfVectorizer::transform(const std::vector<std::string>& docs) const {
  SparseMatrix m;
  m.rows = docs.size();
  m.cols = idf_.size();
  std::vector<uint32_t> cols;
  for (const auto& d : docs) {
    cols.clear();
    for (uint64_t t : terms(d)) {
      auto it = vocab_.find(t);
      if (it != vocab_.end()) cols.push_back(it->second);
    }
    std::sort(cols.begin(), cols.end());
    const std::size_t start = m.values.size();
    double norm = 0.0;
    for (std::size_t i = 0; i < cols.size();) {
      std::size_t j = i;
      while (j < cols.size() && cols[j] == cols[i]) ++j;
      const double w = (1.0 + std::log(static_cast<double>(j - i))) * idf_[cols[i]];
      m.indices.push_back(cols[i]);
      m.values.push_back(static_cast<float>(w));
      norm += w * w;
      i = j;
    }
    if (norm > 0.0) {
      const double inv = 1.0 / std::sqrt(norm);
      for (std::size_t p = start; p < m.values.size(); ++p) m.values[p] = static_cast<float>(m.values[p] * inv);
    }
    m.indptr.push_back(m.values.size());
  }
  return m;
}

std::vector<std::pair<uint64_t, double>> TfidfVectorizer::vocabulary() const {
  std::vector<std::pair<uint64_t, double>> out(idf_.size());
  for (const auto& [term, column] : vocab_) out[column] = {term, idf_[column]};
  return out;
}

TfidfVectorizer TfidfVectorizer::from_vocabulary(TfidfOptions opt,
                                                 const std::vector<std::pair<uint64_t, double>>& terms) {
  TfidfVectorizer v(opt);
  v.idf_.reserve(terms.size());
  for (const auto& [term, idf] : terms) {
    require(std::isfinite(idf) && idf > 0, "tf-idf vocabulary: a term's idf is not a positive number");
    require(v.vocab_.emplace(term, static_cast<uint32_t>(v.idf_.size())).second,
            "tf-idf vocabulary: a term appears twice");
    v.idf_.push_back(idf);
  }
  return v;
}

}  // namespace pricer::retrieval
