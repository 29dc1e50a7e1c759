#include "kernels/q8_dot.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <span>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "kernels/q8_gemm.h"
#include "kernels/simd.h"
#include "quant/half.h"
#include "quant/nf4.h"
#include "quant/nf4_panels.h"
#include "quant/q4_panels.h"

namespace pricer::kernels {

namespace {

constexpr int64_t kBlock = kQ8Block;
constexpr int64_t kQ8Bytes = 34;  // f16 d, int8 qs[32]
constexpr int64_t kQ4Bytes = 18;  // f16 d, u8 qs[16]: value j in the low nibble of byte j, j + 16 in the high
static_assert(kQ4PanelRows == 16, "the Q4_0 kernels give a panel's rows one 512-bit register of sums");

int64_t weight_block_bytes(DType t) { return t == DType::Q8_0 ? kQ8Bytes : kQ4Bytes; }

// The NF4 code values as integers of 32512 (= 127 * 256) per unit, split into a high byte stored
// +128 (unsigned) and a low byte (unsigned): code * 32512 = 256 * (hi - 128) + lo, within 1/65024
// of the block's absmax. Integer dot products then sum 256 * dot(hi) + dot(lo) - kNf4Offset * sum(x).
constexpr float kNf4Unit = 32512.0f;
constexpr int32_t kNf4Offset = 256 * 128;
struct Nf4Bytes {
  std::array<int32_t, 16> value;  // round(code * kNf4Unit)
  alignas(16) std::array<uint8_t, 16> hi, lo;  // the split above
  alignas(16) std::array<uint8_t, 16> byte0, byte1;  // value as int16, low and high byte (the AVX2 kernel)
};
const Nf4Bytes& nf4_bytes() {
  static const Nf4Bytes b = [] {
    Nf4Bytes t{};
    for (int k = 0; k < 16; ++k) {
      t.value[k] = static_cast<int32_t>(std::lround(nf4_code()[k] * kNf4Unit));
      const int32_t hi = (t.value[k] + 32768) / 256 - 128;  // floor(value / 256)
      t.hi[k] = static_cast<uint8_t>(hi + 128);
      t.lo[k] = static_cast<uint8_t>(t.value[k] - 256 * hi);
      const auto v16 = static_cast<uint16_t>(static_cast<int16_t>(t.value[k]));
      t.byte0[k] = static_cast<uint8_t>(v16 & 0xFF);
      t.byte1[k] = static_cast<uint8_t>(v16 >> 8);
    }
    return t;
  }();
  return b;
}

// Activations rounded to blocks as ggml's quantize_row_q8_0 rounds them (scale = largest
// magnitude / 127, values round(x / scale)), laid out for the kernels: each row's int8 values
// contiguous, and each block's scale kept in f32 (ggml rounds it to f16) and repeated over 8 lanes
// per 32 values, so that a block's partial sums take it in one multiply. Blocks are of 32 values
// for Q8_0/Q4_0 weights. NF4 weights hold elements 2i and 2i + 1 in one byte, so each 64 values
// are reordered evens first, then odds, and rounded as one block of 64 (one scale over both
// halves lets the kernels sum evens and odds in the same lanes).
struct Activations {
  std::vector<int8_t> q;  // [n, in]
  std::vector<float> d;  // [n, in / 32, 8]
  // The panel kernels' start value per weight block, [n, blocks per row]: for Q4_0 (blocks of 32)
  // -8 times the block's values summed (the nibbles are value + 8); for NF4 (blocks of 64)
  // -kNf4Offset times them (the code values' high bytes are stored + 128).
  std::vector<int32_t> start;
};

constexpr int64_t kPrefetchBytes = 1024;  // bytes ahead in a row: the hardware prefetcher alone falls behind
// Plain: q and d only; Q4Panels and Nf4Panels: with the blocks' start values.
enum class Layout { Plain, Q4Panels, Nf4Panels };

// Values per weight block of the panel kernels' start values.
int64_t start_block(Layout layout) { return layout == Layout::Nf4Panels ? kNf4BlockSize : kBlock; }

void fill_starts(const int8_t* q, int64_t in, Layout layout, int32_t* start) {
  const int64_t size = start_block(layout);
  const int32_t factor = layout == Layout::Nf4Panels ? -kNf4Offset : -8;
  for (int64_t b = 0; b < in / size; ++b) {
    int32_t sum = 0;
    for (int64_t j = 0; j < size; ++j) sum += q[b * size + j];
    start[b] = factor * sum;
  }
}

// Rounds `count` values to one block: q[j] = x[j] / scale rounded to the nearest, ties to even
// (ggml's SIMD quantize_row_q8_0), the scale over `lanes` of d.
void quantize_block(const float* x, int64_t count, int8_t* q, float* d, int64_t lanes) {
  float amax = 0;
  for (int64_t j = 0; j < count; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float scale = amax / 127.0f, inv = scale != 0.0f ? 1.0f / scale : 0.0f;
  for (int64_t j = 0; j < count; ++j) q[j] = static_cast<int8_t>(std::nearbyint(x[j] * inv));
  std::fill(d, d + lanes, scale);
}

#ifdef PRICER_Q8_AVX512
// quantize_block 16 values per instruction (count a multiple of 16): the same products, rounded
// by the same rule (the default rounding mode).
void quantize_block_simd(const float* x, int64_t count, int8_t* q, float* d, int64_t lanes) {
  __m512 amax = _mm512_setzero_ps();
  for (int64_t j = 0; j < count; j += 16) amax = _mm512_max_ps(amax, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
  const float scale = _mm512_reduce_max_ps(amax) / 127.0f, inv = scale != 0.0f ? 1.0f / scale : 0.0f;
  const __m512 v = _mm512_set1_ps(inv);
  for (int64_t j = 0; j < count; j += 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + j),
                     _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + j), v))));
  std::fill(d, d + lanes, scale);
}
#endif

