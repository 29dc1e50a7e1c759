#include "train/optimizer.h"

#include <bit>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace pricer {

static_assert(std::endian::native == std::endian::little, "the state blob is written little-endian");

namespace {

constexpr char kMagic[8] = {'P', 'R', 'I', 'C', 'R', 'O', 'P', 'T'};
constexpr uint32_t kVersion = 1;

template <class T>
void put(std::vector<uint8_t>& out, const T& v) {
  // resize + memcpy rather than a range insert, which GCC 12 misreads as out of bounds.
  const std::size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &v, sizeof(T));
}

class Reader {
 public:
  Reader(std::span<const uint8_t> data, const std::string& source) : d_(data), src_(source) {}
  template <class T>
  T get(const char* what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }
  const uint8_t* take(size_t n, const char* what) {
    require(n <= d_.size() - pos_,
            src_ + ": truncated optimizer state at byte " + std::to_string(pos_) + " (reading " + what + ")");
    const uint8_t* p = d_.data() + pos_;
    pos_ += n;
    return p;
  }
  size_t pos() const { return pos_; }
  bool done() const { return pos_ == d_.size(); }

 private:
  std::span<const uint8_t> d_;
  std::string src_;
  size_t pos_ = 0;
};

}  // namespace

void OptimizerConfig::validate(const std::string& source) const {
  require(kind == OptimizerKind::AdamW || kind == OptimizerKind::SGD, source + ": unknown optimizer kind");
  require(beta1 >= 0.0f && beta1 < 1.0f && beta2 >= 0.0f && beta2 < 1.0f, source + ": adam betas must be in [0, 1)");
  require(eps > 0.0f && std::isfinite(eps), source + ": adam eps must be > 0");
  require(momentum >= 0.0f && momentum < 1.0f, source + ": sgd momentum must be in [0, 1)");
}

std::vector<ParamGroup> make_param_groups(const std::vector<Param>& params, float weight_decay) {
  ParamGroup decay{.params = {}, .weight_decay = weight_decay}, no_decay{.params = {}, .weight_decay = 0.0f};
  for (const Param& p : params) (p.decay ? decay : no_decay).params.push_back(p);
  std::vector<ParamGroup> groups;
  if (!decay.params.empty()) groups.push_back(std::move(decay));
  if (!no_decay.params.empty()) groups.push_back(std::move(no_decay));
  return groups;
}

float clip_grad_norm(std::span<const ParamGroup> groups, float max_norm) {
  double ss = 0.0;
  for (const ParamGroup& g : groups) {
    for (const Param& p : g.params) {
      for (int64_t i = 0; i < p.size; ++i) ss += double(p.grad[i]) * p.grad[i];
    }
  }
  const float norm = static_cast<float>(std::sqrt(ss));
  if (max_norm > 0.0f) {
    const float coef = max_norm / (norm + 1e-6f);
    if (coef < 1.0f) {
      for (const ParamGroup& g : groups) {
        for (const Param& p : g.params) {
          for (int64_t i = 0; i < p.size; ++i) p.grad[i] *= coef;
        }
      }
    }
  }
  return norm;
}

Optimizer::Optimizer(const OptimizerConfig& cfg, std::vector<ParamGroup> groups)
    : cfg_(cfg), groups_(std::move(groups)) {
  cfg_.validate("optimizer");
  for (const ParamGroup& g : groups_) {
    for (const Param& p : g.params) {
      m_.emplace_back(p.size, 0.0f);
      v_.emplace_back(cfg_.kind == OptimizerKind::AdamW ? p.size : 0, 0.0f);
    }
  }
}

