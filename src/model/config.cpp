#include "model/config.h"

#include <cmath>

#include "core/error.h"

namespace pricer {

namespace {

// Generous ceilings: far above any Llama-family model we could run on a CPU, low enough that a
// corrupt header cannot make us size buffers in the terabytes.
constexpr int64_t kMaxVocab = int64_t{1} << 22;
constexpr int64_t kMaxDim = int64_t{1} << 16;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxHeadDim = 1024;
constexpr int64_t kMaxFfn = int64_t{1} << 18;
constexpr int64_t kMaxSeq = int64_t{1} << 24;
constexpr int64_t kMaxParams = int64_t{1} << 37;

void check_range(const std::string& source, const char* key, int64_t v, int64_t lo, int64_t hi) {
  require(v >= lo && v <= hi, source + ": " + key + " = " + std::to_string(v) + " is out of range [" +
                                  std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

}  // namespace

void ModelConfig::validate(const std::string& source) const {
  check_range(source, "vocab_size", vocab_size, 1, kMaxVocab);
  check_range(source, "hidden_size", dim, 1, kMaxDim);
  check_range(source, "num_hidden_layers", n_layers, 1, kMaxLayers);
  check_range(source, "num_attention_heads", n_heads, 1, kMaxHeads);
  check_range(source, "num_key_value_heads", n_kv_heads, 1, n_heads);
  require(n_heads % n_kv_heads == 0, source + ": num_attention_heads = " + std::to_string(n_heads) +
                                         " is not a multiple of num_key_value_heads = " + std::to_string(n_kv_heads));
  check_range(source, "head_dim", head_dim, 2, kMaxHeadDim);
  require(head_dim % 2 == 0,
          source + ": head_dim = " + std::to_string(head_dim) + " must be even for rotary embeddings");
  check_range(source, "intermediate_size", ffn_dim, 1, kMaxFfn);
  check_range(source, "max_position_embeddings", max_seq_len, 1, kMaxSeq);
  require(std::isfinite(rms_eps) && rms_eps > 0.0f && rms_eps < 1.0f,
          source + ": rms_norm_eps = " + std::to_string(rms_eps) + " must be in (0, 1)");
  require(std::isfinite(rope_theta) && rope_theta > 1.0f,
          source + ": rope_theta = " + std::to_string(rope_theta) + " must be > 1");
  const RopeScaling& rs = rope_scaling;
  require(std::isfinite(rs.factor) && rs.factor > 0.0f,
          source + ": rope_scaling.factor = " + std::to_string(rs.factor) + " must be > 0");
  if (rs.factor > 1.0f) {
    require(std::isfinite(rs.low_freq_factor) && std::isfinite(rs.high_freq_factor) && rs.low_freq_factor > 0.0f &&
                rs.high_freq_factor > rs.low_freq_factor,
            source + ": rope_scaling needs 0 < low_freq_factor < high_freq_factor (got " +
                std::to_string(rs.low_freq_factor) + ", " + std::to_string(rs.high_freq_factor) + ")");
    check_range(source, "rope_scaling.original_max_position_embeddings", rs.original_max_position, 1, kMaxSeq);
  }
  // Each size may be plausible alone and their product still absurd.
  require(n_params() <= kMaxParams,
          source + ": " + std::to_string(n_params()) + " parameters exceed the limit of " + std::to_string(kMaxParams));
  require(bos_id < vocab_size && eos_id < vocab_size,
          source + ": bos/eos token id outside the vocabulary of " + std::to_string(vocab_size));
}

int64_t ModelConfig::n_params() const {
  const int64_t q_out = n_heads * head_dim, kv_out = n_kv_heads * head_dim;
  int64_t per_layer = 2 * dim  // the two norms
                      + 2 * dim * q_out  // q, o
                      + 2 * dim * kv_out  // k, v
                      + 3 * dim * ffn_dim;  // gate, up, down
  if (qkv_bias) per_layer += q_out + 2 * kv_out;
  int64_t n = vocab_size * dim + n_layers * per_layer + dim;
  if (!tied_embeddings) n += vocab_size * dim;
  return n;
}

const char* proj_name(Proj p) {
  static constexpr const char* kNames[kNumProj] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                   "gate_proj", "up_proj", "down_proj"};
  const int i = static_cast<int>(p);
  return (i >= 0 && i < kNumProj) ? kNames[i] : "unknown_proj";
}

}  // namespace pricer
