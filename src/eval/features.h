#pragma once
// Text features for the classic baselines: hand-made numeric features for the linear model; the
// TF-IDF vectoriser (unigrams + bigrams) for ridge and boosted trees is retrieval's.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/item.h"
#include "eval/linalg.h"
#include "retrieval/tfidf.h"

namespace pricer::eval {

using retrieval::TfidfOptions;
using retrieval::TfidfVectorizer;
using retrieval::word_tokens;

// The spec table's quantities that price follows but a bag of words cannot read as numbers, each
// as log1p of the value and a flag for whether the text states it (both 0 when it does not): the
// weight in pounds (from pounds, ounces, kilograms or grams), the volume of the dimensions in
// cubic inches (from inches, centimetres or millimetres), the count of a pack.
std::vector<double> spec_quantities(const std::string& text);
const std::vector<std::string>& spec_quantity_names();

// Numeric features of one item: log length, word count, digit count, numbers mentioned, the
// largest number mentioned, the spec table's weight, volume and pack count (each with a flag for
// whether the text states it), a handful of price-telling keywords, and a one-hot of the training
// categories (an unseen or missing category is all zeros).
class SimpleFeatures {
 public:
  SimpleFeatures() = default;
  // As fitted on items of these categories (a saved pricer's).
  explicit SimpleFeatures(std::vector<std::string> categories) : categories_(std::move(categories)) {}
  void fit(const std::vector<Item>& train);
  const std::vector<std::string>& categories() const { return categories_; }
  std::vector<double> row(const Item& item) const;
  std::vector<std::string> names() const;
  std::size_t size() const;

 private:
  std::vector<std::string> categories_;
};

// A fitted vectoriser as JSON (its options and vocabulary: term hash and idf by column) and back,
// for saved pricers.
nlohmann::json tfidf_to_json(const TfidfVectorizer& v, const TfidfOptions& opt);
TfidfVectorizer tfidf_from_json(const nlohmann::json& j);

}  // namespace pricer::eval