void Optimizer::step(Backend& be, float lr) {
  ++step_;
  size_t k = 0;
  for (const ParamGroup& g : groups_) {
    for (const Param& p : g.params) {
      float* m = m_[k].data();
      if (cfg_.kind == OptimizerKind::AdamW) {
        be.adamw_step(p.value, p.grad, m, v_[k].data(), p.size, lr, cfg_.beta1, cfg_.beta2, cfg_.eps, g.weight_decay,
                      step_);
      } else {
        // torch.optim.SGD, dampening 0: the buffer starts at zero, so the first step's
        // buf = momentum * 0 + d equals torch's buf = d.
        for (int64_t i = 0; i < p.size; ++i) {
          float d = p.grad[i] + g.weight_decay * p.value[i];
          if (cfg_.momentum > 0.0f) d = m[i] = cfg_.momentum * m[i] + d;
          p.value[i] -= lr * d;
        }
      }
      ++k;
    }
  }
}

std::vector<uint8_t> Optimizer::save_state() const {
  std::vector<uint8_t> out(kMagic, kMagic + sizeof(kMagic));
  put(out, kVersion);
  put(out, static_cast<uint32_t>(cfg_.kind));
  put(out, step_);
  put(out, static_cast<uint64_t>(m_.size()));
  size_t k = 0;
  for (const ParamGroup& g : groups_) {
    for (const Param& p : g.params) {
      put(out, static_cast<uint32_t>(p.name.size()));
      out.insert(out.end(), p.name.begin(), p.name.end());
      put(out, p.size);
      for (const std::vector<float>* buf : {&m_[k], &v_[k]}) {
        const auto* b = reinterpret_cast<const uint8_t*>(buf->data());
        out.insert(out.end(), b, b + buf->size() * sizeof(float));
      }
      ++k;
    }
  }
  return out;
}

void Optimizer::load_state(std::span<const uint8_t> blob, const std::string& source) {
  Reader r(blob, source);
  require(std::memcmp(r.take(sizeof(kMagic), "magic"), kMagic, sizeof(kMagic)) == 0,
          source + ": not an optimizer state (bad magic at byte 0)");
  const auto version = r.get<uint32_t>("version");
  require(version == kVersion, source + ": optimizer state version " + std::to_string(version) +
                                   " at byte 8, expected " + std::to_string(kVersion));
  const auto kind = r.get<uint32_t>("kind");
  require(kind == static_cast<uint32_t>(cfg_.kind),
          source + ": optimizer state at byte 12 is for another optimizer kind (" + std::to_string(kind) + ")");
  const auto step = r.get<int64_t>("step");
  require(step >= 0, source + ": negative step count " + std::to_string(step) + " at byte 16");
  const auto count = r.get<uint64_t>("parameter count");
  require(count == m_.size(), source + ": optimizer state holds " + std::to_string(count) +
                                  " parameters, this run trains " + std::to_string(m_.size()));
  // Read into fresh buffers so a corrupt blob leaves the optimizer as it was.
  std::vector<std::vector<float>> m = m_, v = v_;
  size_t k = 0;
  for (const ParamGroup& g : groups_) {
    for (const Param& p : g.params) {
      const size_t at = r.pos();
      const auto len = r.get<uint32_t>("name length");
      const auto* name = reinterpret_cast<const char*>(r.take(len, "name"));
      require(std::string_view(name, len) == p.name,
              source + ": parameter " + std::to_string(k) + " at byte " + std::to_string(at) + " is '" +
                  std::string(name, std::min<size_t>(len, 200)) + "', expected '" + p.name + "'");
      const auto size = r.get<int64_t>("size");
      require(size == p.size, source + ": parameter " + p.name + " has " + std::to_string(size) +
                                  " elements in the state, " + std::to_string(p.size) + " in the model");
      for (std::vector<float>* buf : {&m[k], &v[k]}) {
        const size_t bytes = buf->size() * sizeof(float);
        const uint8_t* src = r.take(bytes, p.name.c_str());
        if (bytes > 0) std::memcpy(buf->data(), src, bytes);
      }
      ++k;
    }
  }
  require(r.done(), source + ": " + std::to_string(blob.size() - r.pos()) +
                        " trailing bytes after the optimizer state at byte " + std::to_string(r.pos()));
  m_ = std::move(m);
  v_ = std::move(v);
  step_ = step;
}

}  // namespace pricer