// quantize_block_simd where asked and the build has it, quantize_block otherwise.
using BlockRounder = void (*)(const float*, int64_t, int8_t*, float*, int64_t);
BlockRounder block_rounder([[maybe_unused]] bool simd) {
#ifdef PRICER_Q8_AVX512
  if (simd) return quantize_block_simd;
#endif
  return quantize_block;
}

// One row of `in` values, blocks of 32 (nf4: of 64, evens then odds), each scale over 8 lanes of d
// (nf4: 16).
void quantize_row(const float* x, int64_t in, bool nf4, int8_t* q, float* d, bool simd) {
  const BlockRounder block = block_rounder(simd);
  if (!nf4) {
    for (int64_t b = 0; b < in / kBlock; ++b) block(x + b * kBlock, kBlock, q + b * kBlock, d + b * 8, 8);
    return;
  }
  std::array<float, kNf4BlockSize> halves{};
  for (int64_t b = 0; b < in / kNf4BlockSize; ++b) {
    nf4_panel_order(x + b * kNf4BlockSize, kNf4BlockSize, halves.data());
    block(halves.data(), kNf4BlockSize, q + b * kNf4BlockSize, d + b * 16, 16);
  }
}

void quantize_rows(const float* x, int64_t n, int64_t in, bool nf4, Layout layout, Activations& a) {
  const int64_t starts = layout == Layout::Plain ? 0 : in / start_block(layout);
  a.q.resize(static_cast<size_t>(n * in));
  a.d.resize(static_cast<size_t>(n * in / kBlock * 8));
  a.start.resize(static_cast<size_t>(n * starts));
#pragma omp parallel for schedule(static) num_threads(n > 1 ? threads() : 1)
  for (int64_t t = 0; t < n; ++t) {
    int8_t* q = a.q.data() + t * in;
    quantize_row(x + t * in, in, nf4, q, a.d.data() + t * in / kBlock * 8, /*simd=*/true);
    if (starts > 0) fill_starts(q, in, layout, a.start.data() + t * starts);
  }
}

// The absmax of NF4 block b, as nf4_absmax computes it.
inline float nf4_block_scale(const Nf4Tensor& t, const float* map, int64_t b) {
  return map[t.absmax_codes[b]] * t.absmax_scales[b / kNf4AbsmaxBlockSize] + t.absmax_offset;
}

void check_weight(const Weight& W) {
  require(takes_q8_activations(W), "q8 linear: weights in " + std::string(dtype_name(W.dtype())) + " with rows of " +
                                       std::to_string(W.cols()) +
                                       " do not take the integer path (Q8_0, Q4_0, or NF4 in whole blocks of 64)");
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
    sum += static_cast<float>(s) * (f16_to_f32(f16_bits_at(w)) * xd[0]);
  }
  return sum;
}

