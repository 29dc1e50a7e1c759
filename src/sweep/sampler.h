#pragma once
// Samplers propose the next trial's parameters from the finished ones.
//   random: every parameter drawn independently from its distribution.
//   tpe:    the tree-structured Parzen estimator (Bergstra et al., 2011), univariate as in
//           Optuna/hyperopt: the finished trials are split into the best quarter ("good") and the
//           rest; each parameter gets two Parzen densities, l(x) over the good values and g(x)
//           over the others (truncated Gaussians in the internal, possibly log, space; smoothed
//           counts for choices), and of candidates drawn from l the one maximising l(x)/g(x)
//           wins. The first `startup_trials` trials are random.
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sweep/space.h"

namespace pricer::sweep {

struct TpeOptions {
  int64_t startup_trials = 10;
  int64_t candidates = 24;  // draws from l(x) per parameter
  double good_fraction = 0.25;
  int64_t max_good = 25;
};

class Sampler {
 public:
  virtual ~Sampler() = default;
  virtual std::string name() const = 0;
  // `ranked` holds the parameters of the finished trials, best first. Same inputs and seed,
  // same proposal.
  virtual nlohmann::json sample(const SearchSpace& space, const std::vector<nlohmann::json>& ranked,
                                uint64_t seed) const = 0;
};

// "random" or "tpe"; anything else throws naming the value.
std::unique_ptr<Sampler> make_sampler(const std::string& algorithm, const TpeOptions& tpe = {});

// The TPE density over one numeric parameter, in its internal space: equal-weight truncated
// Gaussians at `points` plus a broad prior at the centre of the range. Exposed for tests.
class ParzenEstimator {
 public:
  ParzenEstimator(const ParamSpec& spec, const std::vector<double>& points);
  double sample(Rng& rng) const;
  double log_density(double u) const;

 private:
  double lo_, hi_;
  std::vector<double> mu_, sigma_, log_mass_;  // log_mass_: log of each component's mass in [lo, hi]
};

}  // namespace pricer::sweep
