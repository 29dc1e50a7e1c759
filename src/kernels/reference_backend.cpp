// The reference backend: the scalar templates of kernels/reference.h instantiated with float.
// Quantized weights are expanded whole with to_f32() here; simplicity over memory, since this
// backend exists to check the fast one.
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/backend.h"
#include "kernels/checks.h"
#include "kernels/q8_dot.h"
#include "kernels/reference.h"
#include "quant/half.h"

namespace pricer {

namespace {

// bf16 operands are exactly representable in f32: the reference rounds them, then multiplies
// in f32 as for any other weight.
std::vector<float> rounded_to_bf16(std::vector<float> v) {
  for (float& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}

class ReferenceBackend final : public Backend {
 public:
  explicit ReferenceBackend(DType compute) : compute_(compute) { kernels::check_compute(compute); }
  const char* name() const override { return "reference"; }

  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, const float* B, float beta,
            float* C) override {
    ref::gemm<float>(ta, tb, M, N, K, alpha, A, B, beta, C);
  }

  DType compute() const override { return compute_; }

  void linear_forward(const Weight& W, const float* x, float* y, int64_t n, float beta) override {
    if (W.dtype() == DType::F32) {
      ref::linear_forward<float>(W.f32().data(), W.rows(), W.cols(), x, y, n, beta);
    } else if (compute_ == DType::Q8_0 && kernels::takes_integer_path(W, n)) {
      kernels::q8_linear_forward_reference(W, x, y, n, beta);
    } else if (compute_ != DType::F32) {
      const std::vector<float> w = rounded_to_bf16(W.to_f32());
      const std::vector<float> xr = rounded_to_bf16({x, x + n * W.cols()});
      ref::linear_forward<float>(w.data(), W.rows(), W.cols(), xr.data(), y, n, beta);
    } else {
      const std::vector<float> w = W.to_f32();
      ref::linear_forward<float>(w.data(), W.rows(), W.cols(), x, y, n, beta);
    }
  }

  void linear_backward_input(const Weight& W, const float* dy, float* dx, int64_t n) override {
    if (W.dtype() == DType::F32) {
      ref::linear_backward_input<float>(W.f32().data(), W.rows(), W.cols(), dy, dx, n);
    } else if (compute_ != DType::F32) {
      const std::vector<float> w = rounded_to_bf16(W.to_f32());
      const std::vector<float> dyr = rounded_to_bf16({dy, dy + n * W.rows()});
      ref::linear_backward_input<float>(w.data(), W.rows(), W.cols(), dyr.data(), dx, n);
    } else {
      const std::vector<float> w = W.to_f32();
      ref::linear_backward_input<float>(w.data(), W.rows(), W.cols(), dy, dx, n);
    }
  }

  void rmsnorm_forward(const float* x, const float* w, float* y, float* rstd, int64_t n, int64_t dim,
                       float eps) override {
    ref::rmsnorm_forward<float>(x, w, y, rstd, n, dim, eps);
  }

  void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx, float* dw,
                        int64_t n, int64_t dim) override {
    ref::rmsnorm_backward<float>(dy, x, w, rstd, dx, dw, n, dim);
  }

  void rope_impl(float* x, const int32_t* pos, int64_t n, int heads, int head_dim, const float* inv_freq,
                 bool inverse) override {
    ref::rope<float>(x, pos, n, heads, head_dim, inv_freq, inverse);
  }

  void attention_forward_impl(const float* q, const float* k, const float* v, float* out, float* lse,
                              std::span<const int32_t> cu_seqlens, int heads, int kv_heads, int hd) override {
    ref::attention_forward<float>(q, k, v, out, lse, cu_seqlens, heads, kv_heads, hd);
  }

  void attention_backward_impl(const float* q, const float* k, const float* v, const float* out, const float* lse,
                               const float* dout, float* dq, float* dk, float* dv, std::span<const int32_t> cu_seqlens,
                               int heads, int kv_heads, int hd) override {
    ref::attention_backward<float>(q, k, v, out, lse, dout, dq, dk, dv, cu_seqlens, heads, kv_heads, hd);
  }

  void attention_decode_impl(const float* q, const float* k, const float* v, int64_t stride, int64_t n, float* out,
                             int heads, int kv_heads, int hd) override {
    ref::attention_decode<float>(q, k, v, stride, n, out, heads, kv_heads, hd);
  }

  void swiglu_forward(const float* g, const float* u, float* h, int64_t n) override {
    ref::swiglu_forward<float>(g, u, h, n);
  }

  void swiglu_backward(const float* g, const float* u, const float* dh, float* dg, float* du, int64_t n) override {
    ref::swiglu_backward<float>(g, u, dh, dg, du, n);
  }

  void cross_entropy_impl(float* logits, const int32_t* targets, float* losses, int64_t n, int64_t vocab,
                          float grad_scale) override {
    ref::cross_entropy<float>(logits, targets, losses, n, vocab, grad_scale);
  }

  void embedding_forward_impl(const Weight& table, const int32_t* ids, float* out, int64_t n) override {
    if (table.dtype() == DType::F32) {
      ref::embedding_forward<float>(table.f32().data(), table.cols(), ids, out, n);
    } else {
      for (int64_t i = 0; i < n; ++i) table.dequantize_rows(ids[i], 1, out + i * table.cols());
    }
  }

  void embedding_backward(const int32_t* ids, const float* dout, float* dtable, int64_t n, int64_t dim) override {
    ref::embedding_backward<float>(ids, dout, dtable, n, dim);
  }

  void adamw_step_impl(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
                       float beta2, float eps, float weight_decay, int64_t step) override {
    ref::adamw_step<float>(param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
  }

 private:
  DType compute_;
};

}  // namespace

std::unique_ptr<Backend> make_reference_backend(DType compute) { return std::make_unique<ReferenceBackend>(compute); }

}  // namespace pricer