// NF4: `nblk` blocks of 64 from block b0, against activations in NF4 order.
float dot_nf4_reference(const Nf4Tensor& t, int64_t b0, const int8_t* xq, const float* xd, int64_t nblk) {
  const Nf4Bytes& nb = nf4_bytes();
  const float* map = dynamic_map_signed().data();
  float sum = 0;
  for (int64_t k = 0; k < nblk; ++k, xq += 2 * kBlock, xd += 16) {
    const uint8_t* p = t.packed.data() + (b0 + k) * (kNf4BlockSize / 2);
    int32_t evens = 0, odds = 0;
    for (int i = 0; i < kBlock; ++i) {
      evens += nb.value[p[i] >> 4] * int32_t{xq[i]};
      odds += nb.value[p[i] & 0x0F] * int32_t{xq[kBlock + i]};
    }
    sum += nf4_block_scale(t, map, b0 + k) * (1.0f / kNf4Unit) * xd[0] * static_cast<float>(evens + odds);
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

// One Q8_0 block: acc += its 8 partial sums times the weight scale times the activation scale.
inline __m256 block_fma(const uint8_t* w, const int8_t* xq, const float* xd, __m256 acc) {
  const __m256i s = sum_products(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2)),
                                 _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq)));
  const __m256 d = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(f16_bits_at(w))), _mm256_loadu_ps(xd));
  return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc);
}

#ifdef PRICER_Q8_AVX512
// Two Q8_0 blocks per 512-bit register (the first block's values in the low half): acc += their
// 16 partial sums times the weight and activation scales.
inline __m512 q8_0_pair_fma(const uint8_t* w, const int8_t* xq, const float* xd, __m512 acc) {
  const __m512i v =
      _mm512_inserti64x4(_mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2))),
                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kQ8Bytes + 2)), 1);
  const __m512i x = _mm512_loadu_si512(xq);
  const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(v),
                                        _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(v), _mm512_setzero_si512(), x));
  const __m256i dw16 = _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(f16_bits_at(w + kQ8Bytes))),
                                        _mm_set1_epi16(static_cast<int16_t>(f16_bits_at(w))));
  const __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(dw16), _mm512_loadu_ps(xd));
  return _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), acc);
}

float dot_q8_0_avx512(const uint8_t* w, const int8_t* xq, const float* xd, int64_t nb) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t b = 0;
  for (; b + 4 <= nb; b += 4) {
    acc0 = q8_0_pair_fma(w + b * kQ8Bytes, xq + b * kBlock, xd + b * 8, acc0);
    acc1 = q8_0_pair_fma(w + (b + 2) * kQ8Bytes, xq + (b + 2) * kBlock, xd + (b + 2) * 8, acc1);
  }
  if (b + 2 <= nb) {
    acc0 = q8_0_pair_fma(w + b * kQ8Bytes, xq + b * kBlock, xd + b * 8, acc0);
    b += 2;
  }
  float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  if (b < nb) s += simd::hsum(block_fma(w + b * kQ8Bytes, xq + b * kBlock, xd + b * 8, _mm256_setzero_ps()));
  return s;
}
#endif

float dot_q8_0_avx2(const uint8_t* w, const int8_t* xq, const float* xd, int64_t nb) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    acc0 = block_fma(w + b * kQ8Bytes, xq + b * kBlock, xd + b * 8, acc0);
    acc1 = block_fma(w + (b + 1) * kQ8Bytes, xq + (b + 1) * kBlock, xd + (b + 1) * 8, acc1);
  }
  if (b < nb) acc0 = block_fma(w + b * kQ8Bytes, xq + b * kBlock, xd + b * 8, acc0);
  return simd::hsum(_mm256_add_ps(acc0, acc1));
}

// Q4_0 in panels (quant/q4_panels.h) against one token: the panel's 16 rows' dot products into
// out[16]. A chunk's low (high) nibbles are 4 values of each row, taken against the token's
// values 8k..8k+3 (8k+4..8k+7) broadcast to every lane; each block's int32 sums start at -8
// times the block's activations summed (a nibble is its value + 8). The unsigned-by-signed byte
// products are exact in int16: 2 x 15 x 127 < 32768. AVX2: 8 rows (half a chunk) per register.
void q4_0_panel_avx2(const uint8_t* panel, int64_t nb, const int8_t* xq, const float* xd, const int32_t* start,
                     float* out) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};  // NOLINT(*-avoid-c-arrays)
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* c = panel + b * kQ4PanelBlockBytes;
    std::array<int32_t, 8> x4{};
    std::memcpy(x4.data(), xq + b * kBlock, kBlock);
    for (int64_t h = 0; h < 2; ++h) {
      __m256i s = _mm256_set1_epi32(start[b]);
      for (int64_t k = 0; k < kQ4PanelChunks; ++k) {
        const __m256i z = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + k * 64 + h * 32));
        const __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(z, m4), _mm256_set1_epi32(x4[2 * k]));
        const __m256i hi =
            _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(z, 4), m4), _mm256_set1_epi32(x4[2 * k + 1]));
        s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_add_epi16(lo, hi), ones));
      }
      const __m256 dw =
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + kQ4PanelCodeBytes + h * 16)));
      acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_set1_ps(xd[b * 8])), acc[h]);
    }
  }
  _mm256_storeu_ps(out, acc[0]);
  _mm256_storeu_ps(out + 8, acc[1]);
}

