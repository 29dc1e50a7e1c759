#include "sweep/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

#include "core/error.h"

namespace pricer::sweep {

namespace {

double normal_cdf(double z) { return 0.5 * std::erfc(-z / std::numbers::sqrt2); }

double log_sum_exp(const std::vector<double>& v) {
  const double m = *std::max_element(v.begin(), v.end());
  if (!std::isfinite(m)) return m;
  double s = 0;
  for (double x : v) s += std::exp(x - m);
  return m + std::log(s);
}

}  // namespace

ParzenEstimator::ParzenEstimator(const ParamSpec& spec, const std::vector<double>& points)
    : lo_(spec.internal_low()), hi_(spec.internal_high()) {
  const double range = hi_ - lo_;
  // Components sorted by centre; each bandwidth is the larger gap to its neighbours (the range
  // ends count as neighbours), clipped to [range / min(100, n + 1), range] so that a cluster of
  // identical values still spreads and a lone value does not cover everything. The prior sits
  // at the centre with the whole range as its width.
  struct Component {
    double mu;
    bool prior;
  };
  std::vector<Component> cs;
  for (double u : points) cs.push_back({u, false});
  cs.push_back({0.5 * (lo_ + hi_), true});
  std::sort(cs.begin(), cs.end(), [](const Component& a, const Component& b) { return a.mu < b.mu; });
  const double min_sigma = range / std::min(100.0, static_cast<double>(cs.size()) + 1.0);
  for (size_t i = 0; i < cs.size(); ++i) {
    const double left = i == 0 ? cs[i].mu - lo_ : cs[i].mu - cs[i - 1].mu;
    const double right = i + 1 == cs.size() ? hi_ - cs[i].mu : cs[i + 1].mu - cs[i].mu;
    mu_.push_back(cs[i].mu);
    sigma_.push_back(cs[i].prior ? range : std::clamp(std::max(left, right), min_sigma, range));
  }
  for (size_t i = 0; i < mu_.size(); ++i) {
    const double mass = normal_cdf((hi_ - mu_[i]) / sigma_[i]) - normal_cdf((lo_ - mu_[i]) / sigma_[i]);
    log_mass_.push_back(std::log(std::max(mass, 1e-300)));
  }
}

double ParzenEstimator::sample(Rng& rng) const {
  const size_t k = rng.below(mu_.size());
  for (int tries = 0; tries < 100; ++tries) {  // truncation by rejection; the mass is >= ~1/3
    const double u = mu_[k] + sigma_[k] * rng.normal();
    if (u >= lo_ && u <= hi_) return u;
  }
  return std::clamp(mu_[k], lo_, hi_);
}

double ParzenEstimator::log_density(double u) const {
  std::vector<double> terms(mu_.size());
  const double log_k = std::log(static_cast<double>(mu_.size()));
  for (size_t i = 0; i < mu_.size(); ++i) {
    const double z = (u - mu_[i]) / sigma_[i];
    terms[i] = -0.5 * z * z - std::log(sigma_[i] * std::sqrt(2 * std::numbers::pi)) - log_mass_[i] - log_k;
  }
  return log_sum_exp(terms);
}

namespace {

class RandomSampler final : public Sampler {
 public:
  std::string name() const override { return "random"; }
  nlohmann::json sample(const SearchSpace& space, const std::vector<nlohmann::json>&, uint64_t seed) const override {
    Rng rng(seed);
    return sample_uniformly(space, rng);
  }
};

class TpeSampler final : public Sampler {
 public:
  explicit TpeSampler(const TpeOptions& o) : o_(o) {
    require(o.startup_trials >= 1, "tpe: startup_trials must be at least 1");
    require(o.candidates >= 1, "tpe: candidates must be at least 1");
  }
  std::string name() const override { return "tpe"; }

