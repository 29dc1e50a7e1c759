// The fast CPU backend: oneDNN for GEMMs (f32, or bf16 operands with f32 accumulation for the
// frozen base), AVX2/FMA loops spread over OpenMP threads for the rest. Every op writes each
// output element from exactly one thread in a fixed order, so results are bitwise reproducible
// for a given thread count (no atomics, no racing reductions).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "kernels/attention_blocks.h"
#include "kernels/backend.h"
#include "kernels/bf16.h"
#include "kernels/checks.h"
#include "kernels/gemv.h"
#include "kernels/onednn.h"
#include "kernels/parallel.h"
#include "kernels/q8_dot.h"
#include "kernels/q8_gemm.h"
#include "kernels/simd.h"
#include "quant/nf4_panels.h"

namespace pricer {

namespace {

using simd::tail_mask;

// Rows of a quantized weight dequantized per GEMM: about 1 MiB of f32, 64..256 rows, so the tile
// stays cache-resident while the GEMM streams over it.
int64_t band_rows(int64_t cols) {
  const int64_t rows = (int64_t(1) << 18) / std::max<int64_t>(cols, 1);
  return std::clamp<int64_t>(rows / 16 * 16, 64, 256);
}

// linear_backward_input's bands are its GEMMs' inner dimension: at 64 rows (a down projection's
// 8,192-wide rows) oneDNN's bf16 matmul runs at half the rate it reaches from 512, so bands hold
// at least 512 rows, as long as every thread still gets one.
int64_t backward_band_rows(int64_t rows, int64_t cols, int nt) {
  const int64_t per_thread = ((rows + nt - 1) / nt + 15) / 16 * 16;
  return std::max<int64_t>(band_rows(cols), std::min<int64_t>(512, per_thread));
}

// Element-wise ops smaller than this run on one thread: waking the team costs more than the
// work (e.g. one token's RMSNorm during generation).
constexpr int64_t kMinParallelWork = int64_t(1) << 15;

int team(int64_t work) { return work >= kMinParallelWork ? threads() : 1; }

// The per-thread blocks that linear_forward's bands land in hold at most this many floats each.
constexpr int64_t kBandOutputBudget = int64_t(1) << 22;

// Per-thread partial sums of linear_backward_input hold at most this many floats in all (the
// tokens are processed in chunks that fit).
constexpr int64_t kPartialBudget = int64_t(1) << 22;

// Scales y[0, n) by beta where a GEMM with an empty inner dimension would leave it.
void scale_or_zero(float* y, int64_t n, float beta) {
  if (beta == 0.0f) {
    std::fill(y, y + n, 0.0f);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] *= beta;
  }
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(DType compute) : compute_(compute) { kernels::check_compute(compute); }
  const char* name() const override { return "cpu"; }

  void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, const float* B, float beta,
            float* C) override {
    if (M == 0 || N == 0) return;
    if (K == 0) {
      scale_or_zero(C, M * N, beta);
      return;
    }
    kernels::gemm_f32(ta, tb, M, N, K, alpha, A, ta ? M : K, B, tb ? K : N, beta, C, N);
  }

  DType compute() const override { return compute_; }

