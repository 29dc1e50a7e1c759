#include "quant/ggml_blocks.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "core/error.h"
#include "quant/half.h"

namespace pricer {

namespace {

constexpr int64_t kQ8_0Bytes = 34, kQ4_0Bytes = 18, kQ4_KBytes = 144, kQ5_KBytes = 176, kQ6_KBytes = 210;

inline float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

inline void store_f16(uint8_t* p, float f) {
  const uint16_t h = f32_to_f16(f);
  std::memcpy(p, &h, 2);
}

// ggml's nearest_int: round half to even through the float significand (|x| < 2^22).
inline int nearest_int(float f) {
  const float v = f + 12582912.0f;
  int32_t i;
  std::memcpy(&i, &v, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K block.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t& d, uint8_t& m) {
  if (j < 4) {
    d = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// ---------------------------------------------------------------- quantization (ggml reference)

void quantize_q8_0(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK8_0, y += kQ8_0Bytes) {
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y, d);
    for (int j = 0; j < kQK8_0; ++j) y[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(x[j] * id)));
  }
}

void quantize_q4_0(const float* x, uint8_t* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK4_0, y += kQ4_0Bytes) {
    // The signed value of largest magnitude maps to -8, so the full range [-8, 7] is used.
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK4_0; ++j)
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(y, d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      // Truncation of x + 8.5 is ggml's rounding here; the result lies in [0, 16].
      const int q0 = std::min(15, static_cast<int>(x[j] * id + 8.5f));
      const int q1 = std::min(15, static_cast<int>(x[j + kQK4_0 / 2] * id + 8.5f));
      y[2 + j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

// ggml's make_qkx2_quants: scale and min of a sub-block of n values with levels 0..nmax, found by
// trying nstep + 1 candidate scales and solving weighted least squares for each.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, uint8_t* Laux,
                       float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0];
  float sum_w = weights[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
    sum_w += weights[i];
    sum_x += weights[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(L, L + n, 0);
    *the_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax));
    const float diff = scale * L[i] + min - x[i];
    best_error += weights[i] * (diff * diff);
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        const float diff = this_scale * Laux[i] + this_min - x[i];
        cur_error += weights[i] * (diff * diff);
      }
      if (cur_error < best_error) {
        std::copy(Laux, Laux + n, L);
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// The shared half of ggml's Q4_K and Q5_K quantizers: each 32-element sub-block's scale and min
// (levels 0..nmax) as 6-bit codes under the f16 super-scales d and dmin (y[0..16)), and the levels
// L of the 256 elements requantized against the scales as stored, which is what dequantization sees.
void k_scales_and_levels(const float* x, uint8_t* y, int nmax, float rmin, int nstep, uint8_t* L) {
  uint8_t Laux[32];
  float weights[32], mins[kQK_K / 32], scales[kQK_K / 32];
  float max_scale = 0, max_min = 0;
  for (int64_t j = 0; j < kQK_K / 32; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep);
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  uint8_t* sc = y + 4;
  std::memset(sc, 0, 12);
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  for (int j = 0; j < kQK_K / 32; ++j) {
    const uint8_t ls = static_cast<uint8_t>(std::min(63, nearest_int(inv_scale * scales[j])));
    const uint8_t lm = static_cast<uint8_t>(std::min(63, nearest_int(inv_min * mins[j])));
    if (j < 4) {
      sc[j] = ls;
      sc[j + 4] = lm;
    } else {
      sc[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      sc[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      sc[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  store_f16(y, max_scale / 63.0f);
  store_f16(y + 2, max_min / 63.0f);
  for (int j = 0; j < kQK_K / 32; ++j) {
    uint8_t s, m;
    scale_min_k4(j, sc, s, m);
    const float d = load_f16(y) * s;
    if (d == 0.0f) continue;
    const float dm = load_f16(y + 2) * m;
    for (int ii = 0; ii < 32; ++ii)
      L[32 * j + ii] = static_cast<uint8_t>(std::clamp(nearest_int((x[32 * j + ii] + dm) / d), 0, nmax));
  }
}

void quantize_q4_k(const float* x, uint8_t* y, int64_t nb) {
  uint8_t L[kQK_K];
  for (int64_t i = 0; i < nb; ++i, x += kQK_K, y += kQ4_KBytes) {
    k_scales_and_levels(x, y, 15, -1.0f, 20, L);
    uint8_t* q = y + 16;
    for (int j = 0; j < kQK_K; j += 64, q += 32)
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
  }
}

// Q5_K: as Q4_K with levels 0..31, the fifth bit of element 64*k + l (and 64*k + 32 + l) in bit
// 2k (2k + 1) of qh[l].
void quantize_q5_k(const float* x, uint8_t* y, int64_t nb) {
  uint8_t L[kQK_K];
  for (int64_t i = 0; i < nb; ++i, x += kQK_K, y += kQ5_KBytes) {
    k_scales_and_levels(x, y, 31, -0.5f, 15, L);
    uint8_t* qh = y + 16;
    uint8_t* ql = y + 48;
    std::memset(qh, 0, 32);
    for (int n = 0, bit = 0; n < kQK_K; n += 64, bit += 2, ql += 32)
      for (int j = 0; j < 32; ++j) {
        const int l1 = L[n + j], l2 = L[n + j + 32];
        qh[j] |= static_cast<uint8_t>(((l1 >> 4) << bit) | ((l2 >> 4) << (bit + 1)));
        ql[j] = static_cast<uint8_t>((l1 & 0xF) | ((l2 & 0xF) << 4));
      }
  }
}

// ggml's make_qx_quants with rmse_type 1 and no importance weights: a symmetric scale for n values
// with levels -nmax..nmax-1, refined over 18 candidate scales by weighted (x^2) least squares.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  if (amax < 1e-15f) {
    std::fill(L, L + n, 0);
    return 0.0f;
  }
  float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i)
        L[i] = static_cast<int8_t>(nmax + std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

void quantize_q6_k(const float* x, uint8_t* y, int64_t nb) {
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  for (int64_t i = 0; i < nb; ++i, x += kQK_K, y += kQ6_KBytes) {
    float max_scale = 0, max_abs_scale = 0;
    for (int64_t ib = 0; ib < kQK_K / 16; ++ib) {
      scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
      if (std::fabs(scales[ib]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[ib]);
        max_scale = scales[ib];
      }
    }
    std::memset(y, 0, kQ6_KBytes);
    if (max_abs_scale < 1e-15f) continue;  // all zero: d = 0 and zero scales
    uint8_t* ql = y;
    uint8_t* qh = y + 128;
    int8_t* sc = reinterpret_cast<int8_t*>(y + 192);
    const float iscale = -128.0f / max_scale;
    store_f16(y + 208, 1 / iscale);
    for (int ib = 0; ib < kQK_K / 16; ++ib)
      sc[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
    for (int j = 0; j < kQK_K / 16; ++j) {
      const float d = load_f16(y + 208) * sc[j];
      if (d == 0.0f) continue;
      for (int ii = 0; ii < 16; ++ii)
        L[16 * j + ii] = static_cast<int8_t>(std::clamp(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
    }
    for (int j = 0; j < kQK_K; j += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; ++l) {
        const int q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF;
        const int q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
        ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
        ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
        qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                     ((L[j + l + 96] >> 4) << 6));
      }
    }
  }
}

// ---------------------------------------------------------------- scalar dequantization

void deq_q8_0_ref(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQ8_0Bytes, y += kQK8_0) {
    const float d = load_f16(x);
    for (int j = 0; j < kQK8_0; ++j) y[j] = static_cast<float>(static_cast<int8_t>(x[2 + j])) * d;
  }
}

void deq_q4_0_ref(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQ4_0Bytes, y += kQK4_0) {
    const float d = load_f16(x);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      y[j] = static_cast<float>((x[2 + j] & 0x0F) - 8) * d;
      y[j + kQK4_0 / 2] = static_cast<float>((x[2 + j] >> 4) - 8) * d;
    }
  }
}

// d*sc * q - dmin*m with one rounding (fused), in both versions: ggml leaves fusing to the
// compiler, so a fixed choice is what makes the two bit-identical.
void deq_q4_k_ref(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQ4_KBytes) {
    const float d = load_f16(x), dmin = load_f16(x + 2);
    const uint8_t* sc = x + 4;
    const uint8_t* q = x + 16;
    for (int j = 0; j < 4; ++j, q += 32) {
      uint8_t s, m;
      scale_min_k4(2 * j, sc, s, m);
      const float d1 = d * s, m1 = dmin * m;
      scale_min_k4(2 * j + 1, sc, s, m);
      const float d2 = d * s, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = std::fma(d1, static_cast<float>(q[l] & 0xF), -m1);
      for (int l = 0; l < 32; ++l) *y++ = std::fma(d2, static_cast<float>(q[l] >> 4), -m2);
    }
  }
}

void deq_q5_k_ref(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQ5_KBytes) {
    const float d = load_f16(x), dmin = load_f16(x + 2);
    const uint8_t* sc = x + 4;
    const uint8_t* qh = x + 16;
    const uint8_t* ql = x + 48;
    for (int j = 0; j < 4; ++j, ql += 32) {
      uint8_t s, m;
      scale_min_k4(2 * j, sc, s, m);
      const float d1 = d * s, m1 = dmin * m;
      scale_min_k4(2 * j + 1, sc, s, m);
      const float d2 = d * s, m2 = dmin * m;
      for (int l = 0; l < 32; ++l)
        *y++ = std::fma(d1, static_cast<float>((ql[l] & 0xF) | (((qh[l] >> (2 * j)) & 1) << 4)), -m1);
      for (int l = 0; l < 32; ++l)
        *y++ = std::fma(d2, static_cast<float>((ql[l] >> 4) | (((qh[l] >> (2 * j + 1)) & 1) << 4)), -m2);
    }
  }
}

void deq_q6_k_ref(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQ6_KBytes) {
    const float d = load_f16(x + 208);
    const uint8_t* ql = x;
    const uint8_t* qh = x + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(x + 192);
    for (int n = 0; n < kQK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is] * static_cast<float>(q1);
        y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
        y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
        y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
      }
    }
  }
}

