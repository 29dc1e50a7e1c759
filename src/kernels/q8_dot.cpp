#include "kernels/q8_dot.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "kernels/simd.h"
#include "quant/half.h"

namespace pricer::kernels {

namespace {

constexpr int64_t kBlock = 32;  // values per block, weights and activations alike
constexpr int64_t kQ8Bytes = 34;  // f16 d, int8 qs[32]
constexpr int64_t kQ4Bytes = 18;  // f16 d, u8 qs[16]: value j in the low nibble of byte j, j + 16 in the high

int64_t weight_block_bytes(DType t) { return t == DType::Q8_0 ? kQ8Bytes : kQ4Bytes; }

uint16_t load_u16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

// Activations rounded to blocks of 32 as ggml's quantize_row_q8_0 rounds them (scale = largest
// magnitude / 127, values round(x / scale)), laid out for the kernels: each row's int8 values
// contiguous, and each block's scale kept in f32 (ggml rounds it to f16) and repeated over 8 lanes
// so that a block's 8 partial sums take it in one multiply.
struct Activations {
  std::vector<int8_t> q;  // [n, in]
  std::vector<float> d;  // [n, in / 32, 8]
};

void quantize_row(const float* x, int64_t in, int8_t* q, float* d) {
  for (int64_t b = 0; b < in / kBlock; ++b, x += kBlock, q += kBlock, d += 8) {
    float amax = 0;
    for (int j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float scale = amax / 127.0f, inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    for (int j = 0; j < kBlock; ++j) q[j] = static_cast<int8_t>(std::lround(x[j] * inv));
    std::fill(d, d + 8, scale);
  }
}

void quantize_rows(const float* x, int64_t n, int64_t in, Activations& a) {
  a.q.resize(static_cast<size_t>(n * in));
  a.d.resize(static_cast<size_t>(n * in / kBlock * 8));
#pragma omp parallel for schedule(static) num_threads(n > 1 ? threads() : 1)
  for (int64_t t = 0; t < n; ++t) quantize_row(x + t * in, in, a.q.data() + t * in, a.d.data() + t * in / kBlock * 8);
}

void check_weight(const Weight& W) {
  require(takes_q8_activations(W.dtype()), "q8 linear: weights in " + std::string(dtype_name(W.dtype())) +
                                               " do not take the integer path (Q8_0 or Q4_0 only)");
}

// ---------------------------------------------------------------- scalar twin

// The signed values of one weight block.
void block_values(DType t, const uint8_t* blk, int32_t* v) {
  if (t == DType::Q8_0) {
    for (int j = 0; j < kBlock; ++j) v[j] = blk[2 + j] < 128 ? blk[2 + j] : blk[2 + j] - 256;  // the int8 byte
    return;
  }
  for (int j = 0; j < kBlock / 2; ++j) {
    v[j] = (blk[2 + j] & 0x0F) - 8;
    v[j + kBlock / 2] = (blk[2 + j] >> 4) - 8;
  }
}

float dot_reference(DType t, const uint8_t* w, const int8_t* xq, const float* xd, int64_t nb) {
  const int64_t wb = weight_block_bytes(t);
  float sum = 0;
  int32_t v[kBlock];
  for (int64_t b = 0; b < nb; ++b, w += wb, xq += kBlock, xd += 8) {
    block_values(t, w, v);
    // int32 operands: GCC 12 at -O3 turns a sum of int8 x int8 products into an
    // unsigned-by-signed dot-product instruction and gets the signs wrong.
    int32_t s = 0;
    for (int j = 0; j < kBlock; ++j) s += v[j] * int32_t{xq[j]};
    sum += static_cast<float>(s) * (f16_to_f32(load_u16(w)) * xd[0]);
  }
  return sum;
}

// ---------------------------------------------------------------- SIMD

// Per 32-bit lane, the sum of 4 products w[j] * x[j] of int8 values. The sign of w moves onto x
// so that the unsigned-by-signed multiply applies (x is never -128: it is rounded into [-127, 127]).
inline __m256i sum_products(__m256i w, __m256i x) {
  const __m256i aw = _mm256_sign_epi8(w, w), sx = _mm256_sign_epi8(x, w);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, sx);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1));
#endif
}

template <DType T>
inline __m256i block_values_simd(const uint8_t* blk) {
  if constexpr (T == DType::Q8_0) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
  } else {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m256i nib = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
    return _mm256_sub_epi8(nib, _mm256_set1_epi8(8));
  }
}

// One block: acc += its 8 partial sums times the weight scale times the activation scale.
template <DType T>
inline __m256 block_fma(const uint8_t* w, const int8_t* xq, const float* xd, __m256 acc) {
  const __m256i s = sum_products(block_values_simd<T>(w), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq)));
  const __m256 d = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(load_u16(w))), _mm256_loadu_ps(xd));
  return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc);
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
// GCC 12's own 512-bit conversion intrinsics pass an undefined vector through a full mask, which
// its -Wmaybe-uninitialized reports in the caller.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// Two blocks in one 512-bit register: their values, the first block's in the low half.
template <DType T>
inline __m512i two_blocks(const uint8_t* w) {
  constexpr int64_t wb = T == DType::Q8_0 ? kQ8Bytes : kQ4Bytes;
  if constexpr (T == DType::Q8_0) {
    return _mm512_inserti64x4(_mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2))),
                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + wb + 2)), 1);
  } else {
    // Nibbles of both blocks: low ones [lo0 | lo1], high ones [hi0 | hi1], put in value order.
    const __m256i q = _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + wb + 2)),
                                       _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2)));
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
    const __m512i both = _mm512_inserti64x4(_mm512_zextsi256_si512(lo), hi, 1);  // lo0 lo1 hi0 hi1
    const __m512i ordered = _mm512_shuffle_i64x2(both, both, _MM_SHUFFLE(3, 1, 2, 0));  // lo0 hi0 lo1 hi1
    return _mm512_sub_epi8(ordered, _mm512_set1_epi8(8));
  }
}

