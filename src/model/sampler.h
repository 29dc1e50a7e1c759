#pragma once
// Next-token sampling from logits: temperature, top-k and top-p (nucleus), in that order, as
// Hugging Face's generate applies them; temperature 0 is greedy (argmax, ties to the lowest id,
// as llama2.c). A seeded Sampler draws the same tokens from the same logits on every machine.
#include <cstdint>
#include <span>
#include <vector>

namespace pricer {

struct SamplingOptions {
  float temperature = 0.8f;  // 0 = greedy
  int64_t top_k = 40;  // keep the k most likely tokens; 0 = all
  float top_p = 0.95f;  // keep the smallest set of most likely tokens whose mass reaches p; 1 = all
  uint64_t seed = 0;

  // Throws Error naming the option when a value is out of range.
  void validate() const;
  bool greedy() const { return temperature == 0.0f; }
};

// The first index of the largest logit. Throws Error when no logit is finite.
int32_t argmax(std::span<const float> logits);

struct Candidate {
  int32_t id = 0;
  double prob = 0;
};

// The distribution a non-greedy draw comes from: softmax(logits / temperature), cut to the top_k
// most likely tokens, then to the smallest prefix whose probability (renormalized after top-k)
// reaches top_p; renormalized again. Most likely first, ties by id.
std::vector<Candidate> sampling_candidates(std::span<const float> logits, const SamplingOptions& options);

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options);
  int32_t sample(std::span<const float> logits);
  const SamplingOptions& options() const { return options_; }

 private:
  double uniform();  // [0, 1) from a splitmix64 stream

  SamplingOptions options_;
  uint64_t state_;
  std::vector<double> probs_;  // scratch for the plain (no top-k / top-p) draw
};

}  // namespace pricer
