#pragma once
// Scalar reference kernels: the plainest loops that compute each op, written as templates over
// the scalar type so the same code runs in double precision for finite-difference checks. The
// reference backend instantiates them with float; the fast CPU backend is tested against them.
// Layouts follow src/kernels/backend.h. Argument validation (ids, targets, cu_seqlens) is done
// by the callers through kernels/checks.h; these loops assume valid input.
// Reductions accumulate in double whatever T is: a float sum over a 128k-wide vocabulary row
// would otherwise be the least accurate thing in the comparison.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace pricer::ref {

// C[M,N] = alpha * op(A) op(B) + beta * C, row-major; op(A) is [M,K], op(B) is [K,N].
template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, const T* B, T beta, T* C) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < K; ++p) {
        const T a = ta ? A[p * M + i] : A[i * K + p];
        const T b = tb ? B[j * K + p] : B[p * N + j];
        acc += a * b;
      }
      // beta == 0 must not read C (it may hold garbage or NaN), as in BLAS.
      C[i * N + j] = beta == T(0) ? alpha * T(acc) : alpha * T(acc) + beta * C[i * N + j];
    }
  }
}

// y[n, out] = x[n, in] W^T + beta * y, with W [out, in].
template <class T>
void linear_forward(const T* W, int64_t out, int64_t in, const T* x, T* y, int64_t n, T beta) {
  gemm<T>(false, true, n, out, in, T(1), x, W, beta, y);
}

// dx[n, in] += dy[n, out] W.
template <class T>
void linear_backward_input(const T* W, int64_t out, int64_t in, const T* dy, T* dx, int64_t n) {
  gemm<T>(false, false, n, in, out, T(1), dy, W, T(1), dx);
}

template <class T>
void rmsnorm_forward(const T* x, const T* w, T* y, T* rstd, int64_t n, int64_t dim, T eps) {
  for (int64_t r = 0; r < n; ++r) {
    const T* xr = x + r * dim;
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(xr[i]) * xr[i];
    const T rs = T(1) / std::sqrt(T(ss / double(dim)) + eps);
    rstd[r] = rs;
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = xr[i] * rs * w[i];
  }
}

// With y_i = x_i r w_i and r = (mean(x^2) + eps)^-1/2:
//   dx_i = r w_i dy_i - x_i r^3 / dim * sum_j dy_j w_j x_j,   dw_i += sum_rows dy_i x_i r.
template <class T>
void rmsnorm_backward(const T* dy, const T* x, const T* w, const T* rstd, T* dx, T* dw, int64_t n, int64_t dim) {
  for (int64_t r = 0; r < n; ++r) {
    const T* xr = x + r * dim;
    const T* dyr = dy + r * dim;
    const T rs = rstd[r];
    double dot = 0;
    for (int64_t i = 0; i < dim; ++i) dot += double(dyr[i] * w[i]) * xr[i];
    const T c = T(dot) * rs * rs * rs / T(dim);
    for (int64_t i = 0; i < dim; ++i) dx[r * dim + i] = rs * w[i] * dyr[i] - xr[i] * c;
    if (dw) {
      for (int64_t i = 0; i < dim; ++i) dw[i] += dyr[i] * xr[i] * rs;
    }
  }
}

// Rotate-half RoPE in place; inverse rotates by the negative angle (the transpose).
template <class T>
void rope(T* x, const int32_t* pos, int64_t n, int heads, int head_dim, const T* inv_freq, bool inverse) {
  const int half = head_dim / 2;
  for (int64_t t = 0; t < n; ++t) {
    for (int h = 0; h < heads; ++h) {
      T* xh = x + (t * heads + h) * head_dim;
      for (int j = 0; j < half; ++j) {
        const T angle = T(pos[t]) * inv_freq[j];
        const T c = std::cos(angle);
        const T s = inverse ? -std::sin(angle) : std::sin(angle);
        const T a = xh[j], b = xh[j + half];
        xh[j] = a * c - b * s;
        xh[j + half] = b * c + a * s;
      }
    }
  }
}

