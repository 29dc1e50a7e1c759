#include "kernels/gemv.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "kernels/parallel.h"
#include "kernels/simd.h"
#include "quant/half.h"
#include "quant/nf4.h"
#include "quant/nf4_panels.h"
#include "quant/q4_panels.h"

namespace pricer::kernels {

namespace {

// ggml Q8_0 blocks: bytes per block of 32 values.
constexpr int64_t kQ8_0Bytes = 34;  // f16 d, int8 qs[32]

// 8 bf16 values widened to f32 (exact: a bf16 is the high half of an f32).
inline __m256 widen_bf16(const uint16_t* p) {
  const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
}

float dot_bf16(const uint16_t* w, const float* x, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(widen_bf16(w + i), _mm256_loadu_ps(x + i), acc);
  float s = simd::hsum(acc);
  for (; i < n; ++i) s += bf16_to_f32(w[i]) * x[i];
  return s;
}

float dot_f16(const uint16_t* w, const float* x, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
    acc = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + i), acc);
  }
  float s = simd::hsum(acc);
  for (; i < n; ++i) s += f16_to_f32(w[i]) * x[i];
  return s;
}

float dot_q8_0(const uint8_t* row, const float* x, int64_t n) {
  float total = 0;
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* blk = row + b * kQ8_0Bytes;
    const float* xb = x + b * 32;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t g = 0; g < 4; ++g) {
      const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 2 + 8 * g));
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)), _mm256_loadu_ps(xb + 8 * g), acc);
    }
    total += f16_to_f32(f16_bits_at(blk)) * simd::hsum(acc);
  }
  return total;
}

#ifdef __AVX512F__
// The whole panel p at once (its 16 rows' dot products into out): per block, each 16 bytes of a
// chunk are 4 values of 4 rows, widened to 16 lanes and taken against the token's 4 values
// repeated; the nibbles' +8 is taken back once per block and row (8 x the block's x summed).
void q4_0_panel_f32(const uint8_t* panels, int64_t nb, int64_t p, const float* x, float* out) {
  __m512 total[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};  // NOLINT
  __m512 offset = _mm512_setzero_ps();  // per row: sum over blocks of d x 8 x sum(x block)
  const __m512i m4 = _mm512_set1_epi32(0x0F);
  const __m512i lane_row = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* c = q4_panel_block(panels, nb, p, b);
    const float* xb = x + b * 32;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};  // NOLINT
    for (int64_t k = 0; k < kQ4PanelChunks; ++k) {
      const __m512 xlo = _mm512_broadcast_f32x4(_mm_loadu_ps(xb + 8 * k));
      const __m512 xhi = _mm512_broadcast_f32x4(_mm_loadu_ps(xb + 8 * k + 4));
      for (int64_t q = 0; q < 4; ++q) {
        const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + k * 64 + q * 16)));
        acc[q] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(v, m4)), xlo, acc[q]);
        acc[q] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4)), xhi, acc[q]);
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + kQ4PanelCodeBytes)));
    for (int64_t q = 0; q < 4; ++q) {  // lane l of quad q is row 4q + l / 4
      const __m512i rows = _mm512_add_epi32(lane_row, _mm512_set1_epi32(static_cast<int>(4 * q)));
      total[q] = _mm512_fmadd_ps(acc[q], _mm512_permutexvar_ps(rows, d), total[q]);
    }
    float xsum = 0;
    for (int64_t j = 0; j < 32; ++j) xsum += xb[j];
    offset = _mm512_fmadd_ps(d, _mm512_set1_ps(8.0f * xsum), offset);
  }
  alignas(64) std::array<float, 64> lanes{};
  for (int64_t q = 0; q < 4; ++q) _mm512_store_ps(lanes.data() + 16 * q, total[q]);
  alignas(64) std::array<float, 16> off{};
  _mm512_store_ps(off.data(), offset);
  for (int64_t r = 0; r < kQ4PanelRows; ++r)
    out[r] = lanes[4 * r] + lanes[4 * r + 1] + lanes[4 * r + 2] + lanes[4 * r + 3] - off[r];
}

