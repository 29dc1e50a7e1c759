// Fuzzes the llama2.c tok*.bin parser (and the tokenizer it builds) on arbitrary bytes: any input
// must either load or throw pricer::Error, never crash, hang or over-allocate.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    auto tok = pricer::parse_llama2c_tokenizer(bytes, "fuzz.bin");
    for (bool special : {false, true}) {
      auto ids = tok->encode("Once upon a time \xC3\xA9\xF0\x9F\xA6\x99 <s>\xFF", special);
      (void)tok->decode(ids);
      if (!ids.empty()) (void)tok->token_bytes(ids[0]);
    }
  } catch (const pricer::Error&) {
  }
  return 0;
}
