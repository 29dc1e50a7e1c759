#pragma once
// One exception type for every user-facing failure: the message names the file, the place
// (key, tensor, line, byte offset) and the problem, so the CLI can print it and exit cleanly.
#include <concepts>
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

// The same with the message built only when the check fails: for checks inside loops over
// tokens or elements, where building a message every time would cost more than the check.
template <class MakeMessage>
requires std::invocable<MakeMessage&>
inline void require(bool cond, MakeMessage&& make_message) {
  if (!cond) throw Error(make_message());
}

}  // namespace pricer