// y = W x + beta y for Q4_0 in panels, whole panels per thread.
void q4_0_panels_gemv(const Weight& W, const float* x, float* y, float beta) {
  const int64_t out = W.rows(), nb = W.cols() / 32;
#pragma omp parallel for schedule(static) num_threads(threads())
  for (int64_t p = 0; p < q4_panel_count(out); ++p) {
    std::array<float, kQ4PanelRows> sums{};
    q4_0_panel_f32(W.raw().data(), nb, p, x, sums.data());
    float* dst = y + p * kQ4PanelRows;
    for (int64_t r = 0; r < std::min(kQ4PanelRows, out - p * kQ4PanelRows); ++r)
      dst[r] = beta == 0.0f ? sums[r] : sums[r] + beta * dst[r];
  }
}

// NF4 in panels, the whole panel p at once (its 16 rows' dot products into out): per block, each
// 16 bytes of a chunk are 4 bytes of 4 rows, widened to 16 lanes; their high nibbles (even values)
// and low ones (odd) looked up in the 16 code values and taken against the token's values in NF4
// order (xr: per 64, evens then odds) repeated; each row's block sum then times its absmax.
void nf4_panel_f32(const Weight& W, int64_t p, const float* xr, float* out) {
  const int64_t nb = W.cols() / kNf4BlockSize, row0 = p * kNf4PanelRows;
  const uint8_t* panel = W.raw().data() + p * nf4_panel_stride(W.cols());
  const __m512 code = _mm512_loadu_ps(nf4_code().data());
  const __m512i m4 = _mm512_set1_epi32(0x0F);
  __m512 total[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};  // NOLINT
  alignas(64) std::array<float, kNf4PanelRows> absmax{};
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* c = nf4_panel_block(panel, b);
    const float* xb = xr + b * kNf4BlockSize;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};  // NOLINT
    for (int64_t k = 0; k < kNf4PanelChunks; ++k) {
      const __m512 xe = _mm512_broadcast_f32x4(_mm_loadu_ps(xb + 4 * k));
      const __m512 xo = _mm512_broadcast_f32x4(_mm_loadu_ps(xb + kNf4BlockSize / 2 + 4 * k));
      for (int64_t q = 0; q < 4; ++q) {
        const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + k * 64 + q * 16)));
        acc[q] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), code), xe, acc[q]);
        acc[q] = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_and_si512(v, m4), code), xo, acc[q]);
      }
    }
    nf4_panel_absmax(panel, W.nf4(), W.rows(), W.cols(), row0, b, absmax.data());
    const __m512 a = _mm512_load_ps(absmax.data());
    const __m512i lane_row = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    for (int64_t q = 0; q < 4; ++q) {  // lane l of quad q is row 4q + l / 4
      const __m512i rows = _mm512_add_epi32(lane_row, _mm512_set1_epi32(static_cast<int>(4 * q)));
      total[q] = _mm512_fmadd_ps(acc[q], _mm512_permutexvar_ps(rows, a), total[q]);
    }
  }
  alignas(64) std::array<float, 64> lanes{};
  for (int64_t q = 0; q < 4; ++q) _mm512_store_ps(lanes.data() + 16 * q, total[q]);
  for (int64_t r = 0; r < kNf4PanelRows; ++r)
    out[r] = lanes[4 * r] + lanes[4 * r + 1] + lanes[4 * r + 2] + lanes[4 * r + 3];
}

// y = W x + beta y for NF4 in panels, whole panels per thread; x first reordered as the panels
// pair it (per 64 values, evens then odds).
void nf4_panels_gemv(const Weight& W, const float* x, float* y, float beta) {
  const int64_t out = W.rows(), in = W.cols();
  thread_local std::vector<float> reordered;
  reordered.resize(static_cast<size_t>(in));
  nf4_panel_order(x, in, reordered.data());
  const float* xr = reordered.data();
#pragma omp parallel for schedule(static) num_threads(threads())
  for (int64_t p = 0; p < nf4_panel_count(out); ++p) {
    std::array<float, kNf4PanelRows> sums{};
    nf4_panel_f32(W, p, xr, sums.data());
    float* dst = y + p * kNf4PanelRows;
    for (int64_t r = 0; r < std::min(kNf4PanelRows, out - p * kNf4PanelRows); ++r)
      dst[r] = beta == 0.0f ? sums[r] : sums[r] + beta * dst[r];
  }
}
#endif

