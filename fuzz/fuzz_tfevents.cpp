// Fuzzes the TensorBoard event-file reader: any bytes must parse or raise pricer::Error, never
// crash, hang or allocate beyond the input. Checksums would reject almost every mutation before
// the protobuf decoder runs, so inputs whose first byte is odd are framed with valid CRCs first.
// Whatever parses must survive an encode/parse round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/error.h"
#include "monitor/tfevents.h"

namespace {

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }
bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pricer::monitor;
  if (size == 0) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string file = (data[0] & 1) ? frame_record(rest) : std::string(rest);
  std::vector<Event> events;
  try {
    events = parse_events(file, "fuzz.tfevents");
  } catch (const pricer::Error&) {
    return 0;
  }
  for (const auto& e : events) {
    auto again = parse_events(frame_record(encode_event(e)), "reencoded");
    if (again.size() != 1) __builtin_trap();
    const auto& r = again[0];
    if (r.step != e.step || !same_bits(r.wall_time, e.wall_time) || r.file_version != e.file_version ||
        r.scalars.size() != e.scalars.size())
      __builtin_trap();
    for (size_t i = 0; i < e.scalars.size(); ++i)
      if (r.scalars[i].tag != e.scalars[i].tag || !same_bits(r.scalars[i].value, e.scalars[i].value)) __builtin_trap();
  }
  return 0;
}
