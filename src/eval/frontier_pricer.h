#pragma once
// FrontierPricer: one chat-completions request per item over N worker threads, with retries and
// exponential backoff on 429, 5xx, timeouts and connection errors. Tokens and cost are recorded.
#include <mutex>
#include <string>
#include <vector>

#include "eval/frontier.h"
#include "eval/pricer.h"

namespace pricer::eval {

// What happened to one item.
struct FrontierOutcome {
  double price = 0.0;  // meaningful only when neither failed nor unparsed
  long prompt_tokens = 0, completion_tokens = 0;
  int retries = 0;
  bool failed = false;  // every attempt failed (timeouts, 429, 5xx, connection errors)
  bool unparsed = false;  // the reply held no number
  std::string reply;
  std::string error;
};

class FrontierPricer : public Pricer {
 public:
  explicit FrontierPricer(FrontierConfig cfg);
  std::string name() const override { return "frontier"; }
  // A reply without a price, or an item whose retries all failed, is left unpriced (NaN) and
  // counted in stats() ("unparsed", "failed"), so one bad item does not void a paid run. Other
  // HTTP errors (401, 404, ...) would fail every item alike and abort the pricer with an Error.
  std::vector<double> predict(const std::vector<Item>& items) override;
  // The unpriced items' errors with their counts: "Could not establish connection (3 items)".
  std::string unpriced_reason() const override;
  nlohmann::json stats() const override;
  bool shardable() const override { return false; }  // one paid request per item, from rank 0

 private:
  FrontierConfig cfg_;
  std::string origin_;  // scheme://host[:port]
  std::string path_;  // <prefix>/chat/completions
  std::vector<FrontierOutcome> last_;
};

}  // namespace pricer::eval
