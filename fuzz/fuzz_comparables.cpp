// Feeds arbitrary bytes to the comparables index reader (a GGUF file with an inverted index), then
// searches what it accepted. The only acceptable failure is pricer::Error.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "io/gguf.h"
#include "retrieval/comparables.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const pricer::GgufFile f = pricer::GgufFile::parse(std::span<const uint8_t>(data, size), "fuzz.gguf");
    const auto index = pricer::retrieval::ComparablesIndex::from_gguf(f);
    (void)index.nearest("stainless steel chef knife 8 inch");
    (void)index.nearest("wireless earbuds", 0);
  } catch (const pricer::Error&) {
  }
  return 0;
}
