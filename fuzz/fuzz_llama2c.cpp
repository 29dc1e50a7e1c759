// Feeds arbitrary bytes to the llama2.c checkpoint reader. Only pricer::Error may come out.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "io/model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)pricer::read_llama2c(std::span<const uint8_t>(data, size), "fuzz.bin");
  } catch (const pricer::Error&) {
  }
  return 0;
}