// Sum over one whole, aligned NF4 block of 64 values of code[index] * x (absmax applied by the
// caller). Indices go through a 16-entry table lookup done as two 8-lane permutes.
float nf4_block_dot(const uint8_t* packed, const float* x, __m256 tab_lo, __m256 tab_hi) {
  const __m256i seven = _mm256_set1_epi32(7);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t half = 0; half < 2; ++half) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + 16 * half));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0F));
    const __m128i lo = _mm_and_si128(b, _mm_set1_epi8(0x0F));
    // The first element of each byte is its high nibble.
    const __m128i a = _mm_unpacklo_epi8(hi, lo), c = _mm_unpackhi_epi8(hi, lo);
    const __m128i parts[4] = {a, _mm_srli_si128(a, 8), c, _mm_srli_si128(c, 8)};
    for (int64_t g = 0; g < 4; ++g) {
      const __m256i idx = _mm256_cvtepu8_epi32(parts[g]);
      const __m256 v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(tab_lo, idx), _mm256_permutevar8x32_ps(tab_hi, idx),
                                        _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, seven)));
      acc = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + 32 * half + 8 * g), acc);
    }
  }
  return simd::hsum(acc);
}

// Dot of x with the flat NF4 elements [start, start + n); rows need not start on a block.
float dot_nf4(const Nf4Tensor& t, int64_t start, int64_t n, const float* x) {
  const auto& code = nf4_code();
  const auto& dmap = dynamic_map_signed();
  const __m256 tab_lo = _mm256_loadu_ps(code.data()), tab_hi = _mm256_loadu_ps(code.data() + 8);
  const int64_t end = start + n;
  float total = 0;
  for (int64_t i = start; i < end;) {
    const int64_t b = i / kNf4BlockSize;
    const int64_t seg_end = std::min(end, (b + 1) * kNf4BlockSize);
    const float absmax = dmap[t.absmax_codes[b]] * t.absmax_scales[b / kNf4AbsmaxBlockSize] + t.absmax_offset;
    float s = 0;
    if (i % kNf4BlockSize == 0 && seg_end - i == kNf4BlockSize) {
      s = nf4_block_dot(t.packed.data() + i / 2, x + (i - start), tab_lo, tab_hi);
    } else {
      for (int64_t e = i; e < seg_end; ++e) {
        const uint8_t byte = t.packed[e >> 1];
        s += code[(e & 1) ? (byte & 0x0F) : (byte >> 4)] * x[e - start];
      }
    }
    total += absmax * s;
    i = seg_end;
  }
  return total;
}

// The dot products of R consecutive bf16 weight rows (`in` apart) with N bf16 rows of x, f32
// sums, into s[r * R + j]: 32 pairs per instruction where the build has AVX512-BF16, otherwise
// both widened to f32 and multiplied there (AVX2). Each 32-wide slice of x is loaded once for the
// R weight rows and each slice of a weight row once for the N rows of x.
template <int N, int R>
void dot_rows_bf16(const uint16_t* w, const uint16_t* x, int64_t in, float* s) {
  int64_t i = 0;
  for (int e = 0; e < N * R; ++e) s[e] = 0.0f;
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
  __m512 acc[N][R];
  for (int r = 0; r < N; ++r) {
    for (int j = 0; j < R; ++j) acc[r][j] = _mm512_setzero_ps();
  }
  for (; i + 32 <= in; i += 32) {
    __m512bh wv[R];
    for (int j = 0; j < R; ++j) wv[j] = (__m512bh)_mm512_loadu_si512(w + j * in + i);
    for (int r = 0; r < N; ++r) {
      const auto xv = (__m512bh)_mm512_loadu_si512(x + r * in + i);
      for (int j = 0; j < R; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], wv[j], xv);
    }
  }
  for (int r = 0; r < N; ++r) {
    for (int j = 0; j < R; ++j) s[r * R + j] = _mm512_reduce_add_ps(acc[r][j]);
  }
