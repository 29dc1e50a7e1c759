#pragma once
// Comparables: the training items most like a product, with what they sold for, written into the
// prompt as a paragraph of its own ("Similar items sold for: $240, $74, $133") so the model reads
// the going rate beside the description, as an appraiser works. Similarity is TF-IDF cosine over
// the prompts' words. A training item is never its own comparable, so training sees what pricing
// a new item sees. The index travels with the model it was trained with (kComparablesFile).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/sparse_matrix.h"
#include "io/gguf.h"
#include "retrieval/tfidf.h"

namespace pricer::retrieval {

// The index's file name beside a model or adapter trained with comparables.
inline constexpr const char* kComparablesFile = "comparables.gguf";
// The metadata key of a full model trained with comparables (its value: k).
inline constexpr const char* kComparablesKey = "pricer.comparables";
inline constexpr int kMaxComparables = 32;

// Where the index of a model or adapter trained with comparables lies: kComparablesFile inside it
// when it is a directory (a model or PEFT directory), else beside its file.
std::string comparables_beside(const std::string& model_or_adapter);

struct Comparable {
  uint32_t item = 0;  // row of the indexed item
  float similarity = 0;
  double price = 0;
};

class ComparablesIndex {
 public:
  // Indexes the documents with their prices (finite, > 0); `k` comparables per query
  // (1..kMaxComparables).
  ComparablesIndex(const std::vector<std::string>& docs, const std::vector<double>& prices, int k);
  // Reads an index written by save(); throws Error naming the file and what is wrong.
  static ComparablesIndex load(const std::string& path);
  static ComparablesIndex from_gguf(const GgufFile& file);  // errors name file.source()
  void save(const std::string& path) const;  // GGUF, written atomically

  int k() const { return k_; }
  std::size_t size() const { return prices_.size(); }
  double price(std::size_t item) const { return prices_[item]; }
  // The k indexed items most similar to `doc` that share a word with it (so possibly fewer), most
  // similar first, ties by row; the item at row `exclude` (the document itself) is never one.
  std::vector<Comparable> nearest(std::string_view doc, int64_t exclude = -1) const;

 private:
  ComparablesIndex() = default;
  void build_postings(const SparseMatrix& docs);
  TfidfVectorizer vec_;
  // Term-major (one row per vocabulary term): the items holding the term and their weights.
  SparseMatrix postings_;
  std::vector<double> prices_;
  int k_ = 0;
};

// "Similar items sold for: $240, $74, $133": whole dollars, most similar first; empty for none.
std::string comparables_line(const std::vector<Comparable>& comparables);

// The prompt with `line` just before its answer cue ("Price is $"): as a paragraph of its own
// before the last paragraph, else as a line before the last line, else as a first line; the prompt
// itself when the line is empty.
std::string insert_comparables(const std::string& prompt, const std::string& line);

// `prompt` with the comparables of its own words, leaving out the indexed item at row `self`.
std::string prompt_with_comparables(const ComparablesIndex& index, const std::string& prompt, int64_t self = -1);

}  // namespace pricer::retrieval
