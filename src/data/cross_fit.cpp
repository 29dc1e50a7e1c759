#include "data/cross_fit.h"

#include <cstdint>
#include <string>

#include "core/error.h"
#include "data/text.h"

namespace pricer::data {

int cross_fit_fold(std::string_view prompt, int folds) {
  require(folds >= 2 && folds <= kMaxCrossFitFolds,
          "cross-fitting: " + std::to_string(folds) + " folds (give 2 to " + std::to_string(kMaxCrossFitFolds) + ")");
  return static_cast<int>(hash64(prompt) % static_cast<uint64_t>(folds));
}

}  // namespace pricer::data
