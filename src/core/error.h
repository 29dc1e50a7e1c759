#pragma once
// One exception type for every user-facing failure: the message names the file, the place
// (key, tensor, line, byte offset) and the problem, so the CLI can print it and exit cleanly.
#include <stdexcept>
#include <string>

namespace pricer {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws Error(msg) when cond is false. For checks on input data, not for programming errors.
inline void require(bool cond, const std::string& msg) {
  if (!cond) throw Error(msg);
}

}  // namespace pricer
