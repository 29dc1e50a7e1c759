#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "core/error.h"
#include "core/random.h"

namespace pricer {

namespace {

// NaN logits count as -inf, so they are never chosen and the orderings below stay strict.
double logit_at(std::span<const float> logits, size_t i) {
  const float l = logits[i];
  return std::isnan(l) ? -std::numeric_limits<double>::infinity() : static_cast<double>(l);
}

double max_logit(std::span<const float> logits) {
  require(!logits.empty(), "sampling: empty logits");
  double mx = -std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < logits.size(); ++i) mx = std::max(mx, logit_at(logits, i));
  require(std::isfinite(mx), "sampling: the model produced no finite logit (NaN or infinite weights?)");
  return mx;
}

}  // namespace

void SamplingOptions::validate() const {
  require(std::isfinite(temperature) && temperature >= 0.0f,
          "sampling: temperature must be >= 0 (0 = greedy), got " + std::to_string(temperature));
  require(top_k >= 0, "sampling: top-k must be >= 0 (0 = no limit), got " + std::to_string(top_k));
  require(std::isfinite(top_p) && top_p > 0.0f && top_p <= 1.0f,
          "sampling: top-p must be in (0, 1] (1 = no limit), got " + std::to_string(top_p));
}

int32_t argmax(std::span<const float> logits) {
  max_logit(logits);  // rejects empty and all-NaN logits
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logit_at(logits, i) > logit_at(logits, best)) best = i;
  return static_cast<int32_t>(best);
}

std::vector<Candidate> sampling_candidates(std::span<const float> logits, const SamplingOptions& o) {
  o.validate();
  require(!o.greedy(), "sampling: temperature 0 is greedy decoding, which has no candidate distribution");
  const double mx = max_logit(logits);
  const size_t V = logits.size();
  std::vector<int32_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  auto more_likely = [&](int32_t a, int32_t b) {
    const double la = logit_at(logits, static_cast<size_t>(a)), lb = logit_at(logits, static_cast<size_t>(b));
    return la > lb || (la == lb && a < b);
  };
  const size_t keep = o.top_k > 0 ? std::min(V, static_cast<size_t>(o.top_k)) : V;
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(), more_likely);
  order.resize(keep);

  std::vector<Candidate> c(keep);
  double total = 0;
  for (size_t i = 0; i < keep; ++i) {
    c[i].id = order[i];
    c[i].prob = std::exp((logit_at(logits, static_cast<size_t>(order[i])) - mx) / o.temperature);
    total += c[i].prob;
  }
  if (o.top_p < 1.0f) {
    const double target = static_cast<double>(o.top_p) * total;
    double mass = 0;
    size_t n = 0;
    while (n < c.size() && mass < target) mass += c[n++].prob;
    c.resize(std::max<size_t>(n, 1));
    total = mass > 0 ? mass : c[0].prob;
  }
  while (c.size() > 1 && c.back().prob == 0) c.pop_back();  // underflowed tails are never drawn
  for (Candidate& x : c) x.prob /= total;
  return c;
}

Sampler::Sampler(const SamplingOptions& options) : options_(options), state_(options.seed) { options_.validate(); }

double Sampler::uniform() {
  state_ += kGoldenGamma;
  return static_cast<double>(mix64(state_) >> 11) * 0x1.0p-53;
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (options_.greedy()) return argmax(logits);
  const bool cut = (options_.top_k > 0 && static_cast<size_t>(options_.top_k) < logits.size()) || options_.top_p < 1.0f;
  const double u = uniform();
  if (cut) {
    const std::vector<Candidate> c = sampling_candidates(logits, options_);
    double cum = 0;
    for (const Candidate& x : c) {
      cum += x.prob;
      if (u < cum) return x.id;
    }
    return c.back().id;
  }
  // The whole vocabulary: no ordering needed, one pass over the unnormalized weights.
  const double mx = max_logit(logits);
  probs_.resize(logits.size());
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    probs_[i] = std::exp((logit_at(logits, i) - mx) / options_.temperature);
    total += probs_[i];
  }
  const double target = u * total;
  double cum = 0;
  size_t last = 0;
  for (size_t i = 0; i < probs_.size(); ++i) {
    if (probs_[i] == 0) continue;
    cum += probs_[i];
    last = i;
    if (target < cum) return static_cast<int32_t>(i);
  }
  return static_cast<int32_t>(last);
}

}  // namespace pricer