template <DType T>
inline __m512 two_blocks_fma(const uint8_t* w, const int8_t* xq, const float* xd, __m512 acc) {
  constexpr int64_t wb = T == DType::Q8_0 ? kQ8Bytes : kQ4Bytes;
  const __m512i v = two_blocks<T>(w), x = _mm512_loadu_si512(xq);
  const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(v),
                                        _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(v), _mm512_setzero_si512(), x));
  const __m256i dw16 = _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(load_u16(w + wb))),
                                        _mm_set1_epi16(static_cast<int16_t>(load_u16(w))));
  const __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(dw16), _mm512_loadu_ps(xd));
  return _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc);
}

template <DType T>
float dot_avx512(const uint8_t* w, const int8_t* xq, const float* xd, int64_t nb) {
  constexpr int64_t wb = T == DType::Q8_0 ? kQ8Bytes : kQ4Bytes;
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t b = 0;
  for (; b + 4 <= nb; b += 4) {
    acc0 = two_blocks_fma<T>(w + b * wb, xq + b * kBlock, xd + b * 8, acc0);
    acc1 = two_blocks_fma<T>(w + (b + 2) * wb, xq + (b + 2) * kBlock, xd + (b + 2) * 8, acc1);
  }
  if (b + 2 <= nb) {
    acc0 = two_blocks_fma<T>(w + b * wb, xq + b * kBlock, xd + b * 8, acc0);
    b += 2;
  }
  float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  if (b < nb) s += simd::hsum(block_fma<T>(w + b * wb, xq + b * kBlock, xd + b * 8, _mm256_setzero_ps()));
  return s;
}
#pragma GCC diagnostic pop
#endif

template <DType T>
float dot_avx2(const uint8_t* w, const int8_t* xq, const float* xd, int64_t nb) {
  constexpr int64_t wb = T == DType::Q8_0 ? kQ8Bytes : kQ4Bytes;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    acc0 = block_fma<T>(w + b * wb, xq + b * kBlock, xd + b * 8, acc0);
    acc1 = block_fma<T>(w + (b + 1) * wb, xq + (b + 1) * kBlock, xd + (b + 1) * 8, acc1);
  }
  if (b < nb) acc0 = block_fma<T>(w + b * wb, xq + b * kBlock, xd + b * 8, acc0);
  return simd::hsum(_mm256_add_ps(acc0, acc1));
}

// Rows spread over the threads; each row's blocks stay in cache while every token passes them.
template <DType T, float (*Dot)(const uint8_t*, const int8_t*, const float*, int64_t)>
void linear_simd(const Weight& W, const Activations& a, float* y, int64_t n, float beta) {
  const int64_t out = W.rows(), in = W.cols(), nb = in / kBlock, row_bytes = nb * weight_block_bytes(T);
  const uint8_t* raw = W.raw().data();
#pragma omp parallel for schedule(static) num_threads(threads())
  for (int64_t o = 0; o < out; ++o) {
    const uint8_t* w = raw + o * row_bytes;
    for (int64_t t = 0; t < n; ++t) {
      const float s = Dot(w, a.q.data() + t * in, a.d.data() + t * nb * 8, nb);
      float& dst = y[t * out + o];
      dst = beta == 0.0f ? s : s + beta * dst;
    }
  }
}

template <DType T>
void linear_for_isa(Q8Isa isa, const Weight& W, const Activations& a, float* y, int64_t n, float beta) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  if (isa == Q8Isa::Avx512) return linear_simd<T, dot_avx512<T>>(W, a, y, n, beta);
#endif
  require(isa == Q8Isa::Avx2, "q8 linear: this build has no AVX-512 VNNI kernel");
  linear_simd<T, dot_avx2<T>>(W, a, y, n, beta);
}

}  // namespace

bool takes_q8_activations(DType weight) { return weight == DType::Q8_0 || weight == DType::Q4_0; }

bool q8_isa_built(Q8Isa isa) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  return isa == Q8Isa::Avx2 || isa == Q8Isa::Avx512;
#else
  return isa == Q8Isa::Avx2;
#endif
}

void q8_linear_forward(const Weight& W, const float* x, float* y, int64_t n, float beta, Q8Isa isa) {
  check_weight(W);
  thread_local Activations a;  // the caller's; reused from call to call
  quantize_rows(x, n, W.cols(), a);
  if (W.dtype() == DType::Q8_0) {
    linear_for_isa<DType::Q8_0>(isa, W, a, y, n, beta);
  } else {
    linear_for_isa<DType::Q4_0>(isa, W, a, y, n, beta);
  }
}

void q8_linear_forward_reference(const Weight& W, const float* x, float* y, int64_t n, float beta) {
  check_weight(W);
  const int64_t out = W.rows(), in = W.cols(), nb = in / kBlock;
  const int64_t row_bytes = nb * weight_block_bytes(W.dtype());
  std::vector<int8_t> q(static_cast<size_t>(in));
  std::vector<float> d(static_cast<size_t>(nb * 8));
  for (int64_t t = 0; t < n; ++t) {
    quantize_row(x + t * in, in, q.data(), d.data());
    for (int64_t o = 0; o < out; ++o) {
      const float s = dot_reference(W.dtype(), W.raw().data() + o * row_bytes, q.data(), d.data(), nb);
      y[t * out + o] = beta == 0.0f ? s : s + beta * y[t * out + o];
    }
  }
}

}  // namespace pricer::kernels