#ifdef PRICER_Q8_AVX512
// One block of a Q4_0 panel (q4_0_panel_avx2 above, 16 rows per register): acc += the rows' int32
// sums times both scales. Low and high nibbles sum apart, two chains of 4 dependent instructions.
inline __m512 q4_panel_block_fma(const uint8_t* c, const int8_t* xq, float xd, int32_t start, __m512 acc) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  std::array<int32_t, 8> x4{};
  std::memcpy(x4.data(), xq, kBlock);
  _mm_prefetch(reinterpret_cast<const char*>(c) + kPrefetchBytes, _MM_HINT_T0);
  __m512i lo = _mm512_set1_epi32(start), hi = _mm512_setzero_si512();
  for (int64_t k = 0; k < kQ4PanelChunks; ++k) {
    const __m512i z = _mm512_loadu_si512(c + k * 64);
    lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(z, m4), _mm512_set1_epi32(x4[2 * k]));
    hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(_mm512_srli_epi16(z, 4), m4), _mm512_set1_epi32(x4[2 * k + 1]));
  }
  const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + kQ4PanelCodeBytes)));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(lo, hi)), _mm512_mul_ps(dw, _mm512_set1_ps(xd)), acc);
}

void q4_0_panel_avx512(const uint8_t* panel, int64_t nb, const int8_t* xq, const float* xd, const int32_t* start,
                       float* out) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    acc0 = q4_panel_block_fma(panel + b * kQ4PanelBlockBytes, xq + b * kBlock, xd[b * 8], start[b], acc0);
    acc1 = q4_panel_block_fma(panel + (b + 1) * kQ4PanelBlockBytes, xq + (b + 1) * kBlock, xd[(b + 1) * 8],
                              start[b + 1], acc1);
  }
  if (b < nb) acc0 = q4_panel_block_fma(panel + b * kQ4PanelBlockBytes, xq + b * kBlock, xd[b * 8], start[b], acc0);
  _mm512_storeu_ps(out, _mm512_add_ps(acc0, acc1));
}
#endif

// One 16-row panel of one weight against one token: what the panel kernels read.
struct PanelTask {
  const Weight* W;
  int64_t p;  // the panel: rows [16p, 16p + 16)
  const int8_t* xq;  // the token's activations
  const float* xd;  // their scales, 8 lanes per 32 values
  const int32_t* start;  // their start values, one per weight block
};
using PanelDot = void (*)(const PanelTask&, float* out);

// A Q4_0 panel kernel above as a PanelDot.
template <void (*Kernel)(const uint8_t*, int64_t, const int8_t*, const float*, const int32_t*, float*)>
void q4_0_panel(const PanelTask& k, float* out) {
  const int64_t nb = k.W->cols() / kBlock;
  Kernel(k.W->raw().data() + k.p * nb * kQ4PanelBlockBytes, nb, k.xq, k.xd, k.start, out);
}

// Per 32-bit lane of an int32 vector, summed exactly.
inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// NF4 on 256-bit registers, int16 products (unsigned-by-signed byte products would overflow).
// Each half of a block: its 32 nibbles as int16 code values, times the int8 activations.
inline __m256i nf4_half_avx2(__m256i nib, const int8_t* xq, __m256i byte0, __m256i byte1) {
  const __m256i v0 = _mm256_shuffle_epi8(byte0, nib), v1 = _mm256_shuffle_epi8(byte1, nib);
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
  const __m256i xs = _mm256_cmpgt_epi8(_mm256_setzero_si256(), x);
  return _mm256_add_epi32(_mm256_madd_epi16(_mm256_unpacklo_epi8(v0, v1), _mm256_unpacklo_epi8(x, xs)),
                          _mm256_madd_epi16(_mm256_unpackhi_epi8(v0, v1), _mm256_unpackhi_epi8(x, xs)));
}