  void linear_forward(const Weight& W, const float* x, float* y, int64_t n, float beta) override {
    const int64_t out = W.rows(), in = W.cols();
    if (n == 0 || out == 0) return;
    if (in == 0) {
      for (int64_t i = 0; i < n; ++i) scale_or_zero(y + i * out, out, beta);
      return;
    }
    if (W.dtype() == DType::F32) {
      gemm(false, true, n, out, in, 1.0f, x, W.f32().data(), beta, y);
      return;
    }
    if (compute_ == DType::Q8_0 && kernels::takes_integer_path(W, n)) {
      if (kernels::prefers_q8_gemm(W, n)) {
        kernels::q8_gemm_forward(W, x, y, n, beta);
      } else {
        kernels::q8_linear_forward(W, x, y, n, beta);
      }
      return;
    }
    if (n == 1 && !bf16_compute(W)) {
      kernels::fused_gemv(W, x, y, beta);
      return;
    }
    if (takes_bf16_rows(W, n)) {  // e.g. a QLoRA model's head at the loss rows
      to_bf16_parallel(x, n * in, xb_);
      kernels::bf16_gemv_rows(W, xb_.data(), n, y, beta);
      return;
    }
    if (bf16_compute(W)) {
      to_bf16_parallel(x, n * in, xb_);
      const Weight* w = &W;
      bf16_bands_forward({&w, 1}, n, {&y, 1}, beta);
      return;
    }
    // Bands of output features spread over the threads; each writes its own columns of y, so the
    // bands are handed out as threads come free (a thread slowed by the machine takes fewer) and
    // the result is the same whichever thread multiplies a band.
    const int nt = threads();
    const int64_t band = band_rows(in), nbands = (out + band - 1) / band;
    reserve_tiles(nt, band * in, W, false);
    kernels::ParallelErrors errors;
    kernels::SerialGemms serial;
#pragma omp parallel num_threads(nt)
    {
      float* tile = tiles_.data() + omp_get_thread_num() * band * in;
#pragma omp for schedule(dynamic, 1)
      for (int64_t bi = 0; bi < nbands; ++bi) {
        errors.run([&] {
          const int64_t r0 = bi * band, nb = std::min(band, out - r0);
          W.dequantize_rows(r0, nb, tile);  // y[:, r0:r0+nb] = x tile^T (+ beta y)
          kernels::gemm_f32(false, true, n, nb, in, 1.0f, x, in, tile, in, beta, y + r0, out);
        });
      }
    }
    errors.rethrow();
  }

  // Under compute q8_0, decoding's matrices of one input take the row kernels in one pass (x
  // rounded once, no barrier between them) where they share a format and width.
  void linears_forward_impl(std::span<const Weight* const> Ws, const float* x, std::span<float* const> ys,
                            int64_t n) override {
    const auto one_pass = [&](const Weight* W) {
      return W->dtype() == Ws[0]->dtype() && kernels::takes_integer_path(*W, n) && !kernels::prefers_q8_gemm(*W, n);
    };
    if (compute_ == DType::Q8_0 && n > 0 && !Ws.empty() && std::all_of(Ws.begin(), Ws.end(), one_pass)) {
      kernels::q8_linears_forward(Ws, x, ys, n);
      return;
    }
    // Under compute bf16, the matrices of one input (q, k, v; gate, up) take the bf16 bands in one
    // pass: x rounded once, and one barrier for all of them.
    const auto bf16_bands = [&](const Weight* W) {
      return W->cols() == Ws[0]->cols() && W->rows() > 0 && bf16_compute(*W) && !takes_bf16_rows(*W, n);
    };
    if (compute_ == DType::BF16 && n > 0 && !Ws.empty() && Ws[0]->cols() > 0 &&
        std::all_of(Ws.begin(), Ws.end(), bf16_bands)) {
      to_bf16_parallel(x, n * Ws[0]->cols(), xb_);
      bf16_bands_forward(Ws, n, ys, 0.0f);
      return;
    }
    Backend::linears_forward_impl(Ws, x, ys, n);
  }