  nlohmann::json sample(const SearchSpace& space, const std::vector<nlohmann::json>& ranked,
                        uint64_t seed) const override {
    Rng rng(seed);
    if (static_cast<int64_t>(ranked.size()) < o_.startup_trials) return sample_uniformly(space, rng);
    const size_t n = ranked.size();
    const size_t n_good = std::clamp<size_t>(static_cast<size_t>(std::ceil(o_.good_fraction * static_cast<double>(n))),
                                             1, static_cast<size_t>(std::max<int64_t>(1, o_.max_good)));
    nlohmann::json out = nlohmann::json::object();
    for (const auto& p : space.params) {
      if (p.kind == ParamKind::choice) out[p.name] = sample_choice(p, ranked, n_good, rng);
      else out[p.name] = sample_numeric(p, ranked, n_good, rng);
    }
    return out;
  }

 private:
  // Trials without this parameter (a space extended on resume) do not inform its densities.
  static void split(const ParamSpec& p, const std::vector<nlohmann::json>& ranked, size_t n_good,
                    std::vector<nlohmann::json>& good, std::vector<nlohmann::json>& bad) {
    for (size_t i = 0; i < ranked.size(); ++i) {
      if (!ranked[i].contains(p.name)) continue;
      (i < n_good ? good : bad).push_back(ranked[i][p.name]);
    }
  }

  nlohmann::json sample_numeric(const ParamSpec& p, const std::vector<nlohmann::json>& ranked, size_t n_good,
                                Rng& rng) const {
    std::vector<nlohmann::json> good_v, bad_v;
    split(p, ranked, n_good, good_v, bad_v);
    auto internal = [&](const std::vector<nlohmann::json>& vs) {
      std::vector<double> u;
      for (const auto& v : vs)
        if (v.is_number() && (!p.is_log() || v.get<double>() > 0)) u.push_back(p.to_internal(v.get<double>()));
      return u;
    };
    const ParzenEstimator l(p, internal(good_v)), g(p, internal(bad_v));
    double best_u = 0, best_score = -std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < o_.candidates; ++c) {
      const double u = l.sample(rng);
      const double score = l.log_density(u) - g.log_density(u);
      if (score > best_score) best_score = score, best_u = u;
    }
    return p.from_internal(best_u);
  }

  nlohmann::json sample_choice(const ParamSpec& p, const std::vector<nlohmann::json>& ranked, size_t n_good,
                               Rng& rng) const {
    std::vector<nlohmann::json> good_v, bad_v;
    split(p, ranked, n_good, good_v, bad_v);
    const size_t k = p.choices.size();
    // Counts smoothed by a prior of weight 1 spread evenly over the choices.
    auto weights = [&](const std::vector<nlohmann::json>& vs) {
      std::vector<double> w(k, 1.0 / static_cast<double>(k));
      for (const auto& v : vs)
        for (size_t i = 0; i < k; ++i)
          if (p.choices[i] == v) w[i] += 1;
      double s = 0;
      for (double x : w) s += x;
      for (double& x : w) x /= s;
      return w;
    };
    const auto wl = weights(good_v), wg = weights(bad_v);
    size_t best = 0;
    double best_score = -std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < o_.candidates; ++c) {
      double r = rng.uniform(), acc = 0;
      size_t i = 0;
      for (; i + 1 < k; ++i) {
        acc += wl[i];
        if (r < acc) break;
      }
      const double score = std::log(wl[i]) - std::log(wg[i]);
      if (score > best_score) best_score = score, best = i;
    }
    return p.choices[best];
  }

  TpeOptions o_;
};

}  // namespace

std::unique_ptr<Sampler> make_sampler(const std::string& algorithm, const TpeOptions& tpe) {
  if (algorithm == "random") return std::make_unique<RandomSampler>();
  if (algorithm == "tpe") return std::make_unique<TpeSampler>(tpe);
  throw Error("unknown sweep algorithm '" + algorithm + "' (expected random or tpe)");
}

}  // namespace pricer::sweep
