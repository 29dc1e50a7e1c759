#pragma once
// Causal attention over packed sequences for the fast CPU backend, in tiles of kAttentionBlock
// queries by kAttentionBlock keys: a tile's scores, probabilities and their products with the
// values, keys and queries are small GEMMs (oneDNN's sgemm on the calling thread), the only
// temporaries two tiles per thread (no [T, T] matrix). The forward's softmax is online over the
// key tiles; the backward recomputes the probabilities from the saved log-sum-exp.
// Layouts are Backend::attention_forward / attention_backward's.
#include <cstdint>
#include <span>

namespace pricer::kernels {

inline constexpr int64_t kAttentionBlock = 64;

struct AttentionShape {
  std::span<const int32_t> cu_seqlens;  // sequence starts, then the total row count
  int heads, kv_heads, hd;
};

void blocked_attention_forward(const float* q, const float* k, const float* v, float* out, float* lse,
                               const AttentionShape& shape);

void blocked_attention_backward(const float* q, const float* k, const float* v, const float* out, const float* lse,
                                const float* dout, float* dq, float* dk, float* dv, const AttentionShape& shape);

}  // namespace pricer::kernels
