#include "train/weight_average.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/threads.h"

namespace pricer {

WeightAverage::WeightAverage(const std::vector<Param>& params, double decay) : decay_(decay) {
  require(decay > 0 && decay < 1, "the weight average's decay must be in (0, 1)");
  shadow_.reserve(params.size());
  for (const Param& p : params) shadow_.emplace_back(p.value, p.value + p.size);
}

double WeightAverage::decay_now() const {
  const double n = static_cast<double>(updates_);
  return std::min(decay_, (1.0 + n) / (10.0 + n));
}

void WeightAverage::update(const std::vector<Param>& params) {
  const float d = static_cast<float>(decay_now());
  for (std::size_t t = 0; t < params.size(); ++t) {
    float* s = shadow_[t].data();
    const float* v = params[t].value;
#pragma omp parallel for num_threads(threads()) if (params[t].size > 65536)
    for (int64_t i = 0; i < params[t].size; ++i) s[i] = d * s[i] + (1.0f - d) * v[i];
  }
  ++updates_;
}

void WeightAverage::with_averaged(const std::vector<Param>& params, const std::function<void()>& f) {
  for (std::size_t t = 0; t < params.size(); ++t)
    std::swap_ranges(shadow_[t].begin(), shadow_[t].end(), params[t].value);
  struct Restore {
    WeightAverage& w;
    const std::vector<Param>& params;
    ~Restore() {
      for (std::size_t t = 0; t < params.size(); ++t)
        std::swap_ranges(w.shadow_[t].begin(), w.shadow_[t].end(), params[t].value);
    }
  } restore{*this, params};
  f();
}

std::vector<uint8_t> WeightAverage::save_state() const {
  std::size_t n = 8;
  for (const auto& s : shadow_) n += s.size() * 4;
  std::vector<uint8_t> out(n);
  std::memcpy(out.data(), &updates_, 8);
  std::size_t at = 8;
  for (const auto& s : shadow_) {
    std::memcpy(out.data() + at, s.data(), s.size() * 4);
    at += s.size() * 4;
  }
  return out;
}

void WeightAverage::load_state(std::span<const uint8_t> blob, const std::string& source) {
  std::size_t n = 8;
  for (const auto& s : shadow_) n += s.size() * 4;
  require(blob.size() == n, source + ": the weight average holds " + std::to_string(blob.size()) + " bytes, " +
                                std::to_string(n) + " expected for this model");
  std::memcpy(&updates_, blob.data(), 8);
  require(updates_ >= 0, source + ": the weight average has a negative update count");
  std::size_t at = 8;
  for (auto& s : shadow_) {
    std::memcpy(s.data(), blob.data() + at, s.size() * 4);
    at += s.size() * 4;
  }
}

}  // namespace pricer