// NF4 in panels (quant/nf4_panels.h) on 256-bit registers: each row's 32 bytes of a block taken
// from the chunks, then its evens and odds against the activations in NF4 order.
void nf4_panel_avx2(const PanelTask& k, float* out) {
  const Nf4Bytes& nb4 = nf4_bytes();
  const __m256i byte0 = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(nb4.byte0.data())));
  const __m256i byte1 = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(nb4.byte1.data())));
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const int64_t nb = k.W->cols() / kNf4BlockSize, row0 = k.p * kNf4PanelRows;
  const int64_t rows = std::min(kNf4PanelRows, k.W->rows() - row0);
  const uint8_t* panel = k.W->raw().data() + k.p * nf4_panel_stride(k.W->cols());
  std::fill(out, out + kNf4PanelRows, 0.0f);
  alignas(32) std::array<uint8_t, kNf4BlockSize / 2> bytes{};
  std::array<float, kNf4PanelRows> absmax{};
  for (int64_t b = 0; b < nb; ++b) {
    const int8_t* xq = k.xq + b * kNf4BlockSize;
    const float xd = k.xd[b * 16] * (1.0f / kNf4Unit);
    nf4_panel_absmax(panel, k.W->nf4(), k.W->rows(), k.W->cols(), row0, b, absmax.data());
    for (int64_t r = 0; r < rows; ++r) {
      nf4_panel_row_bytes(nf4_panel_block(panel, b), r, bytes.data());
      const __m256i q = _mm256_load_si256(reinterpret_cast<const __m256i*>(bytes.data()));
      const __m256i evens = nf4_half_avx2(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), xq, byte0, byte1);
      const __m256i odds = nf4_half_avx2(_mm256_and_si256(q, m4), xq + kBlock, byte0, byte1);
      out[r] += absmax[r] * xd * static_cast<float>(hsum_epi32(_mm256_add_epi32(evens, odds)));
    }
  }
}

#if defined(PRICER_Q8_AVX512) && defined(__AVX512VBMI__)
#define PRICER_NF4_AVX512 1  // its absmax lookups permute bytes across the register (AVX512-VBMI)
// The signed dynamic map (absmax codes to values) as 4 byte planes: byte p of the f32 value of
// code c is entry c of plane p, each plane's 256 bytes held in four registers.
struct MapPlanes {
  __m512i t[4][4];  // NOLINT(*-avoid-c-arrays): std::array drops the vector type's alignment attribute
};
MapPlanes map_planes() {
  static const auto bytes = [] {
    std::array<std::array<uint8_t, 256>, 4> b{};
    const auto& map = dynamic_map_signed();
    for (size_t c = 0; c < map.size(); ++c) {
      uint32_t u = 0;
      std::memcpy(&u, &map[c], 4);
      for (size_t p = 0; p < 4; ++p) b[p][c] = static_cast<uint8_t>(u >> (8 * p));
    }
    return b;
  }();
  MapPlanes m{};
  for (size_t p = 0; p < 4; ++p)
    for (size_t q = 0; q < 4; ++q) m.t[p][q] = _mm512_loadu_si512(bytes[p].data() + 64 * q);
  return m;
}

// The map's values of one group's 64 absmax codes: each byte looked up in its plane (two
// 128-entry byte permutes, chosen by the code's top bit), the planes then interleaved back into
// floats, which leaves block k's 16 rows in register k, a lane per row (the order the panels hold
// the codes in).
struct GroupAbsmax {
  __m512 block[4];  // NOLINT(*-avoid-c-arrays): as MapPlanes
};
inline GroupAbsmax map_values(const uint8_t* codes, const MapPlanes& m) {
  const __m512i idx = _mm512_loadu_si512(codes);
  const __mmask64 top = _mm512_movepi8_mask(idx);
  __m512i plane[4];  // NOLINT(*-avoid-c-arrays): as MapPlanes
  for (size_t p = 0; p < 4; ++p)
    plane[p] = _mm512_mask_blend_epi8(top, _mm512_permutex2var_epi8(m.t[p][0], idx, m.t[p][1]),
                                      _mm512_permutex2var_epi8(m.t[p][2], idx, m.t[p][3]));
  const __m512i b01l = _mm512_unpacklo_epi8(plane[0], plane[1]), b01h = _mm512_unpackhi_epi8(plane[0], plane[1]);
  const __m512i b23l = _mm512_unpacklo_epi8(plane[2], plane[3]), b23h = _mm512_unpackhi_epi8(plane[2], plane[3]);
  return {
      {_mm512_castsi512_ps(_mm512_unpacklo_epi16(b01l, b23l)), _mm512_castsi512_ps(_mm512_unpackhi_epi16(b01l, b23l)),
       _mm512_castsi512_ps(_mm512_unpacklo_epi16(b01h, b23h)), _mm512_castsi512_ps(_mm512_unpackhi_epi16(b01h, b23h))}};
}

