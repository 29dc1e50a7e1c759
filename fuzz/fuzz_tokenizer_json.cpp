// Fuzzes the tokenizer.json parser (and the tokenizer it builds) on arbitrary bytes: any input
// must either load or throw pricer::Error, never crash, hang or over-allocate.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view json(reinterpret_cast<const char*>(data), size);
  try {
    auto tok = pricer::parse_tokenizer_json(json, "fuzz.json");
    for (bool special : {false, true}) {
      auto ids = tok->encode("Hello w\xC3\xB6rld 123 <s>\xFF\x80 the  end\n", special);
      (void)tok->decode(ids);
    }
  } catch (const pricer::Error&) {
  }
  return 0;
}