// ---------------------------------------------------------------- AVX2 dequantization

void deq_q8_0_fast(const uint8_t* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQ8_0Bytes, y += kQK8_0) {
    const __m256 d = _mm256_set1_ps(load_f16(x));
    for (int j = 0; j < kQK8_0; j += 8) {
      const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + 2 + j)));
      _mm256_storeu_ps(y + j, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
    }
  }
}

void deq_q4_0_fast(const uint8_t* x, float* y, int64_t nb) {
  const __m256i mask = _mm256_set1_epi32(0x0F), eight = _mm256_set1_epi32(8);
  for (int64_t i = 0; i < nb; ++i, x += kQ4_0Bytes, y += kQK4_0) {
    const __m256 d = _mm256_set1_ps(load_f16(x));
    for (int j = 0; j < kQK4_0 / 2; j += 8) {
      const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + 2 + j)));
      const __m256i lo = _mm256_sub_epi32(_mm256_and_si256(b, mask), eight);
      const __m256i hi = _mm256_sub_epi32(_mm256_srli_epi32(b, 4), eight);
      _mm256_storeu_ps(y + j, _mm256_mul_ps(_mm256_cvtepi32_ps(lo), d));
      _mm256_storeu_ps(y + j + kQK4_0 / 2, _mm256_mul_ps(_mm256_cvtepi32_ps(hi), d));
    }
  }
}