// One query token per head against n cached keys and values per kv head (rows of hd, kv head g's
// from k + g * stride), GQA; sums in double.
template <class T>
void attention_decode(const T* q, const T* k, const T* v, int64_t stride, int64_t n, T* out, int heads, int kv_heads,
                      int hd) {
  const int group = heads / kv_heads;
  std::vector<double> s(static_cast<size_t>(n));
  for (int h = 0; h < heads; ++h) {
    const T* qh = q + int64_t(h) * hd;
    const T* K = k + int64_t(h / group) * stride;
    const T* V = v + int64_t(h / group) * stride;
    double mx = -std::numeric_limits<double>::infinity(), sum = 0;
    for (int64_t j = 0; j < n; ++j) {
      double d = 0;
      for (int e = 0; e < hd; ++e) d += double(qh[e]) * K[j * hd + e];
      s[size_t(j)] = d / std::sqrt(double(hd));
      mx = std::max(mx, s[size_t(j)]);
    }
    for (auto& sj : s) sum += (sj = std::exp(sj - mx));
    for (int e = 0; e < hd; ++e) {
      double o = 0;
      for (int64_t j = 0; j < n; ++j) o += s[size_t(j)] * V[j * hd + e];
      out[int64_t(h) * hd + e] = T(o / sum);
    }
  }
}

// Causal attention per sequence, GQA; full score row per query (the reference keeps it simple).
template <class T>
void attention_forward(const T* q, const T* k, const T* v, T* out, T* lse, std::span<const int32_t> cu_seqlens,
                       int heads, int kv_heads, int hd) {
  const int64_t total = cu_seqlens.back();
  const int group = heads / kv_heads;
  const T scale = T(1) / std::sqrt(T(hd));
  const int64_t qs = int64_t(heads) * hd, ks = int64_t(kv_heads) * hd;
  std::vector<T> s;
  for (size_t b = 0; b + 1 < cu_seqlens.size(); ++b) {
    const int64_t t0 = cu_seqlens[b], t1 = cu_seqlens[b + 1];
    for (int h = 0; h < heads; ++h) {
      const int kh = h / group;
      for (int64_t i = t0; i < t1; ++i) {
        const T* qi = q + i * qs + int64_t(h) * hd;
        s.assign(size_t(i - t0 + 1), T(0));
        T mx = -INFINITY;
        for (int64_t j = t0; j <= i; ++j) {
          const T* kj = k + j * ks + int64_t(kh) * hd;
          double d = 0;
          for (int e = 0; e < hd; ++e) d += double(qi[e]) * kj[e];
          s[size_t(j - t0)] = T(d) * scale;
          mx = std::max(mx, s[size_t(j - t0)]);
        }
        double sum = 0;
        for (auto& sj : s) sum += std::exp(sj - mx);
        const T l = mx + T(std::log(sum));
        lse[int64_t(h) * total + i] = l;
        T* oi = out + i * qs + int64_t(h) * hd;
        for (int e = 0; e < hd; ++e) oi[e] = 0;
        for (int64_t j = t0; j <= i; ++j) {
          const T p = std::exp(s[size_t(j - t0)] - l);
          const T* vj = v + j * ks + int64_t(kh) * hd;
          for (int e = 0; e < hd; ++e) oi[e] += p * vj[e];
        }
      }
    }
  }
}

