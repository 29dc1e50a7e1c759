#pragma once
// The compute interface the model is written against. The CPU backend runs the fast kernels
// (oneDNN GEMMs, AVX2 loops, OpenMP); the reference backend runs the plain scalar twins, so the
// whole model can be checked against itself op by op. Another device would implement the same
// calls.
//
// Layout conventions: activations are row-major [T, features], T = tokens of a packed batch;
// sequence i of the batch occupies rows [cu_seqlens[i], cu_seqlens[i+1]) and attends causally
// only within itself. Weights are [out, in] (Hugging Face nn.Linear layout).
#include <cstdint>
#include <memory>
#include <span>

#include "kernels/checks.h"
#include "quant/weight.h"

namespace pricer {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // The precision of the linears through weights stored in a reduced format (NF4, bf16, ggml
  // blocks): F32, or BF16 = operands rounded to bf16 and products summed in f32, as
  // bitsandbytes' compute_dtype=bfloat16, or Q8_0 = as BF16, except that passes of a few tokens
  // (decoding) through weights in Q8_0, Q4_0 or NF4 blocks take activations rounded to 8-bit
  // blocks and integer dot products, as llama.cpp computes them (kernels/q8_dot.h). F32 weights are always multiplied
  // in f32.
  virtual DType compute() const = 0;

