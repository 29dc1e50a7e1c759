// Feeds arbitrary bytes to the GGUF reader and the model loader on top of it. The only
// acceptable failure is pricer::Error; anything else (crash, sanitizer report, other exception)
// is a bug.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "io/gguf.h"
#include "io/model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const pricer::GgufFile f = pricer::GgufFile::parse(std::span<const uint8_t>(data, size), "fuzz.gguf");
    for (const auto& t : f.tensors()) (void)f.tensor_data(t);
    (void)pricer::load_gguf_model(f);
  } catch (const pricer::Error&) {
  }
  return 0;
}