// One NF4 panel block's 16 int32 sums: each chunk's high nibbles (even values) and low ones (odd),
// looked up as the code values' high and low bytes, against 4 activations broadcast to every lane;
// the high bytes' sums shifted by 8 onto the low ones' and the start value.
inline __m512i nf4_panel_block_sums(const uint8_t* c, const int8_t* xq, int32_t start, __m512i lut_hi, __m512i lut_lo) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  std::array<int32_t, 16> x4{};
  std::memcpy(x4.data(), xq, kNf4BlockSize);
  _mm_prefetch(reinterpret_cast<const char*>(c) + kPrefetchBytes, _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(c) + kPrefetchBytes + 64, _MM_HINT_T0);
  __m512i hi_e = _mm512_setzero_si512(), hi_o = _mm512_setzero_si512();
  __m512i lo_e = _mm512_set1_epi32(start), lo_o = _mm512_setzero_si512();
  for (size_t k = 0; k < kNf4PanelChunks; ++k) {
    const __m512i z = _mm512_loadu_si512(c + k * 64);
    const __m512i e = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4), o = _mm512_and_si512(z, m4);
    const __m512i xe = _mm512_set1_epi32(x4[k]), xo = _mm512_set1_epi32(x4[8 + k]);
    hi_e = _mm512_dpbusd_epi32(hi_e, _mm512_shuffle_epi8(lut_hi, e), xe);
    hi_o = _mm512_dpbusd_epi32(hi_o, _mm512_shuffle_epi8(lut_hi, o), xo);
    lo_e = _mm512_dpbusd_epi32(lo_e, _mm512_shuffle_epi8(lut_lo, e), xe);
    lo_o = _mm512_dpbusd_epi32(lo_o, _mm512_shuffle_epi8(lut_lo, o), xo);
  }
  return _mm512_add_epi32(_mm512_slli_epi32(_mm512_add_epi32(hi_e, hi_o), 8), _mm512_add_epi32(lo_e, lo_o));
}

// NF4 in panels against one token: per block the rows' sums times their absmax (map[code] x
// absmax scale + offset) and the activation scale. A row's absmax scale is gathered again only
// where its block crosses into the next 256 blocks of the flat tensor.
void nf4_panel_avx512(const PanelTask& k, float* out) {
  const Nf4Bytes& nb4 = nf4_bytes();
  const __m512i lut_hi = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(nb4.hi.data())));
  const __m512i lut_lo = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(nb4.lo.data())));
  const MapPlanes planes = map_planes();
  const Nf4Tensor& stats = k.W->nf4();
  const int64_t nb = k.W->cols() / kNf4BlockSize, row0 = k.p * kNf4PanelRows;
  const uint8_t* panel = k.W->raw().data() + k.p * nf4_panel_stride(k.W->cols());
  // Each row's first flat block (padding rows read row 0's scales: their sums are dropped).
  alignas(64) std::array<int32_t, kNf4PanelRows> first{};
  for (int64_t r = 0; r < kNf4PanelRows; ++r)
    first[r] = row0 + r < k.W->rows() ? static_cast<int32_t>((row0 + r) * nb) : 0;
  const __m512i base = _mm512_load_si512(first.data());
  const __m512 offset = _mm512_set1_ps(stats.absmax_offset);
  __m512i scale_at = _mm512_set1_epi32(-1);
  __m512 scale = _mm512_setzero_ps(), acc = _mm512_setzero_ps();
  GroupAbsmax mapped{};
  for (int64_t b = 0; b < nb; ++b) {
    if (b % kNf4PanelGroupBlocks == 0) mapped = map_values(nf4_panel_codes(panel, b), planes);
    const __m512i s =
        nf4_panel_block_sums(nf4_panel_block(panel, b), k.xq + b * kNf4BlockSize, k.start[b], lut_hi, lut_lo);
    const __m512i at = _mm512_srli_epi32(_mm512_add_epi32(base, _mm512_set1_epi32(static_cast<int32_t>(b))), 8);
    if (_mm512_cmpneq_epi32_mask(at, scale_at) != 0) {
      scale = _mm512_i32gather_ps(at, stats.absmax_scales.data(), 4);
      scale_at = at;
    }
    const __m512 absmax = _mm512_add_ps(_mm512_mul_ps(mapped.block[b % kNf4PanelGroupBlocks], scale), offset);
    acc = _mm512_fmadd_ps(_mm512_mul_ps(absmax, _mm512_set1_ps(k.xd[b * 16])), _mm512_cvtepi32_ps(s), acc);
  }
  _mm512_storeu_ps(out, _mm512_mul_ps(acc, _mm512_set1_ps(1.0f / kNf4Unit)));
}
#endif