// Backward from the saved lse: p = exp(s - lse), dp = dout . v, D = dout . out,
// ds = p (dp - D); dq += scale ds k, dk += scale ds q, dv += p dout.
template <class T>
void attention_backward(const T* q, const T* k, const T* v, const T* out, const T* lse, const T* dout, T* dq, T* dk,
                        T* dv, std::span<const int32_t> cu_seqlens, int heads, int kv_heads, int hd) {
  const int64_t total = cu_seqlens.back();
  const int group = heads / kv_heads;
  const T scale = T(1) / std::sqrt(T(hd));
  const int64_t qs = int64_t(heads) * hd, ks = int64_t(kv_heads) * hd;
  std::fill(dq, dq + total * qs, T(0));
  std::fill(dk, dk + total * ks, T(0));
  std::fill(dv, dv + total * ks, T(0));
  for (size_t b = 0; b + 1 < cu_seqlens.size(); ++b) {
    const int64_t t0 = cu_seqlens[b], t1 = cu_seqlens[b + 1];
    for (int h = 0; h < heads; ++h) {
      const int kh = h / group;
      for (int64_t i = t0; i < t1; ++i) {
        const T* qi = q + i * qs + int64_t(h) * hd;
        const T* oi = out + i * qs + int64_t(h) * hd;
        const T* gi = dout + i * qs + int64_t(h) * hd;
        T* dqi = dq + i * qs + int64_t(h) * hd;
        double Dacc = 0;
        for (int e = 0; e < hd; ++e) Dacc += double(gi[e]) * oi[e];
        const T D = T(Dacc);
        const T l = lse[int64_t(h) * total + i];
        for (int64_t j = t0; j <= i; ++j) {
          const T* kj = k + j * ks + int64_t(kh) * hd;
          const T* vj = v + j * ks + int64_t(kh) * hd;
          double sc = 0, dp = 0;
          for (int e = 0; e < hd; ++e) {
            sc += double(qi[e]) * kj[e];
            dp += double(gi[e]) * vj[e];
          }
          const T p = std::exp(T(sc) * scale - l);
          const T ds = p * (T(dp) - D) * scale;
          T* dkj = dk + j * ks + int64_t(kh) * hd;
          T* dvj = dv + j * ks + int64_t(kh) * hd;
          for (int e = 0; e < hd; ++e) {
            dqi[e] += ds * kj[e];
            dkj[e] += ds * qi[e];
            dvj[e] += p * gi[e];
          }
        }
      }
    }
  }
}

template <class T>
T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

template <class T>
void swiglu_forward(const T* g, const T* u, T* h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] = g[i] * sigmoid(g[i]) * u[i];
}

// d silu(g)/dg = sig(g) (1 + g (1 - sig(g))).
template <class T>
void swiglu_backward(const T* g, const T* u, const T* dh, T* dg, T* du, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T sg = sigmoid(g[i]);
    du[i] = dh[i] * g[i] * sg;
    dg[i] = dh[i] * u[i] * sg * (T(1) + g[i] * (T(1) - sg));
  }
}

// Rows with a negative target are ignored (loss 0, zero gradient), like PyTorch's ignore_index.
template <class T>
void cross_entropy(T* logits, const int32_t* targets, T* losses, int64_t n, int64_t vocab, T grad_scale) {
  for (int64_t r = 0; r < n; ++r) {
    T* x = logits + r * vocab;
    if (targets[r] < 0) {
      losses[r] = 0;
      std::fill(x, x + vocab, T(0));
      continue;
    }
    T mx = -INFINITY;
    for (int64_t i = 0; i < vocab; ++i) mx = std::max(mx, x[i]);
    double sum = 0;
    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(x[i] - mx);
    const T l = mx + T(std::log(sum));
    losses[r] = l - x[targets[r]];
    for (int64_t i = 0; i < vocab; ++i) x[i] = std::exp(x[i] - l) * grad_scale;
    x[targets[r]] -= grad_scale;
  }
}

template <class T>
void embedding_forward(const T* table, int64_t dim, const int32_t* ids, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) std::copy(table + ids[i] * dim, table + (ids[i] + 1) * dim, out + i * dim);
}

template <class T>
void embedding_backward(const int32_t* ids, const T* dout, T* dtable, int64_t n, int64_t dim) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t e = 0; e < dim; ++e) dtable[ids[i] * dim + e] += dout[i * dim + e];
  }
}

// AdamW (Loshchilov & Hutter, as torch.optim.AdamW): decay p by lr * wd, then the Adam step with
// bias-corrected moments.
template <class T>
void adamw_step(T* param, const T* grad, T* m, T* v, int64_t n, T lr, T beta1, T beta2, T eps, T weight_decay,
                int64_t step) {
  const T bc1 = T(1) - std::pow(beta1, T(step));
  const T bc2 = T(1) - std::pow(beta2, T(step));
  for (int64_t i = 0; i < n; ++i) {
    m[i] = beta1 * m[i] + (T(1) - beta1) * grad[i];
    v[i] = beta2 * v[i] + (T(1) - beta2) * grad[i] * grad[i];
    const T mhat = m[i] / bc1;
    const T vhat = v[i] / bc2;
    param[i] -= lr * weight_decay * param[i];
    param[i] -= lr * mhat / (std::sqrt(vhat) + eps);
  }
}

}  // namespace pricer::ref
