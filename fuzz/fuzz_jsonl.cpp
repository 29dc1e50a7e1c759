// Fuzzes the JSON-lines record parser and cleaner: any bytes, split into lines, must give an
// item or a rejection reason, never a crash, hang or unbounded allocation.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "data/record.h"
#include "data/text.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const pricer::data::CleanOptions opt = [] {
    pricer::data::CleanOptions o;
    o.min_chars = 20;  // low, so the cleaning and budget paths run on small inputs too
    o.max_line_bytes = 1 << 16;
    return o;
  }();
  static pricer::data::RecordCleaner cleaner(opt, nullptr);
  std::string_view in(reinterpret_cast<const char*>(data), size);
  pricer::data::CleanItem item;
  std::string why;
  while (!in.empty()) {
    const size_t nl = in.find('\n');
    std::string_view line = in.substr(0, nl);
    const auto r = cleaner.process(line, "", item, why);
    if (r == pricer::data::Reject::None) {
      // Accepted items satisfy the rules.
      if (item.price < opt.min_price || item.price > opt.max_price) __builtin_trap();
      if (item.title.empty() || item.text.empty()) __builtin_trap();
      if (pricer::data::count_words(item.text) > opt.word_budget()) __builtin_trap();
    } else if (why.empty()) {
      __builtin_trap();  // every rejection says why
    }
    double p;
    pricer::data::parse_price_string(line, p);
    if (nl == std::string_view::npos) break;
    in.remove_prefix(nl + 1);
  }
  return 0;
}