// Each matrix's tiles of rows spread over the threads, one matrix after another with no barrier
// between them (a thread goes on to its share of the next as soon as it is done with this one);
// within a tile, tiles of tokens pass every row, so that a tile's weights and activations stay in
// cache together. row_dot(w, o, t) is row o of Ws[w] against token t's activations.
template <class RowDot>
void over_rows(std::span<const Weight* const> Ws, std::span<float* const> ys, int64_t n, float beta, RowDot row_dot) {
  constexpr int64_t kRows = 16, kTokens = 8;
#pragma omp parallel num_threads(threads())
  for (size_t w = 0; w < Ws.size(); ++w) {
    const int64_t out = Ws[w]->rows();
    float* y = ys[w];
#pragma omp for schedule(static) nowait
    for (int64_t o0 = 0; o0 < out; o0 += kRows)
      for (int64_t t0 = 0; t0 < n; t0 += kTokens)
        for (int64_t o = o0; o < std::min(out, o0 + kRows); ++o)
          for (int64_t t = t0; t < std::min(n, t0 + kTokens); ++t) {
            const float s = row_dot(w, o, t);
            float& dst = y[t * out + o];
            dst = beta == 0.0f ? s : s + beta * dst;
          }
  }
}

// Panels (Q4_0's and NF4's, both of 16 rows) spread over the threads as over_rows spreads rows;
// within one, every token takes the panel's rows while they stay in cache.
static_assert(kQ4PanelRows == kNf4PanelRows, "one panel walk for both formats");
void over_panels(std::span<const Weight* const> Ws, std::span<float* const> ys, int64_t n, float beta,
                 const Activations& a, PanelDot panel_dot) {
  const int64_t in = Ws[0]->cols(), starts = n > 0 ? static_cast<int64_t>(a.start.size()) / n : 0;
#pragma omp parallel num_threads(threads())
  for (size_t w = 0; w < Ws.size(); ++w) {
    const int64_t out = Ws[w]->rows();
#pragma omp for schedule(static) nowait
    for (int64_t p = 0; p < q4_panel_count(out); ++p) {
      const int64_t r0 = p * kQ4PanelRows, rows = std::min(kQ4PanelRows, out - r0);
      for (int64_t t = 0; t < n; ++t) {
        alignas(64) std::array<float, kQ4PanelRows> sums{};
        panel_dot({Ws[w], p, a.q.data() + t * in, a.d.data() + t * in / kBlock * 8, a.start.data() + t * starts},
                  sums.data());
        float* dst = ys[w] + t * out + r0;
        for (int64_t r = 0; r < rows; ++r) dst[r] = beta == 0.0f ? sums[r] : sums[r] + beta * dst[r];
      }
    }
  }
}

using BlockDot = float (*)(const uint8_t*, const int8_t*, const float*, int64_t);

// The kernel `isa` names for W's format (a row kernel or a panel kernel), and the activation
// layout it reads.
struct Kernels {
  BlockDot block = nullptr;
  PanelDot panel = nullptr;
  Layout layout = Layout::Plain;
};
Kernels kernels_for(DType t, Q8Isa isa) {
  require(q8_isa_built(isa), "q8 linear: this build has no AVX-512 VNNI kernel");
#ifdef PRICER_Q8_AVX512
  if (isa == Q8Isa::Avx512) {
    if (t == DType::Q8_0) return {dot_q8_0_avx512, nullptr, Layout::Plain};
    if (t == DType::Q4_0) return {nullptr, q4_0_panel<q4_0_panel_avx512>, Layout::Q4Panels};
#ifdef PRICER_NF4_AVX512
    return {nullptr, nf4_panel_avx512, Layout::Nf4Panels};
#endif
  }
#endif
  if (t == DType::Q8_0) return {dot_q8_0_avx2, nullptr, Layout::Plain};
  if (t == DType::Q4_0) return {nullptr, q4_0_panel<q4_0_panel_avx2>, Layout::Q4Panels};
  return {nullptr, nf4_panel_avx2, Layout::Nf4Panels};
}

}  // namespace

bool takes_q8_activations(const Weight& W) {
  const DType t = W.dtype();
  return t == DType::Q8_0 || t == DType::Q4_0 || (t == DType::NF4 && nf4_takes_panels(W.cols()));
}