// Q4_K, and with FifthBit Q5_K (the same block plus qh[32] before the low nibbles).
template <bool FifthBit>
void deq_q45_k_fast(const uint8_t* x, float* y, int64_t nb) {
  const __m256i mask = _mm256_set1_epi32(0x0F), one = _mm256_set1_epi32(1);
  for (int64_t i = 0; i < nb; ++i, x += FifthBit ? kQ5_KBytes : kQ4_KBytes) {
    const float d = load_f16(x), dmin = load_f16(x + 2);
    const uint8_t* sc = x + 4;
    const uint8_t* qh = x + 16;
    const uint8_t* ql = x + (FifthBit ? 48 : 16);
    for (int j = 0; j < 4; ++j, ql += 32, y += 64) {
      uint8_t s, m;
      scale_min_k4(2 * j, sc, s, m);
      const __m256 d1 = _mm256_set1_ps(d * s), m1 = _mm256_set1_ps(dmin * m);
      scale_min_k4(2 * j + 1, sc, s, m);
      const __m256 d2 = _mm256_set1_ps(d * s), m2 = _mm256_set1_ps(dmin * m);
      for (int l = 0; l < 32; l += 8) {
        const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(ql + l)));
        __m256i lo = _mm256_and_si256(b, mask), hi = _mm256_srli_epi32(b, 4);
        if constexpr (FifthBit) {
          const __m256i h = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qh + l)));
          lo = _mm256_or_si256(lo, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2 * j), one), 4));
          hi = _mm256_or_si256(hi, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2 * j + 1), one), 4));
        }
        _mm256_storeu_ps(y + l, _mm256_fmsub_ps(d1, _mm256_cvtepi32_ps(lo), m1));
        _mm256_storeu_ps(y + 32 + l, _mm256_fmsub_ps(d2, _mm256_cvtepi32_ps(hi), m2));
      }
    }
  }
}

