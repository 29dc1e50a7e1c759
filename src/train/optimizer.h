#pragma once
// Optimizers over parameter groups (PyTorch semantics): AdamW with decoupled weight decay and bias
// correction, SGD with optional momentum; global-norm gradient clipping; a state blob that makes a
// resumed run continue bitwise where it stopped.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "model/param.h"

namespace pricer {

enum class OptimizerKind : uint32_t { AdamW = 1, SGD = 2 };

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::AdamW;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;  // AdamW
  float momentum = 0.0f;  // SGD; 0 = plain SGD
  void validate(const std::string& source) const;
};

struct ParamGroup {
  std::vector<Param> params;
  float weight_decay = 0.0f;  // AdamW: decoupled; SGD: added to the gradient (torch.optim.SGD)
};

// Two groups: tensors with decay = true get weight_decay, norms and biases none.
std::vector<ParamGroup> make_param_groups(const std::vector<Param>& params, float weight_decay);

// Scales every gradient by max_norm / (norm + 1e-6) when the global L2 norm exceeds max_norm
// (torch.nn.utils.clip_grad_norm_); max_norm <= 0 only measures. Returns the norm before clipping.
float clip_grad_norm(std::span<const ParamGroup> groups, float max_norm);

class Optimizer {
 public:
  Optimizer(const OptimizerConfig& cfg, std::vector<ParamGroup> groups);

  // One update of every parameter from its gradient with learning rate lr.
  void step(Backend& be, float lr);
  int64_t steps() const { return step_; }
  const OptimizerConfig& config() const { return cfg_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }

  // The state (kind, step count, per-parameter moments, by parameter name) as a binary blob:
  // "PRICEROPT" magic, version, then little-endian fields.
  std::vector<uint8_t> save_state() const;
  // Restores a blob from save_state of an optimizer over the same parameters; throws Error naming
  // `source` and the byte offset on a corrupt or mismatching blob.
  void load_state(std::span<const uint8_t> blob, const std::string& source);

 private:
  OptimizerConfig cfg_;
  std::vector<ParamGroup> groups_;
  int64_t step_ = 0;
  // Per parameter in group order: AdamW m and v; SGD the momentum buffer (in m).
  std::vector<std::vector<float>> m_, v_;
};

}  // namespace pricer
