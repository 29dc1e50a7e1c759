#pragma once
// Generated text cut at the first of the request's stop sequences, handed out as it grows: text
// that could still turn out to be the start of a stop sequence is held back until it cannot, so a
// streamed reply never shows what a whole reply would not.
#include <string>
#include <vector>

namespace pricer::serve {

class StopText {
 public:
  explicit StopText(std::vector<std::string> stops);
  // Adds a piece of text; returns what is now certain to belong to the reply.
  std::string push(const std::string& piece);
  // True once a stop sequence appeared (push hands out nothing more).
  bool stopped() const { return stopped_; }
  // The text still held back, when generation ended for another reason.
  std::string finish();

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace pricer::serve
