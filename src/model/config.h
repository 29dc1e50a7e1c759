#pragma once
// Architecture of a Llama-family decoder (Llama 2/3, Qwen2-style q/k/v bias, llama2.c models).
#include <cstdint>
#include <string>
#include <vector>

namespace pricer {

struct RopeScaling {
  // Llama 3 "llama3" rope_type; factor <= 1 means no scaling.
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int64_t original_max_position = 8192;
};

struct ModelConfig {
  std::string architecture = "llama";
  int64_t vocab_size = 0;
  int64_t dim = 0;  // hidden_size
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // GQA; == n_heads for MHA
  int64_t head_dim = 0;  // usually dim / n_heads
  int64_t ffn_dim = 0;  // intermediate_size
  int64_t max_seq_len = 2048;
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  bool tied_embeddings = false;  // output head shares the token embedding
  bool qkv_bias = false;  // Qwen2
  int32_t bos_id = -1, eos_id = -1;

  // Throws Error naming `source` when sizes are absent, negative, inconsistent or absurd.
  void validate(const std::string& source) const;
  int64_t n_params() const;
};

// The 7 projections LoRA can adapt, in Hugging Face names.
enum class Proj : int { Q = 0, K, V, O, Gate, Up, Down };
inline constexpr int kNumProj = 7;
const char* proj_name(Proj p);  // "q_proj", ..., "down_proj"

}  // namespace pricer
