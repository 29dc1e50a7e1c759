#pragma once
// splitmix64 (Steele, Lea and Flood 2014), the one mixer behind every seeded choice in pricer:
// data sampling and shuffles, dropout masks, weight initialisation, sampling tokens, bootstrap
// resamples, sweep seeds. Fully specified, so the same seed gives the same numbers on every
// platform (std:: distributions are implementation-defined).
#include <cstdint>

namespace pricer {

inline constexpr uint64_t kGoldenGamma = 0x9E3779B97F4A7C15ull;

// splitmix64's output for state x: a bijective avalanche of x + the golden gamma.
constexpr uint64_t mix64(uint64_t x) {
  x += kGoldenGamma;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The splitmix64 stream: the next output, advancing the state.
constexpr uint64_t splitmix64(uint64_t& state) {
  const uint64_t out = mix64(state);
  state += kGoldenGamma;
  return out;
}

}  // namespace pricer
