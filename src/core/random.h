#pragma once
// splitmix64 (Steele, Lea and Flood 2014) and the Rng over it, behind every seeded choice in pricer:
// data sampling and shuffles, dropout masks, weight initialisation, sampling tokens, bootstrap
// resamples, sweep seeds. Fully specified, so the same seed gives the same numbers on every
// platform (std:: distributions are implementation-defined).
#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

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

// The one seeded generator: outputs mix64(state), the state advancing by `step` — the golden gamma
// for the splitmix64 stream, or 1 for a counter-based stream (weight initialisation: mix64 is a
// full avalanche, so consecutive counters give independent outputs).
class Rng {
 public:
  // The first output is mix64(seed).
  explicit Rng(uint64_t seed, uint64_t step = kGoldenGamma) : state_(seed), step_(step) {}

  uint64_t next() {
    const uint64_t out = mix64(state_);
    state_ += step_;
    return out;
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1p-53; }  // [0, 1), 53 bits
  float uniform_float() { return static_cast<float>((next() >> 40) * 0x1p-24); }  // [0, 1), 24 bits
  // Standard normal (Box-Muller; u1 in (0, 1], so the log is finite).
  double normal() {
    const double u1 = (static_cast<double>(next() >> 11) + 1.0) * 0x1p-53;
    const double u2 = static_cast<double>(next() >> 11) * 0x1p-53;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }  // [0, n)
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[static_cast<size_t>(below(v.size()))];
  }

 private:
  uint64_t state_;
  uint64_t step_;
};

}  // namespace pricer