#endif
  for (int r = 0; r < N; ++r) {
    for (int j = 0; j < R; ++j) {
      const uint16_t *xr = x + r * in, *wj = w + j * in;
      __m256 acc8 = _mm256_setzero_ps();
      int64_t c = i;
      for (; c + 8 <= in; c += 8) acc8 = _mm256_fmadd_ps(widen_bf16(wj + c), widen_bf16(xr + c), acc8);
      float t = simd::hsum(acc8);
      for (; c < in; ++c) t += bf16_to_f32(wj[c]) * bf16_to_f32(xr[c]);
      s[r * R + j] += t;
    }
  }
}

// Weight rows in blocks of R (as many as leave the N x R sums in registers), the last few alone.
template <int N>
void bf16_gemv_rows_n(const uint16_t* w, int64_t out, int64_t in, const uint16_t* xb, float* y, float beta) {
  constexpr int R = N <= 6 ? 4 : 2;
  const int64_t blocks = (out + R - 1) / R;
  const auto put = [&](int64_t o, float v, int r) { y[r * out + o] = beta == 0.0f ? v : v + beta * y[r * out + o]; };
#pragma omp parallel for schedule(static) num_threads(threads())
  for (int64_t bi = 0; bi < blocks; ++bi) {
    const int64_t o0 = bi * R;
    float s[N * R];
    if (o0 + R <= out) {
      dot_rows_bf16<N, R>(w + o0 * in, xb, in, s);
      for (int r = 0; r < N; ++r) {
        for (int j = 0; j < R; ++j) put(o0 + j, s[r * R + j], r);
      }
      continue;
    }
    for (int64_t o = o0; o < out; ++o) {
      dot_rows_bf16<N, 1>(w + o * in, xb, in, s);
      for (int r = 0; r < N; ++r) put(o, s[r], r);
    }
  }
}

// part[r, :] += sum_j a[r * R + j] w_j for N rows and R weight rows (`in` apart): each weight row
// widened once for all N, each slice of part loaded and stored once for the R weight rows.
template <int N, int R>
void axpy_rows_bf16(const uint16_t* w, const float* a, int64_t in, float* part) {
  int64_t i = 0;
  for (; i + 8 <= in; i += 8) {
    __m256 wf[R];
    for (int j = 0; j < R; ++j) wf[j] = widen_bf16(w + j * in + i);
    for (int r = 0; r < N; ++r) {
      float* p = part + r * in + i;
      __m256 acc = _mm256_loadu_ps(p);
      for (int j = 0; j < R; ++j) acc = _mm256_fmadd_ps(_mm256_set1_ps(a[r * R + j]), wf[j], acc);
      _mm256_storeu_ps(p, acc);
    }
  }
  for (; i < in; ++i) {
    for (int r = 0; r < N; ++r) {
      for (int j = 0; j < R; ++j) part[r * in + i] += a[r * R + j] * bf16_to_f32(w[j * in + i]);
    }
  }
}

// Weight rows R at a time (the last few alone), each thread summing its (statically assigned)
// rows into its own partial; the partials are then added to dx in thread order, so the result
// is reproducible for a given thread count.
template <int N>
void bf16_gemv_rows_backward_n(const uint16_t* w, int64_t out, int64_t in, const uint16_t* dyb, float* dx) {
  constexpr int R = 4;
  const int nt = threads();
  const int64_t width = N * in, blocks = (out + R - 1) / R;
  std::vector<float> partials(static_cast<size_t>(nt * width), 0.0f);
#pragma omp parallel num_threads(nt)
  {
    const int team = omp_get_num_threads();
    float* part = partials.data() + omp_get_thread_num() * width;
#pragma omp for schedule(static)
    for (int64_t bi = 0; bi < blocks; ++bi) {
      const int64_t o0 = bi * R;
      float a[N * R];
      if (o0 + R <= out) {
        for (int r = 0; r < N; ++r) {
          for (int j = 0; j < R; ++j) a[r * R + j] = bf16_to_f32(dyb[r * out + o0 + j]);
        }
        axpy_rows_bf16<N, R>(w + o0 * in, a, in, part);
        continue;
      }
      for (int64_t o = o0; o < out; ++o) {
        for (int r = 0; r < N; ++r) a[r] = bf16_to_f32(dyb[r * out + o]);
        axpy_rows_bf16<N, 1>(w + o * in, a, in, part);
      }
    }
#pragma omp for schedule(static)
    for (int64_t e = 0; e < width; ++e) {
      float acc = partials[size_t(e)];
      for (int t = 1; t < team; ++t) acc += partials[size_t(t * width + e)];
      dx[e] += acc;
    }
  }
}