  void linear_backward_input(const Weight& W, const float* dy, float* dx, int64_t n) override {
    const int64_t out = W.rows(), in = W.cols();
    if (n == 0 || out == 0 || in == 0) return;
    if (W.dtype() == DType::F32) {
      gemm(false, false, n, in, out, 1.0f, dy, W.f32().data(), 1.0f, dx);
      return;
    }
    const bool bf16 = bf16_compute(W);
    if (bf16) to_bf16_parallel(dy, n * out, xb_);
    if (takes_bf16_rows(W, n)) {
      kernels::bf16_gemv_rows_backward(W, xb_.data(), n, dx);
      return;
    }
    // Every band adds into all of dx: each thread sums its (statically assigned) bands into its
    // own partial, then the partials are added to dx in thread order, so the result is
    // reproducible for a given thread count.
    const int nt = threads();
    const int64_t band = backward_band_rows(out, in, nt), nbands = (out + band - 1) / band;
    const int64_t chunk = std::clamp<int64_t>(kPartialBudget / (int64_t(nt) * in), 1, n);
    const bool staged = reserve_tiles(nt, band * in, W, bf16);
    partials_.resize(static_cast<size_t>(nt * chunk * in));
    kernels::ParallelErrors errors;
    kernels::SerialGemms serial;
    for (int64_t c0 = 0; c0 < n; c0 += chunk) {
      const int64_t m = std::min(chunk, n - c0);
#pragma omp parallel num_threads(nt)
      {
        const int tid = omp_get_thread_num(), team = omp_get_num_threads();
        float* tile = staged ? tiles_.data() + tid * band * in : nullptr;
        uint16_t* tile16 = bf16 ? tiles16_.data() + tid * band * in : nullptr;
        float* part = partials_.data() + tid * chunk * in;
        // A thread's first band writes its partial (beta 0: no pass zeroing it first), the rest
        // add to it; a thread without a band zeroes its own.
        bool first = true;
#pragma omp for schedule(static) nowait
        for (int64_t bi = 0; bi < nbands; ++bi) {
          errors.run([&] {
            const int64_t r0 = bi * band, nb = std::min(band, out - r0);
            const float beta = first ? 0.0f : 1.0f;
            // part (+)= dy[c0:c0+m, r0:r0+nb] tile
            if (bf16) {
              dequantize_bf16(W, r0, nb, tile, tile16);
              kernels::gemm_bf16(false, m, in, nb, xb_.data() + c0 * out + r0, out, tile16, in, beta, part, in);
            } else {
              W.dequantize_rows(r0, nb, tile);
              kernels::gemm_f32(false, false, m, in, nb, 1.0f, dy + c0 * out + r0, out, tile, in, beta, part, in);
            }
          });
          first = false;
        }
        if (first) std::fill(part, part + m * in, 0.0f);
#pragma omp barrier
        float* dxc = dx + c0 * in;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < m * in; ++i) {
          float acc = partials_[size_t(i)];
          for (int t = 1; t < team; ++t) acc += partials_[size_t(t * chunk * in + i)];
          dxc[i] += acc;
        }
      }
    }
    errors.rethrow();
  }

  void rmsnorm_forward(const float* x, const float* w, float* y, float* rstd, int64_t n, int64_t dim,
                       float eps) override {
#pragma omp parallel for num_threads(team(n* dim)) schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      const float rs = 1.0f / std::sqrt(simd::dot(xr, xr, dim) / float(dim) + eps);
      rstd[r] = rs;
      const __m256 vrs = _mm256_set1_ps(rs);
      int64_t i = 0;
      for (; i + 8 <= dim; i += 8) {
        _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), vrs), _mm256_loadu_ps(w + i)));
      }
      for (; i < dim; ++i) yr[i] = xr[i] * rs * w[i];
    }
  }

  void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx, float* dw,
                        int64_t n, int64_t dim) override {
    const int nt = team(n * dim);
    // dw: each thread owns a range of columns and sums the rows in order, so the result does not
    // even depend on the thread count.
    const int64_t chunk = std::max<int64_t>(8, (dim + nt - 1) / nt / 8 * 8);
#pragma omp parallel num_threads(nt)
    {
      std::vector<float> dyw(static_cast<size_t>(dim));
#pragma omp for schedule(static) nowait
      for (int64_t r = 0; r < n; ++r) {
        const float* xr = x + r * dim;
        const float* dyr = dy + r * dim;
        float* dxr = dx + r * dim;
        const float rs = rstd[r];
        for (int64_t i = 0; i < dim; ++i) dyw[i] = dyr[i] * w[i];
        const float c = simd::dot(dyw.data(), xr, dim) * rs * rs * rs / float(dim);
        const __m256 vrs = _mm256_set1_ps(rs), vc = _mm256_set1_ps(c);
        int64_t i = 0;
        for (; i + 8 <= dim; i += 8) {
          const __m256 g = _mm256_mul_ps(vrs, _mm256_loadu_ps(dyw.data() + i));
          _mm256_storeu_ps(dxr + i, _mm256_fnmadd_ps(_mm256_loadu_ps(xr + i), vc, g));
        }
        for (; i < dim; ++i) dxr[i] = rs * dyw[i] - xr[i] * c;
      }
      if (dw) {
#pragma omp for schedule(static)
        for (int64_t c0 = 0; c0 < dim; c0 += chunk) {
          const int64_t c1 = std::min(dim, c0 + chunk);
          for (int64_t r = 0; r < n; ++r) {
            const float rs = rstd[r];
            const float* xr = x + r * dim;
            const float* dyr = dy + r * dim;
            for (int64_t i = c0; i < c1; ++i) dw[i] += dyr[i] * xr[i] * rs;
          }
        }
      }
    }
  }

  void rope_impl(float* x, const int32_t* pos, int64_t n, int heads, int head_dim, const float* inv_freq,
                 bool inverse) override {
    const int half = head_dim / 2;
#pragma omp parallel num_threads(team(n* heads* head_dim))
    {
      std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
#pragma omp for schedule(static)
      for (int64_t t = 0; t < n; ++t) {
        // One cos/sin per frequency, shared by all heads of the token.
        for (int j = 0; j < half; ++j) {
          const float angle = float(pos[t]) * inv_freq[j];
          cs[j] = std::cos(angle);
          sn[j] = inverse ? -std::sin(angle) : std::sin(angle);
        }
        for (int h = 0; h < heads; ++h) {
          float* a = x + (t * heads + h) * head_dim;
          float* b = a + half;
          int j = 0;
          for (; j + 8 <= half; j += 8) {
            const __m256 va = _mm256_loadu_ps(a + j), vb = _mm256_loadu_ps(b + j);
            const __m256 c = _mm256_loadu_ps(cs.data() + j), s = _mm256_loadu_ps(sn.data() + j);
            _mm256_storeu_ps(a + j, _mm256_fmsub_ps(va, c, _mm256_mul_ps(vb, s)));
            _mm256_storeu_ps(b + j, _mm256_fmadd_ps(vb, c, _mm256_mul_ps(va, s)));
          }
          for (; j < half; ++j) {
            const float va = a[j], vb = b[j];
            a[j] = va * cs[j] - vb * sn[j];
            b[j] = vb * cs[j] + va * sn[j];
          }
        }
      }
    }
  }

  void attention_forward_impl(const float* q, const float* k, const float* v, float* out, float* lse,
                              std::span<const int32_t> cu_seqlens, int heads, int kv_heads, int hd) override {
    kernels::blocked_attention_forward(q, k, v, out, lse, {cu_seqlens, heads, kv_heads, hd});
  }

  // kv heads spread over the threads; each takes its query heads' scores over the whole cache at
  // once (one row of n per query head), then their weighted sums of the values.
  void attention_decode_impl(const float* q, const float* k, const float* v, int64_t stride, int64_t n, float* out,
                             int heads, int kv_heads, int hd) override {
    const int group = heads / kv_heads;
    const float scale = 1.0f / std::sqrt(float(hd));
#pragma omp parallel for num_threads(team(int64_t(heads) * n * hd)) schedule(static)
    for (int g = 0; g < kv_heads; ++g) {
      thread_local std::vector<float> scores;
      scores.resize(static_cast<size_t>(n));
      float* p = scores.data();
      const float* K = k + g * stride;
      const float* V = v + g * stride;
      for (int h = g * group; h < (g + 1) * group; ++h) {
        const float* qh = q + int64_t(h) * hd;
        float* oh = out + int64_t(h) * hd;
        float mx = -INFINITY;
        for (int64_t j = 0; j < n; ++j) mx = std::max(mx, p[j] = simd::dot(qh, K + j * hd, hd) * scale);
        const float inv = 1.0f / simd::exp_shifted(p, n, mx);
        std::fill(oh, oh + hd, 0.0f);
        for (int64_t j = 0; j < n; ++j) simd::axpy(p[j] * inv, V + j * hd, oh, hd);
      }
    }
  }

  void attention_backward_impl(const float* q, const float* k, const float* v, const float* out, const float* lse,
                               const float* dout, float* dq, float* dk, float* dv, std::span<const int32_t> cu_seqlens,
                               int heads, int kv_heads, int hd) override {
    kernels::blocked_attention_backward(q, k, v, out, lse, dout, dq, dk, dv, {cu_seqlens, heads, kv_heads, hd});
  }

  void swiglu_forward(const float* g, const float* u, float* h, int64_t n) override {
    const __m256 one = _mm256_set1_ps(1.0f);
    parallel_chunks(n, [&](int64_t i, simd::Lanes lanes) {
      const __m256 vg = lanes.load(g + i), vu = lanes.load(u + i);
      const __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, simd::exp(_mm256_sub_ps(_mm256_setzero_ps(), vg))));
      lanes.store(h + i, _mm256_mul_ps(_mm256_mul_ps(vg, sig), vu));
    });
  }

  void swiglu_backward(const float* g, const float* u, const float* dh, float* dg, float* du, int64_t n) override {
    const __m256 one = _mm256_set1_ps(1.0f);
    parallel_chunks(n, [&](int64_t i, simd::Lanes lanes) {
      const __m256 vg = lanes.load(g + i), vu = lanes.load(u + i);
      const __m256 vdh = lanes.load(dh + i);
      const __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, simd::exp(_mm256_sub_ps(_mm256_setzero_ps(), vg))));
      lanes.store(du + i, _mm256_mul_ps(vdh, _mm256_mul_ps(vg, sig)));
      // d silu / dg = sig (1 + g (1 - sig))
      const __m256 dsilu = _mm256_mul_ps(sig, _mm256_fmadd_ps(vg, _mm256_sub_ps(one, sig), one));
      lanes.store(dg + i, _mm256_mul_ps(_mm256_mul_ps(vdh, vu), dsilu));
    });
  }

  void cross_entropy_impl(float* logits, const int32_t* targets, float* losses, int64_t n, int64_t vocab,
                          float grad_scale) override {
#pragma omp parallel for num_threads(team(n* vocab)) schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      float* x = logits + r * vocab;
      if (targets[r] < 0) {
        losses[r] = 0.0f;
        std::fill(x, x + vocab, 0.0f);
        continue;
      }
      const float mx = simd::max(x, vocab);
      const float l = mx + std::log(sum_exp(x, vocab, mx));
      losses[r] = l - x[targets[r]];
      // x = exp(x - lse) * grad_scale
      const __m256 vl = _mm256_set1_ps(l), vs = _mm256_set1_ps(grad_scale);
      int64_t i = 0;
      for (; i + 8 <= vocab; i += 8) {
        _mm256_storeu_ps(x + i, _mm256_mul_ps(simd::exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vl)), vs));
      }
      if (i < vocab) {
        const __m256i m = tail_mask(vocab - i);
        _mm256_maskstore_ps(x + i, m, _mm256_mul_ps(simd::exp(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vl)), vs));
      }
      x[targets[r]] -= grad_scale;
    }
  }

  void embedding_forward_impl(const Weight& table, const int32_t* ids, float* out, int64_t n) override {
    const int64_t dim = table.cols();
    const bool f32 = table.dtype() == DType::F32;
    kernels::ParallelErrors errors;
#pragma omp parallel for num_threads(team(n* dim)) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      if (f32) {
        std::memcpy(out + i * dim, table.f32().data() + int64_t(ids[i]) * dim, sizeof(float) * size_t(dim));
      } else {
        errors.run([&] { table.dequantize_rows(ids[i], 1, out + i * dim); });
      }
    }
    errors.rethrow();
  }

  void embedding_backward(const int32_t* ids, const float* dout, float* dtable, int64_t n, int64_t dim) override {
    // Repeated ids add into the same row: each thread owns a range of columns instead of rows,
    // and adds the tokens in order.
    const int nt = team(n * dim);
    const int64_t chunk = std::max<int64_t>(8, (dim + nt - 1) / nt / 8 * 8);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t c0 = 0; c0 < dim; c0 += chunk) {
      const int64_t c1 = std::min(dim, c0 + chunk);
      for (int64_t i = 0; i < n; ++i) {
        float* row = dtable + int64_t(ids[i]) * dim;
        const float* g = dout + i * dim;
        for (int64_t c = c0; c < c1; ++c) row[c] += g[c];
      }
    }
  }

  void adamw_step_impl(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
                       float beta2, float eps, float weight_decay, int64_t step) override {
    const float bc1 = 1.0f - std::pow(beta1, float(step));
    const float bc2 = 1.0f - std::pow(beta2, float(step));
    const __m256 b1 = _mm256_set1_ps(beta1), b2 = _mm256_set1_ps(beta2);
    const __m256 omb1 = _mm256_set1_ps(1.0f - beta1), omb2 = _mm256_set1_ps(1.0f - beta2);
    const __m256 vbc1 = _mm256_set1_ps(bc1), vbc2 = _mm256_set1_ps(bc2);
    const __m256 decay = _mm256_set1_ps(lr * weight_decay), vlr = _mm256_set1_ps(lr);
    const __m256 veps = _mm256_set1_ps(eps);
    parallel_chunks(n, [&](int64_t i, simd::Lanes lanes) {
      const __m256 g = lanes.load(grad + i);
      const __m256 mi = _mm256_add_ps(_mm256_mul_ps(b1, lanes.load(m + i)), _mm256_mul_ps(omb1, g));
      const __m256 vi = _mm256_add_ps(_mm256_mul_ps(b2, lanes.load(v + i)), _mm256_mul_ps(_mm256_mul_ps(omb2, g), g));
      lanes.store(m + i, mi);
      lanes.store(v + i, vi);
      const __m256 mhat = _mm256_div_ps(mi, vbc1), vhat = _mm256_div_ps(vi, vbc2);
      __m256 p = lanes.load(param + i);
      p = _mm256_sub_ps(p, _mm256_mul_ps(decay, p));
      const __m256 upd = _mm256_div_ps(mhat, _mm256_add_ps(_mm256_sqrt_ps(vhat), veps));
      lanes.store(param + i, _mm256_sub_ps(p, _mm256_mul_ps(vlr, upd)));
    });
  }

 private:
  // Runs f(i, lanes) for every 8-lane group of [0, n) (the last one partial), in parallel.
  template <class F>
  static void parallel_chunks(int64_t n, const F& f) {
    const int64_t groups = (n + 7) / 8;
#pragma omp parallel for num_threads(team(n)) schedule(static)
    for (int64_t gi = 0; gi < groups; ++gi) {
      const int64_t i = gi * 8;
      f(i, simd::Lanes{std::min<int64_t>(8, n - i)});
    }
  }

  // sum_i exp(x[i] - mx) with four independent accumulators (the row can be 128k wide).
  static float sum_exp(const float* x, int64_t n, float mx) {
    const __m256 vm = _mm256_set1_ps(mx);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
      a0 = _mm256_add_ps(a0, simd::exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
      a1 = _mm256_add_ps(a1, simd::exp(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm)));
      a2 = _mm256_add_ps(a2, simd::exp(_mm256_sub_ps(_mm256_loadu_ps(x + i + 16), vm)));
      a3 = _mm256_add_ps(a3, simd::exp(_mm256_sub_ps(_mm256_loadu_ps(x + i + 24), vm)));
    }
    for (; i < n; i += 8) {
      const __m256i m = tail_mask(std::min<int64_t>(8, n - i));
      a0 = _mm256_add_ps(
          a0, _mm256_and_ps(simd::exp(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vm)), _mm256_castsi256_ps(m)));
    }
    return simd::hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  }

  // y_i = xb_ W_i^T (+ beta y_i) for weights of one input width, xb_ holding x in bf16 ([n, in]):
  // the bands of every weight in one parallel loop, handed out as threads come free (each band
  // writes its own columns of its y: the same result whichever thread takes it). oneDNN's bf16
  // matmul runs 7-24% faster into a dense [n, band] block than into y's strided columns, so each
  // band lands in a per-thread block first (where that fits a bound).
  void bf16_bands_forward(std::span<const Weight* const> Ws, int64_t n, std::span<float* const> ys, float beta) {
    const int64_t in = Ws[0]->cols(), band = band_rows(in);
    const int nt = threads();
    std::vector<int64_t> first_band(Ws.size() + 1, 0);  // where each weight's bands start
    bool staged = false;
    for (size_t i = 0; i < Ws.size(); ++i) {
      first_band[i + 1] = first_band[i] + (Ws[i]->rows() + band - 1) / band;
      staged = reserve_tiles(nt, band * in, *Ws[i], true) || staged;
    }
    const bool dense = n * band <= kBandOutputBudget;
    if (dense) band_out_.resize(static_cast<size_t>(nt * n * band));
    kernels::ParallelErrors errors;
    kernels::SerialGemms serial;
#pragma omp parallel num_threads(nt)
    {
      const int tid = omp_get_thread_num();
      float* tile = staged ? tiles_.data() + tid * band * in : nullptr;
      uint16_t* tile16 = tiles16_.data() + tid * band * in;
      float* block = dense ? band_out_.data() + tid * n * band : nullptr;
#pragma omp for schedule(dynamic, 1)
      for (int64_t bi = 0; bi < first_band.back(); ++bi) {
        errors.run([&] {
          const size_t i = size_t(std::upper_bound(first_band.begin(), first_band.end(), bi) - first_band.begin()) - 1;
          const Weight& W = *Ws[i];
          const int64_t out = W.rows(), r0 = (bi - first_band[i]) * band, nb = std::min(band, out - r0);
          dequantize_bf16(W, r0, nb, tile, tile16);
          if (dense) {
            kernels::gemm_bf16(true, n, nb, in, xb_.data(), in, tile16, in, 0.0f, block, nb);
            put_columns(block, n, nb, beta, ys[i] + r0, out);
          } else {
            kernels::gemm_bf16(true, n, nb, in, xb_.data(), in, tile16, in, beta, ys[i] + r0, out);
          }
        });
      }
    }
    errors.rethrow();
  }

  // bf16 compute applies to weights stored in a reduced format; f32 weights stay exact.
  bool bf16_compute(const Weight& W) const { return compute_ != DType::F32 && W.dtype() != DType::F32; }

  // bf16 weights at a few rows skip oneDNN: each weight row read once for all of them.
  bool takes_bf16_rows(const Weight& W, int64_t n) const {
    return bf16_compute(W) && W.dtype() == DType::BF16 && n <= kernels::kGemvRows;
  }

  // One band per thread: in bf16 for the bf16 path, in f32 wherever the weight is dequantized
  // through f32. Returns whether the f32 tiles are in use.
  bool reserve_tiles(int nt, int64_t tile_elems, const Weight& W, bool bf16) {
    if (bf16) tiles16_.resize(static_cast<size_t>(nt * tile_elems));
    if (bf16 && converts_straight_to_bf16(W)) return false;
    tiles_.resize(static_cast<size_t>(nt * tile_elems));
    return true;
  }

  // bf16 weights are copied as stored and NF4 panels rounded straight to bf16; the other formats
  // go through an f32 tile.
  static bool converts_straight_to_bf16(const Weight& W) {
    return W.dtype() == DType::BF16 || (W.dtype() == DType::NF4 && !W.raw().empty());
  }

  // Rows [r0, r0 + nb) of W in bf16 (through `staging` unless converts_straight_to_bf16).
  static void dequantize_bf16(const Weight& W, int64_t r0, int64_t nb, float* staging, uint16_t* out) {
    const int64_t in = W.cols();
    if (W.dtype() == DType::BF16) {
      std::memcpy(out, W.raw().data() + r0 * in * 2, static_cast<size_t>(nb * in) * 2);
      return;
    }
    if (W.dtype() == DType::NF4 && !W.raw().empty()) {
      nf4_panels_dequantize_bf16(W.raw().data(), W.nf4(), in, r0, nb, out);
      return;
    }
    W.dequantize_rows(r0, nb, staging);
    kernels::to_bf16(staging, out, nb * in);
  }

  void to_bf16_parallel(const float* x, int64_t n, std::vector<uint16_t>& out) {
    out.resize(static_cast<size_t>(n));
    const int nt = team(n);
    const int64_t per = (n + nt - 1) / nt;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; ++t) {
      const int64_t lo = std::min(n, t * per), hi = std::min(n, lo + per);
      kernels::to_bf16(x + lo, out.data() + lo, hi - lo);
    }
  }

  // y[t, 0:nb] = block[t, :] (+ beta y) for n rows of y `ld` apart.
  static void put_columns(const float* block, int64_t n, int64_t nb, float beta, float* y, int64_t ld) {
    for (int64_t t = 0; t < n; ++t) {
      const float* src = block + t * nb;
      float* dst = y + t * ld;
      if (beta == 0.0f) {
        std::copy(src, src + nb, dst);
      } else {
        for (int64_t c = 0; c < nb; ++c) dst[c] = src[c] + beta * dst[c];
      }
    }
  }

  DType compute_;
  // Scratch reused across calls (a backend instance serves one caller at a time): one band of a
  // dequantized weight per thread (f32, and bf16 for the bf16 path), the bf16 copy of a linear's
  // input, per-thread partial sums of linear_backward_input, and linear_forward's per-thread
  // output blocks.
  std::vector<float> tiles_, partials_, band_out_;
  std::vector<uint16_t> tiles16_, xb_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(DType compute) { return std::make_unique<CpuBackend>(compute); }

}  // namespace pricer