void deq_q6_k_fast(const uint8_t* x, float* y, int64_t nb) {
  const __m256i m4 = _mm256_set1_epi32(0x0F), m2 = _mm256_set1_epi32(3), off = _mm256_set1_epi32(32);
  for (int64_t i = 0; i < nb; ++i, x += kQ6_KBytes) {
    const float d = load_f16(x + 208);
    const uint8_t* ql = x;
    const uint8_t* qh = x + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(x + 192);
    for (int n = 0; n < kQK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; l += 8) {
        const int is = l / 16;
        const __m256i a = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(ql + l)));
        const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(ql + l + 32)));
        const __m256i h = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qh + l)));
        auto six = [&](__m256i low4, int shift) {
          const __m256i hi2 = _mm256_and_si256(_mm256_srli_epi32(h, shift), m2);
          return _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_or_si256(low4, _mm256_slli_epi32(hi2, 4)), off));
        };
        const __m256 q1 = six(_mm256_and_si256(a, m4), 0);
        const __m256 q2 = six(_mm256_and_si256(b, m4), 2);
        const __m256 q3 = six(_mm256_srli_epi32(a, 4), 4);
        const __m256 q4 = six(_mm256_srli_epi32(b, 4), 6);
        // (d * sc) rounded first, then times q: the reference's left-to-right evaluation.
        _mm256_storeu_ps(y + l, _mm256_mul_ps(_mm256_set1_ps(d * sc[is]), q1));
        _mm256_storeu_ps(y + l + 32, _mm256_mul_ps(_mm256_set1_ps(d * sc[is + 2]), q2));
        _mm256_storeu_ps(y + l + 64, _mm256_mul_ps(_mm256_set1_ps(d * sc[is + 4]), q3));
        _mm256_storeu_ps(y + l + 96, _mm256_mul_ps(_mm256_set1_ps(d * sc[is + 6]), q4));
      }
    }
  }
}

void deq_f16_ref(const uint8_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = load_f16(x + 2 * i);
}

void deq_bf16_ref(const uint8_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, x + 2 * i, 2);
    y[i] = bf16_to_f32(h);
  }
}

void deq_f16_fast(const uint8_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 2 * i))));
  deq_f16_ref(x + 2 * i, y + i, n - i);
}

void deq_bf16_fast(const uint8_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 2 * i)));
    _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
  }
  deq_bf16_ref(x + 2 * i, y + i, n - i);
}

void quantize_f16(const float* x, uint8_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store_f16(y + 2 * i, x[i]);
}

void quantize_bf16(const float* x, uint8_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = f32_to_bf16(x[i]);
    std::memcpy(y + 2 * i, &h, 2);
  }
}

