#pragma once
// A synthetic product catalog for machines without real data. Each product is written as a raw
// Amazon-2023-style JSON line (title, description[], features[], details{}, price,
// main_category, store, ...) so it goes through the same curation path as real data. Its price
// follows a hidden rule a model can learn from the text (documented in docs/curate.md):
//
//   price = category base x product-type factor x brand tier x size factor x material factor
//           x warranty factor x pack^0.8 x exp(0.25 * N(0,1)),  clamped to [0.99, 990]
//
// Product i depends only on (seed, i): generation is deterministic and can run in parallel.
#include <cstdint>
#include <string>

namespace pricer::data {

struct SyntheticItem {
  std::string line;  // one JSON object, no newline
  std::string category;
  std::string brand;
  double price = 0;  // what the JSON says (rule x noise, rounded to cents)
  double rule_price = 0;  // the noise-free hidden rule
};

// inflate adds Amazon-like fields that curation ignores (image URLs, ratings, videos), making
// lines as long as real metadata for throughput measurements.
SyntheticItem synthetic_item(uint64_t seed, uint64_t index, bool inflate = true);

// Writes n products as JSON lines to path; returns the bytes written. Throws Error on I/O errors.
uint64_t write_synthetic_catalog(const std::string& path, uint64_t n, uint64_t seed, bool inflate = true);

}  // namespace pricer::data
