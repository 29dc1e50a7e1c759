// Feeds arbitrary bytes to the safetensors reader. Only pricer::Error may come out.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const pricer::SafetensorsFile f =
        pricer::SafetensorsFile::parse(std::span<const uint8_t>(data, size), "fuzz.safetensors");
    size_t total = 0;
    for (const auto& t : f.tensors()) total += f.data(t).size();
    (void)total;
  } catch (const pricer::Error&) {
  }
  return 0;
}
