#include "kernels/q8_dot.h"

#include <immintrin.h>

#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "kernels/simd.h"
#include "quant/ggml_blocks.h"
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

// The n rows of x rounded to Q8_0 blocks, row after row (in the calling thread's buffer, reused).
const uint8_t* quantized_rows(const float* x, int64_t n, int64_t in) {
  thread_local std::vector<uint8_t> buf;
  const int64_t row_bytes = in / kBlock * kQ8Bytes;
  buf.resize(static_cast<size_t>(n * row_bytes));
  uint8_t* out = buf.data();
#pragma omp parallel for schedule(static) num_threads(n > 1 ? threads() : 1)
  for (int64_t t = 0; t < n; ++t) quantize_raw(DType::Q8_0, x + t * in, out + t * row_bytes, in);
  return out;
}

void check_weight(const Weight& W) {
  require(takes_q8_activations(W.dtype()), "q8 linear: weights in " + std::string(dtype_name(W.dtype())) +
                                               " do not take the integer path (Q8_0 or Q4_0 only)");
}

// ---------------------------------------------------------------- scalar twin

// The signed values of one weight block.
void block_values(DType t, const uint8_t* blk, int8_t* v) {
  if (t == DType::Q8_0) {
    std::memcpy(v, blk + 2, kBlock);
    return;
  }
  for (int j = 0; j < kBlock / 2; ++j) {
    v[j] = static_cast<int8_t>((blk[2 + j] & 0x0F) - 8);
    v[j + kBlock / 2] = static_cast<int8_t>((blk[2 + j] >> 4) - 8);
  }
}

float dot_reference(DType t, const uint8_t* w, const uint8_t* xq, int64_t nb) {
  const int64_t wb = weight_block_bytes(t);
  float sum = 0;
  int8_t v[kBlock];
  for (int64_t b = 0; b < nb; ++b, w += wb, xq += kQ8Bytes) {
    block_values(t, w, v);
    // The activations widened first: GCC 12 at -O3 turns a sum of int8 x int8 products into an
    // unsigned-by-signed dot-product instruction and gets the signs wrong.
    int32_t xv[kBlock], s = 0;
    for (int j = 0; j < kBlock; ++j) xv[j] = xq[2 + j] < 128 ? xq[2 + j] : xq[2 + j] - 256;  // the int8 byte
    for (int j = 0; j < kBlock; ++j) s += v[j] * xv[j];
    sum += static_cast<float>(s) * (f16_to_f32(load_u16(w)) * f16_to_f32(load_u16(xq)));
  }
  return sum;
}

// ---------------------------------------------------------------- SIMD

// 8 lanes, each the sum of 4 of the 32 products w[j] * x[j] (int8 each). The sign of w moves onto
// x so that the unsigned-by-signed multiply applies (x is never -128: ggml rounds activations
// into [-127, 127]).
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

template <DType T>
inline __m256 block_fma(const uint8_t* w, const uint8_t* xq, __m256 acc) {
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 2));
  const __m256i s = sum_products(block_values_simd<T>(w), x);
  const float d = _cvtsh_ss(load_u16(w)) * _cvtsh_ss(load_u16(xq));
  return _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s), acc);
}

template <DType T>
float dot_simd(const uint8_t* w, const uint8_t* xq, int64_t nb) {
  constexpr int64_t wb = T == DType::Q8_0 ? kQ8Bytes : kQ4Bytes;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    acc0 = block_fma<T>(w + b * wb, xq + b * kQ8Bytes, acc0);
    acc1 = block_fma<T>(w + (b + 1) * wb, xq + (b + 1) * kQ8Bytes, acc1);
  }
  if (b < nb) acc0 = block_fma<T>(w + b * wb, xq + b * kQ8Bytes, acc0);
  return simd::hsum(_mm256_add_ps(acc0, acc1));
}

// Rows spread over the threads; each row's blocks stay in cache while every token passes them.
template <DType T>
void linear_simd(const Weight& W, const uint8_t* xq, float* y, int64_t n, float beta) {
  const int64_t out = W.rows(), nb = W.cols() / kBlock, row_bytes = nb * weight_block_bytes(T);
  const uint8_t* raw = W.raw().data();
#pragma omp parallel for schedule(static) num_threads(threads())
  for (int64_t o = 0; o < out; ++o) {
    const uint8_t* w = raw + o * row_bytes;
    for (int64_t t = 0; t < n; ++t) {
      const float s = dot_simd<T>(w, xq + t * nb * kQ8Bytes, nb);
      float& dst = y[t * out + o];
      dst = beta == 0.0f ? s : s + beta * dst;
    }
  }
}

}  // namespace

bool takes_q8_activations(DType weight) { return weight == DType::Q8_0 || weight == DType::Q4_0; }

void q8_linear_forward(const Weight& W, const float* x, float* y, int64_t n, float beta) {
  check_weight(W);
  const uint8_t* xq = quantized_rows(x, n, W.cols());
  if (W.dtype() == DType::Q8_0) {
    linear_simd<DType::Q8_0>(W, xq, y, n, beta);
  } else {
    linear_simd<DType::Q4_0>(W, xq, y, n, beta);
  }
}

void q8_linear_forward_reference(const Weight& W, const float* x, float* y, int64_t n, float beta) {
  check_weight(W);
  const int64_t out = W.rows(), in = W.cols(), nb = in / kBlock;
  const int64_t row_bytes = nb * weight_block_bytes(W.dtype());
  std::vector<uint8_t> xq(static_cast<size_t>(nb * kQ8Bytes));
  for (int64_t t = 0; t < n; ++t) {
    quantize_raw(DType::Q8_0, x + t * in, xq.data(), in);
    for (int64_t o = 0; o < out; ++o) {
      const float s = dot_reference(W.dtype(), W.raw().data() + o * row_bytes, xq.data(), nb);
      y[t * out + o] = beta == 0.0f ? s : s + beta * y[t * out + o];
    }
  }
}

}  // namespace pricer::kernels
