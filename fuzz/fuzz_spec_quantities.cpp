// Feeds arbitrary text to the spec-table reader the classic pricers and the ensemble use (weight,
// dimensions, pack count). It must never fail and every value it gives must be a finite, non-
// negative log1p with its flag 0 or 1.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "eval/features.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto f = pricer::eval::spec_quantities(text);
  if (f.size() != pricer::eval::spec_quantity_names().size()) std::abort();
  for (size_t q = 0; q < f.size(); q += 2) {
    if (!std::isfinite(f[q]) || f[q] < 0 || (f[q + 1] != 0 && f[q + 1] != 1)) std::abort();
  }
  return 0;
}