// Every raw format in one row: its block, where its f16 scales sit in a block (-1: none; f16 and
// bf16 values are data, not scales) and its converters, each taking a count of whole blocks (an
// f16 or bf16 block is one element).
struct RawFormat {
  DType type;
  BlockLayout layout;
  int scale_offsets[2];
  void (*quantize)(const float*, uint8_t*, int64_t);
  void (*dequantize)(const uint8_t*, float*, int64_t);
  void (*dequantize_reference)(const uint8_t*, float*, int64_t);
};

constexpr RawFormat kRawFormats[] = {
    {DType::F16, {1, 2}, {-1, -1}, quantize_f16, deq_f16_fast, deq_f16_ref},
    {DType::BF16, {1, 2}, {-1, -1}, quantize_bf16, deq_bf16_fast, deq_bf16_ref},
    {DType::Q8_0, {kQK8_0, kQ8_0Bytes}, {0, -1}, quantize_q8_0, deq_q8_0_fast, deq_q8_0_ref},
    {DType::Q4_0, {kQK4_0, kQ4_0Bytes}, {0, -1}, quantize_q4_0, deq_q4_0_fast, deq_q4_0_ref},
    {DType::Q4_K, {kQK_K, kQ4_KBytes}, {0, 2}, quantize_q4_k, deq_q45_k_fast<false>, deq_q4_k_ref},
    {DType::Q5_K, {kQK_K, kQ5_KBytes}, {0, 2}, quantize_q5_k, deq_q45_k_fast<true>, deq_q5_k_ref},
    {DType::Q6_K, {kQK_K, kQ6_KBytes}, {208, -1}, quantize_q6_k, deq_q6_k_fast, deq_q6_k_ref},
};

const RawFormat& raw_format(DType t) {
  for (const RawFormat& f : kRawFormats)
    if (f.type == t) return f;
  throw Error(std::string(dtype_name(t)) + " is not a raw block format");
}

int64_t whole_blocks(DType t, int64_t n) {
  const BlockLayout b = block_layout(t);
  require(n >= 0 && n % b.elems == 0, std::string(dtype_name(t)) + ": " + std::to_string(n) +
                                          " elements are not a whole number of " + std::to_string(b.elems) +
                                          "-element blocks");
  return n / b.elems;
}

}  // namespace

BlockLayout block_layout(DType t) { return raw_format(t).layout; }

DType fitting_block_format(DType want, int64_t cols) {
  auto fits = [&](DType t) { return t == DType::F32 || cols % block_layout(t).elems == 0; };
  if (fits(want)) return want;
  if (want == DType::Q4_K && fits(DType::Q4_0)) return DType::Q4_0;
  if ((want == DType::Q5_K || want == DType::Q6_K) && fits(DType::Q8_0)) return DType::Q8_0;
  return DType::F16;
}

size_t raw_bytes(DType t, int64_t n) { return static_cast<size_t>(whole_blocks(t, n) * block_layout(t).bytes); }

void quantize_raw(DType t, const float* x, uint8_t* dst, int64_t n) {
  raw_format(t).quantize(x, dst, whole_blocks(t, n));
}

void dequantize_raw(DType t, const uint8_t* src, float* dst, int64_t n) {
  raw_format(t).dequantize(src, dst, whole_blocks(t, n));
}

void dequantize_raw_reference(DType t, const uint8_t* src, float* dst, int64_t n) {
  raw_format(t).dequantize_reference(src, dst, whole_blocks(t, n));
}

void check_raw_scales(DType t, const uint8_t* src, int64_t n, const char* what) {
  const RawFormat& f = raw_format(t);
  if (f.scale_offsets[0] < 0) return;
  const int64_t nb = whole_blocks(t, n);
  for (int64_t i = 0; i < nb; ++i)
    for (int o : f.scale_offsets)
      if (o >= 0 && !std::isfinite(load_f16(src + i * f.layout.bytes + o)))
        throw Error(std::string(what) + ": " + std::string(dtype_name(t)) + " block " + std::to_string(i) +
                    " (byte offset " + std::to_string(i * f.layout.bytes + o) + ") has a non-finite scale");
}

}  // namespace pricer
