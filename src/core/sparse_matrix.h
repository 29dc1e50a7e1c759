#pragma once
// Compressed sparse rows: TF-IDF documents for retrieval and for the classic baselines' ridge.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace pricer {

// Values are float because TF-IDF weights need no more.
struct SparseMatrix {
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::vector<std::size_t> indptr{0};  // rows + 1 entries
  std::vector<uint32_t> indices;
  std::vector<float> values;
};

}  // namespace pricer