bool prefers_q8_gemm(const Weight& W, int64_t n) {
  constexpr int64_t kQ4_0From = 2, kQ8_0From = 7;  // measured crossovers (q8_dot.h)
  return q8_gemm_takes(W) && n >= (W.dtype() == DType::Q4_0 ? kQ4_0From : kQ8_0From);
}

bool takes_integer_path(const Weight& W, int64_t n) {
  return takes_q8_activations(W) && (n <= kQ8MaxTokens || q8_gemm_takes(W));
}

void round_activations(const float* x, int64_t in, int8_t* q, float* d) {
  const BlockRounder block = block_rounder(/*simd=*/true);
  for (int64_t b = 0; b < in / kBlock; ++b) block(x + b * kBlock, kBlock, q + b * kBlock, d + b, 1);
}

bool q8_isa_built(Q8Isa isa) {
#ifdef PRICER_Q8_AVX512
  return isa == Q8Isa::Avx2 || isa == Q8Isa::Avx512;
#else
  return isa == Q8Isa::Avx2;
#endif
}

namespace {

// y[i] = x Ws[i]^T + beta y[i] for weights of one format and width: x rounded once for all.
void forward_many(std::span<const Weight* const> Ws, const float* x, std::span<float* const> ys, int64_t n, float beta,
                  Q8Isa isa) {
  const DType t = Ws[0]->dtype();
  const int64_t in = Ws[0]->cols(), nb = in / kBlock;
  for (const Weight* W : Ws) {
    check_weight(*W);
    require(W->dtype() == t && W->cols() == in, "q8 linears: weights of one input share its format and width");
  }
  const Kernels k = kernels_for(t, isa);
  thread_local Activations mine;  // the calling thread's, reused from call to call
  Activations& a = mine;  // a reference the worker threads share (a thread_local is their own)
  quantize_rows(x, n, in, t == DType::NF4, k.layout, a);
  if (k.panel != nullptr) {
    over_panels(Ws, ys, n, beta, a, k.panel);
  } else {
    over_rows(Ws, ys, n, beta, [&](size_t w, int64_t o, int64_t i) {
      return k.block(Ws[w]->raw().data() + o * nb * kQ8Bytes, a.q.data() + i * in, a.d.data() + i * nb * 8, nb);
    });
  }
}

}  // namespace

void q8_linear_forward(const Weight& W, const float* x, float* y, int64_t n, float beta, Q8Isa isa) {
  const std::array<const Weight*, 1> Ws{&W};
  const std::array<float*, 1> ys{y};
  forward_many(Ws, x, ys, n, beta, isa);
}

void q8_linears_forward(std::span<const Weight* const> Ws, const float* x, std::span<float* const> ys, int64_t n,
                        Q8Isa isa) {
  require(!Ws.empty() && Ws.size() == ys.size(), "q8 linears: one output per weight");
  forward_many(Ws, x, ys, n, 0.0f, isa);
}

void q8_linear_forward_reference(const Weight& W, const float* x, float* y, int64_t n, float beta) {
  check_weight(W);
  const bool nf4 = W.dtype() == DType::NF4;
  const int64_t out = W.rows(), in = W.cols(), nb = in / kBlock;
  std::vector<int8_t> q(static_cast<size_t>(in));
  std::vector<float> d(static_cast<size_t>(nb * 8));
  // ggml's and bitsandbytes' layouts, row by row: panels regrouped back (the twin never reads them).
  const std::vector<uint8_t> unpacked = W.dtype() == DType::Q4_0 ? W.file_bytes() : std::vector<uint8_t>{};
  const uint8_t* blocks = W.dtype() == DType::Q4_0 ? unpacked.data() : W.raw().data();
  const Nf4Tensor flat = nf4 ? W.nf4_flat() : Nf4Tensor{};
  for (int64_t t = 0; t < n; ++t) {
    quantize_row(x + t * in, in, nf4, q.data(), d.data(), /*simd=*/false);
    for (int64_t o = 0; o < out; ++o) {
      const float s =
          nf4 ? dot_nf4_reference(flat, o * (in / kNf4BlockSize), q.data(), d.data(), in / kNf4BlockSize)
              : dot_reference(W.dtype(), blocks + o * nb * weight_block_bytes(W.dtype()), q.data(), d.data(), nb);
      y[t * out + o] = beta == 0.0f ? s : s + beta * y[t * out + o];
    }
  }
}

}  // namespace pricer::kernels
