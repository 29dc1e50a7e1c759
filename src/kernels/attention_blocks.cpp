#include "kernels/attention_blocks.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/threads.h"
#include "kernels/onednn.h"
#include "kernels/parallel.h"
#include "kernels/simd.h"

namespace pricer::kernels {

namespace {

constexpr int64_t kTile = kAttentionBlock;

// One query head of one sequence and the kv head it reads: row 0 is the sequence's first token;
// query and output rows are qs floats apart, key and value rows ks.
struct HeadView {
  const float *q, *k, *v;
  int64_t qs, ks, len;
  int hd;
  float scale;
};

HeadView head_view(const float* q, const float* k, const float* v, const AttentionShape& s, int64_t t0, int64_t len,
                   int h) {
  const int64_t qs = int64_t(s.heads) * s.hd, ks = int64_t(s.kv_heads) * s.hd;
  const int64_t kv_off = int64_t(h / (s.heads / s.kv_heads)) * s.hd;
  return {.q = q + t0 * qs + int64_t(h) * s.hd,
          .k = k + t0 * ks + kv_off,
          .v = v + t0 * ks + kv_off,
          .qs = qs,
          .ks = ks,
          .len = len,
          .hd = s.hd,
          .scale = 1.0f / std::sqrt(float(s.hd))};
}

// S[r][c] = (q_{i0+r} . k_{j0+c}) * scale for the bq x nb tile (rows kTile apart).
void tile_scores(const HeadView& h, int64_t i0, int64_t bq, int64_t j0, int64_t nb, float* S) {
  gemm_f32(false, true, bq, nb, h.hd, h.scale, h.q + i0 * h.qs, h.qs, h.k + j0 * h.ks, h.ks, 0.0f, S, kTile);
}

// The keys query row r of tile i0 sees in key tile j0: all nb below the diagonal, r + 1 on it
// (query tiles and key tiles start at the same rows).
int64_t visible_keys(int64_t i0, int64_t j0, int64_t r, int64_t nb) { return j0 == i0 ? r + 1 : nb; }

// Rows [i0, i0 + bq) of one head's output and log-sum-exp: online softmax over the key tiles.
void query_tile_forward(const HeadView& h, int64_t i0, float* out, float* lse, float* S) {
  const int64_t bq = std::min(kTile, h.len - i0);
  float m[kTile], l[kTile];
  std::fill(m, m + bq, -INFINITY);
  std::fill(l, l + bq, 0.0f);
  float* o = out + i0 * h.qs;
  for (int64_t j0 = 0; j0 <= i0; j0 += kTile) {
    const int64_t nb = j0 == i0 ? bq : kTile;
    tile_scores(h, i0, bq, j0, nb, S);
    for (int64_t r = 0; r < bq; ++r) {
      float* s = S + r * kTile;
      const int64_t n = visible_keys(i0, j0, r, nb);
      const float m_new = std::max(m[r], simd::max(s, n));
      if (j0 > 0) {  // rescale what the earlier key tiles summed to the new maximum
        const float corr = std::exp(m[r] - m_new);
        l[r] *= corr;
        simd::scale(corr, o + r * h.qs, h.hd);
      }
      m[r] = m_new;
      l[r] += simd::exp_shifted(s, n, m_new);
      std::fill(s + n, s + nb, 0.0f);
    }
    gemm_f32(false, false, bq, h.hd, nb, 1.0f, S, kTile, h.v + j0 * h.ks, h.ks, j0 == 0 ? 0.0f : 1.0f, o, h.qs);
  }
  for (int64_t r = 0; r < bq; ++r) {
    simd::scale(1.0f / l[r], o + r * h.qs, h.hd);
    lse[i0 + r] = m[r] + std::log(l[r]);
  }
}

// The gradients of query tile i0 against every key tile it sees: dq of its rows (written), dk
// and dv of the keys (added). P and dS are two tiles of scratch.
void query_tile_backward(const HeadView& h, int64_t i0, const float* out, const float* lse, const float* dout,
                         float* dq, float* dk, float* dv, float* P, float* dS) {
  const int64_t bq = std::min(kTile, h.len - i0);
  float D[kTile];  // dout . out per query: the softmax's backward subtracts it
  for (int64_t r = 0; r < bq; ++r) D[r] = simd::dot(dout + (i0 + r) * h.qs, out + (i0 + r) * h.qs, h.hd);
  for (int64_t j0 = 0; j0 <= i0; j0 += kTile) {
    const int64_t nb = j0 == i0 ? bq : kTile;
    tile_scores(h, i0, bq, j0, nb, P);
    for (int64_t r = 0; r < bq; ++r) {  // probabilities from the saved log-sum-exp
      const int64_t n = visible_keys(i0, j0, r, nb);
      simd::exp_shifted(P + r * kTile, n, lse[i0 + r]);
      std::fill(P + r * kTile + n, P + r * kTile + nb, 0.0f);
    }
    // dP = dout v^T, then dS = P (dP - D) scale in place
    gemm_f32(false, true, bq, nb, h.hd, 1.0f, dout + i0 * h.qs, h.qs, h.v + j0 * h.ks, h.ks, 0.0f, dS, kTile);
    for (int64_t r = 0; r < bq; ++r) {
      for (int64_t c = 0; c < nb; ++c) {
        dS[r * kTile + c] = P[r * kTile + c] * (dS[r * kTile + c] - D[r]) * h.scale;
      }
    }
    const float* kj = h.k + j0 * h.ks;
    gemm_f32(false, false, bq, h.hd, nb, 1.0f, dS, kTile, kj, h.ks, j0 == 0 ? 0.0f : 1.0f, dq + i0 * h.qs, h.qs);
    gemm_f32(true, false, nb, h.hd, bq, 1.0f, dS, kTile, h.q + i0 * h.qs, h.qs, 1.0f, dk + j0 * h.ks, h.ks);
    gemm_f32(true, false, nb, h.hd, bq, 1.0f, P, kTile, dout + i0 * h.qs, h.qs, 1.0f, dv + j0 * h.ks, h.ks);
  }
}

}  // namespace

void blocked_attention_forward(const float* q, const float* k, const float* v, float* out, float* lse,
                               const AttentionShape& shape) {
  const auto cu = shape.cu_seqlens;
  const int64_t total = cu.back(), nseq = int64_t(cu.size()) - 1;
  const int64_t qs = int64_t(shape.heads) * shape.hd;
  ParallelErrors errors;
  SerialGemms serial;
#pragma omp parallel num_threads(threads())
  {
    std::vector<float> S(static_cast<size_t>(kTile * kTile));
    // A task is one (sequence, query head): it alone writes that slice of out and lse.
#pragma omp for schedule(dynamic, 1) collapse(2)
    for (int64_t b = 0; b < nseq; ++b) {
      for (int h = 0; h < shape.heads; ++h) {
        errors.run([&] {
          const int64_t t0 = cu[b], len = cu[b + 1] - t0;
          const HeadView view = head_view(q, k, v, shape, t0, len, h);
          for (int64_t i0 = 0; i0 < len; i0 += kTile) {
            query_tile_forward(view, i0, out + t0 * qs + int64_t(h) * shape.hd, lse + int64_t(h) * total + t0,
                               S.data());
          }
        });
      }
    }
  }
  errors.rethrow();
}

void blocked_attention_backward(const float* q, const float* k, const float* v, const float* out, const float* lse,
                                const float* dout, float* dq, float* dk, float* dv, const AttentionShape& shape) {
  const auto cu = shape.cu_seqlens;
  const int64_t total = cu.back(), nseq = int64_t(cu.size()) - 1;
  const int group = shape.heads / shape.kv_heads, hd = shape.hd;
  const int64_t qs = int64_t(shape.heads) * hd, ks = int64_t(shape.kv_heads) * hd;
  ParallelErrors errors;
  SerialGemms serial;
#pragma omp parallel num_threads(threads())
  {
    std::vector<float> P(static_cast<size_t>(kTile * kTile)), dS(P.size());
    // A task is one (sequence, kv head): it alone writes that slice of dk, dv and the dq of the
    // query heads reading it, so no two threads ever add into the same element.
#pragma omp for schedule(dynamic, 1) collapse(2)
    for (int64_t b = 0; b < nseq; ++b) {
      for (int kh = 0; kh < shape.kv_heads; ++kh) {
        errors.run([&] {
          const int64_t t0 = cu[b], len = cu[b + 1] - t0;
          float* dkh = dk + t0 * ks + int64_t(kh) * hd;
          float* dvh = dv + t0 * ks + int64_t(kh) * hd;
          for (int64_t t = 0; t < len; ++t) {
            std::fill(dkh + t * ks, dkh + t * ks + hd, 0.0f);
            std::fill(dvh + t * ks, dvh + t * ks + hd, 0.0f);
          }
          for (int h = kh * group; h < (kh + 1) * group; ++h) {
            const HeadView view = head_view(q, k, v, shape, t0, len, h);
            const int64_t off = t0 * qs + int64_t(h) * hd;
            for (int64_t i0 = 0; i0 < len; i0 += kTile) {
              query_tile_backward(view, i0, out + off, lse + int64_t(h) * total + t0, dout + off, dq + off, dkh, dvh,
                                  P.data(), dS.data());
            }
          }
        });
      }
    }
  }
  errors.rethrow();
}

}  // namespace pricer::kernels
