#pragma once
// The two clocks: Unix time for what is recorded (run databases, event files, reports) and a
// monotonic clock for durations, rates and deadlines (it never jumps with the wall clock).
#include <chrono>

namespace pricer {

inline double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

inline double monotonic_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace pricer
