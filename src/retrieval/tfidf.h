#pragma once
// Word tokens and a TF-IDF vectoriser (unigrams + bigrams): the similarity behind comparables
// retrieval, and the features of the classic ridge and boosted-tree baselines.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/sparse_matrix.h"

namespace pricer::retrieval {

// Lower-cased runs of two or more word characters (ASCII letters, digits, '_', and any byte of a
// multi-byte UTF-8 sequence), like scikit-learn's default token pattern \b\w\w+\b.
std::vector<std::string> word_tokens(std::string_view text);

struct TfidfOptions {
  std::size_t max_features = 50000;  // most frequent terms (by document frequency) kept
  std::size_t min_df = 2;  // terms in fewer documents are dropped
  bool bigrams = true;
};

// Sublinear tf (1 + ln tf), smoothed idf (ln((1+n)/(1+df)) + 1), rows l2-normalised: the same
// weighting as scikit-learn's TfidfVectorizer(sublinear_tf=True).
class TfidfVectorizer {
 public:
  explicit TfidfVectorizer(TfidfOptions opt = {}) : opt_(opt) {}
  void fit(const std::vector<std::string>& docs);
  SparseMatrix transform(const std::vector<std::string>& docs) const;
  std::size_t vocabulary_size() const { return idf_.size(); }
  // Column of a term ("word" or "word word"), -1 when not in the vocabulary.
  long column(const std::string& term) const;
  double idf(std::size_t column) const { return idf_[column]; }
  // The vocabulary as (term hash, idf) by column, and a vectoriser rebuilt from it (a saved index).
  std::vector<std::pair<uint64_t, double>> vocabulary() const;
  static TfidfVectorizer from_vocabulary(TfidfOptions opt, const std::vector<std::pair<uint64_t, double>>& terms);

 private:
  // Terms are kept as 64-bit FNV-1a hashes: building the vocabulary then allocates no strings,
  // and a collision among the ~10^6 distinct terms of a corpus is improbable (p ~ 1e-7).
  std::vector<uint64_t> terms(std::string_view doc) const;
  TfidfOptions opt_;
  std::unordered_map<uint64_t, uint32_t> vocab_;
  std::vector<double> idf_;
};

}  // namespace pricer::retrieval