template <int... N>
constexpr auto forward_table(std::integer_sequence<int, N...>) {
  return std::array{&bf16_gemv_rows_n<N + 1>...};
}
template <int... N>
constexpr auto backward_table(std::integer_sequence<int, N...>) {
  return std::array{&bf16_gemv_rows_backward_n<N + 1>...};
}

const uint16_t* bf16_rows(const Weight& W, const char* what) {
  require(W.dtype() == DType::BF16,
          std::string(what) + ": weights in " + std::string(dtype_name(W.dtype())) + " (it reads bf16 rows as stored)");
  return reinterpret_cast<const uint16_t*>(W.raw().data());
}

void require_few_rows(int64_t n, const char* what) {
  require(n >= 1 && n <= kGemvRows,
          std::string(what) + ": " + std::to_string(n) + " rows (1 to " + std::to_string(kGemvRows) + " are taken)");
}

}  // namespace

void bf16_gemv_rows(const Weight& W, const uint16_t* xb, int64_t n, float* y, float beta) {
  const uint16_t* w = bf16_rows(W, "bf16 gemv");
  require_few_rows(n, "bf16 gemv");
  static constexpr auto table = forward_table(std::make_integer_sequence<int, kGemvRows>{});
  table[size_t(n - 1)](w, W.rows(), W.cols(), xb, y, beta);
}

void bf16_gemv_rows_backward(const Weight& W, const uint16_t* dyb, int64_t n, float* dx) {
  const uint16_t* w = bf16_rows(W, "bf16 gemv backward");
  require_few_rows(n, "bf16 gemv backward");
  static constexpr auto table = backward_table(std::make_integer_sequence<int, kGemvRows>{});
  table[size_t(n - 1)](w, W.rows(), W.cols(), dyb, dx);
}

void fused_gemv(const Weight& W, const float* x, float* y, float beta) {
  const int64_t out = W.rows(), in = W.cols();
  if (out == 0) return;
  const DType dt = W.dtype();
#ifdef __AVX512F__
  if (dt == DType::Q4_0) {
    q4_0_panels_gemv(W, x, y, beta);
    return;
  }
  if (dt == DType::NF4 && !W.raw().empty()) {
    nf4_panels_gemv(W, x, y, beta);
    return;
  }
#endif
  const uint8_t* raw = W.raw().data();
  const bool panels = dt == DType::NF4 && !W.raw().empty();
  const int nt = threads();
  ParallelErrors errors;
#pragma omp parallel num_threads(nt)
  {
    // The K-quant formats (super-blocks of 256), and Q4_0's and NF4's panels where the build has
    // no AVX-512, go through a one-row buffer that stays in L1.
    std::vector<float> row_buf;
    if (dt == DType::Q4_K || dt == DType::Q5_K || dt == DType::Q6_K || dt == DType::Q4_0 || panels)
      row_buf.resize(static_cast<size_t>(in));
#pragma omp for schedule(static)
    for (int64_t o = 0; o < out; ++o) {
      float s = 0;
      switch (dt) {
        case DType::F32: s = simd::dot(W.f32().data() + o * in, x, in); break;
        case DType::BF16: s = dot_bf16(reinterpret_cast<const uint16_t*>(raw) + o * in, x, in); break;
        case DType::F16: s = dot_f16(reinterpret_cast<const uint16_t*>(raw) + o * in, x, in); break;
        case DType::Q8_0: s = dot_q8_0(raw + o * (in / 32) * kQ8_0Bytes, x, in); break;
        case DType::NF4:
          if (!panels) {
            s = dot_nf4(W.nf4(), o * in, in, x);
            break;
          }
          [[fallthrough]];
        default:
          errors.run([&] { W.dequantize_rows(o, 1, row_buf.data()); });
          s = simd::dot(row_buf.data(), x, in);
          break;
      }
      y[o] = beta == 0.0f ? s : s + beta * y[o];
    }
  }
  errors.rethrow();
}

}  // namespace pricer::kernels
