#include "monitor/crc32c.h"

#include <nmmintrin.h>

#include <array>
#include <cstring>

namespace pricer::monitor {
namespace {

constexpr std::array<std::uint32_t, 256> make_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}

constexpr auto kTable = make_table();

}  // namespace

std::uint32_t crc32c_scalar(const void* data, std::size_t size, std::uint32_t crc) {
  auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (std::size_t i = 0; i < size; ++i) crc = kTable[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

// The target attribute keeps this file buildable for CPUs without SSE4.2; callers check
// crc32c_hardware_available() first.
__attribute__((target("sse4.2"))) std::uint32_t crc32c_hardware(const void* data, std::size_t size, std::uint32_t crc) {
  auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t c = ~crc;
  while (size >= 8) {
    std::uint64_t word;
    std::memcpy(&word, p, 8);
    c = _mm_crc32_u64(c, word);
    p += 8;
    size -= 8;
  }
  auto c32 = static_cast<std::uint32_t>(c);
  while (size > 0) {
    c32 = _mm_crc32_u8(c32, *p++);
    --size;
  }
  return ~c32;
}

bool crc32c_hardware_available() {
  static const bool available = __builtin_cpu_supports("sse4.2");
  return available;
}

std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc) {
  return crc32c_hardware_available() ? crc32c_hardware(data, size, crc) : crc32c_scalar(data, size, crc);
}

}  // namespace pricer::monitor