  // ---- dense f32 GEMM: C[M,N] = alpha * op(A) op(B) + beta * C, row-major, op = transpose if t.
  virtual void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, const float* B,
                    float beta, float* C) = 0;

  // ---- linear layers through a (possibly quantized) weight W [out, in].
  // y[n, out] = x[n, in] W^T    (beta = 0: overwrite y; beta = 1: accumulate)
  virtual void linear_forward(const Weight& W, const float* x, float* y, int64_t n, float beta) = 0;
  // Several linears of one input (a layer's q, k, v; gate and up): ys[i][n, rows of Ws[i]] =
  // x Ws[i]^T, one output per weight and every weight as wide as x. A backend may take them in
  // one pass.
  void linears_forward(std::span<const Weight* const> Ws, const float* x, std::span<float* const> ys, int64_t n) {
    kernels::check_linears(Ws, ys.size());
    linears_forward_impl(Ws, x, ys, n);
  }
  // dx[n, in] += dy[n, out] W   (the input gradient through a frozen weight; W dequantized a
  // band of rows at a time, never as a whole)
  virtual void linear_backward_input(const Weight& W, const float* dy, float* dx, int64_t n) = 0;

  // ---- RMSNorm: y = x / sqrt(mean(x^2) + eps) * w, rows of width dim; rstd[n] saved.
  virtual void rmsnorm_forward(const float* x, const float* w, float* y, float* rstd, int64_t n, int64_t dim,
                               float eps) = 0;
  // dx = (overwrite), dw += (if dw != nullptr)
  virtual void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx,
                                float* dw, int64_t n, int64_t dim) = 0;

  // ---- RoPE, rotate-half convention (HF Llama), in place on x [n, heads * head_dim]:
  // for pair (j, j + head_dim/2), angle = pos[t] * inv_freq[j]. inverse = true applies the
  // transpose rotation (the backward).
  void rope(float* x, const int32_t* pos, int64_t n, int heads, int head_dim, const float* inv_freq, bool inverse) {
    kernels::check_rope(heads, head_dim);
    rope_impl(x, pos, n, heads, head_dim, inv_freq, inverse);
  }

  // ---- causal attention per sequence with GQA (head h reads kv head h / (heads / kv_heads)).
  // q, out [T, heads * hd]; k, v [T, kv_heads * hd]; lse [heads, T] log-sum-exp saved for backward.
  // Scores are scaled by 1/sqrt(hd).
  void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse,
                         std::span<const int32_t> cu_seqlens, int heads, int kv_heads, int hd) {
    kernels::check_attention(cu_seqlens, heads, kv_heads, hd);
    attention_forward_impl(q, k, v, out, lse, cu_seqlens, heads, kv_heads, hd);
  }
  // dq, dk, dv are overwritten.
  void attention_backward(const float* q, const float* k, const float* v, const float* out, const float* lse,
                          const float* dout, float* dq, float* dk, float* dv, std::span<const int32_t> cu_seqlens,
                          int heads, int kv_heads, int hd) {
    kernels::check_attention(cu_seqlens, heads, kv_heads, hd);
    attention_backward_impl(q, k, v, out, lse, dout, dq, dk, dv, cu_seqlens, heads, kv_heads, hd);
  }

  // ---- decoding: one new token per head against a kv cache, GQA as above. q, out [heads * hd];
  // kv head g's n keys (values) are rows of hd from k + g * stride (v + g * stride).
  void attention_decode(const float* q, const float* k, const float* v, int64_t stride, int64_t n, float* out,
                        int heads, int kv_heads, int hd) {
    kernels::check_attention_decode(n, stride, heads, kv_heads, hd);
    attention_decode_impl(q, k, v, stride, n, out, heads, kv_heads, hd);
  }

  // ---- SwiGLU: h = silu(g) * u over n elements; backward overwrites dg, du.
  virtual void swiglu_forward(const float* g, const float* u, float* h, int64_t n) = 0;
  virtual void swiglu_backward(const float* g, const float* u, const float* dh, float* dg, float* du, int64_t n) = 0;

  // ---- softmax cross-entropy over rows of logits [n, vocab] with integer targets.
  // losses[i] = logsumexp(row) - row[target]; logits are overwritten by the gradient
  // (softmax - onehot) * grad_scale. Returns nothing; losses written per row. A negative target
  // marks a row to ignore (loss 0, gradient 0), like PyTorch's ignore_index.
  void cross_entropy(float* logits, const int32_t* targets, float* losses, int64_t n, int64_t vocab, float grad_scale) {
    kernels::check_targets(targets, n, vocab);
    cross_entropy_impl(logits, targets, losses, n, vocab, grad_scale);
  }

  // ---- embedding rows of table [vocab, dim] (f32 or any Weight format via dequantize_rows).
  void embedding_forward(const Weight& table, const int32_t* ids, float* out, int64_t n) {
    kernels::check_ids("embedding_forward", ids, n, table.rows());
    embedding_forward_impl(table, ids, out, n);
  }
  // dtable[ids[i]] += dout[i]  (full-parameter mode)
  virtual void embedding_backward(const int32_t* ids, const float* dout, float* dtable, int64_t n, int64_t dim) = 0;

  // ---- AdamW with decoupled weight decay and bias correction; step counts from 1.
  void adamw_step(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int64_t step) {
    kernels::check_adamw_step(step);
    adamw_step_impl(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
  }

 protected:
  // The checked ops' implementations: called only after the public wrapper above has checked the
  // input that comes from files and users (ids, targets, sequence boundaries, head counts), so
  // each backend checks nothing twice and none forgets a check.
  virtual void rope_impl(float* x, const int32_t* pos, int64_t n, int heads, int head_dim, const float* inv_freq,
                         bool inverse) = 0;
  virtual void attention_forward_impl(const float* q, const float* k, const float* v, float* out, float* lse,
                                      std::span<const int32_t> cu_seqlens, int heads, int kv_heads, int hd) = 0;
  virtual void attention_backward_impl(const float* q, const float* k, const float* v, const float* out,
                                       const float* lse, const float* dout, float* dq, float* dk, float* dv,
                                       std::span<const int32_t> cu_seqlens, int heads, int kv_heads, int hd) = 0;
  // One by one here.
  virtual void linears_forward_impl(std::span<const Weight* const> Ws, const float* x, std::span<float* const> ys,
                                    int64_t n) {
    for (size_t i = 0; i < Ws.size(); ++i) linear_forward(*Ws[i], x, ys[i], n, 0.0f);
  }
  virtual void attention_decode_impl(const float* q, const float* k, const float* v, int64_t stride, int64_t n,
                                     float* out, int heads, int kv_heads, int hd) = 0;
  virtual void cross_entropy_impl(float* logits, const int32_t* targets, float* losses, int64_t n, int64_t vocab,
                                  float grad_scale) = 0;
  virtual void embedding_forward_impl(const Weight& table, const int32_t* ids, float* out, int64_t n) = 0;
  virtual void adamw_step_impl(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
                               float beta2, float eps, float weight_decay, int64_t step) = 0;
};

// compute: DType::F32, DType::BF16 or DType::Q8_0 (see Backend::compute); anything else throws Error.
std::unique_ptr<Backend> make_cpu_backend(DType compute = DType::F32);  // fast kernels
std::unique_ptr<Backend> make_reference_backend(DType compute = DType::F32);  // scalar twins

}  // namespace pricer
