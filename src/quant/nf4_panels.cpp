#include "quant/nf4_panels.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "quant/half.h"

namespace pricer {

namespace {

constexpr int64_t kPackedBlockBytes = kNf4BlockSize / 2;  // 32

void check_shape(int64_t rows, int64_t cols, int64_t numel, const char* what) {
  require(rows >= 0 && nf4_takes_panels(cols) && rows * cols == numel,
          std::string(what) + ": " + std::to_string(rows) + " x " + std::to_string(cols) +
              " is not a tensor of rows of whole blocks of 64 (" + std::to_string(numel) + " elements)");
}

}  // namespace

std::vector<uint8_t> nf4_to_panels(const Nf4Tensor& t, int64_t rows, int64_t cols) {
  check_shape(rows, cols, t.numel, "nf4 panels");
  const int64_t nb = cols / kNf4BlockSize, stride = nf4_panel_stride(cols);
  std::vector<uint8_t> out(static_cast<size_t>(nf4_panel_bytes(rows, cols)), 0);
  // Each row writes bytes of its own (the last panel's padding stays zero).
#pragma omp parallel for schedule(static) num_threads(threads())
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t r = row % kNf4PanelRows;
    uint8_t* panel = out.data() + row / kNf4PanelRows * stride;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t flat = row * nb + b;
      const uint8_t* src = t.packed.data() + flat * kPackedBlockBytes;
      uint8_t* block = panel + (nf4_panel_block(panel, b) - panel);
      for (int64_t k = 0; k < kNf4PanelChunks; ++k) std::memcpy(block + k * 64 + 4 * r, src + 4 * k, 4);
      panel[nf4_panel_codes(panel, b) - panel + nf4_panel_code_index(r, b)] = t.absmax_codes[flat];
    }
  }
  return out;
}

Nf4Tensor nf4_from_panels(const uint8_t* panels, int64_t rows, int64_t cols, const Nf4Tensor& stats) {
  check_shape(rows, cols, stats.numel, "nf4 from panels");
  const int64_t nb = cols / kNf4BlockSize, stride = nf4_panel_stride(cols);
  Nf4Tensor t;
  t.numel = stats.numel;
  t.absmax_scales = stats.absmax_scales;
  t.absmax_offset = stats.absmax_offset;
  t.packed.resize(static_cast<size_t>(t.numel / 2));
  t.absmax_codes.resize(static_cast<size_t>(rows * nb));
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t r = row % kNf4PanelRows;
    const uint8_t* panel = panels + row / kNf4PanelRows * stride;
    for (int64_t b = 0; b < nb; ++b) {
      nf4_panel_row_bytes(nf4_panel_block(panel, b), r, t.packed.data() + (row * nb + b) * kPackedBlockBytes);
      t.absmax_codes[static_cast<size_t>(row * nb + b)] = nf4_panel_codes(panel, b)[nf4_panel_code_index(r, b)];
    }
  }
  return t;
}

void nf4_panel_absmax(const uint8_t* panel, const Nf4Tensor& stats, int64_t rows, int64_t cols, int64_t row0, int64_t b,
                      float* out) {
  const int64_t nb = cols / kNf4BlockSize;
  const uint8_t* codes = nf4_panel_codes(panel, b);
#if defined(__AVX512F__)
  if (row0 + kNf4PanelRows <= rows) {
    // nf4_absmax_of for the 16 rows at once: the product and the sum rounded one at a time, as
    // there (explicitly rounded operations are never fused into one FMA).
    alignas(64) std::array<int32_t, kNf4PanelRows> code{};
    alignas(64) std::array<float, kNf4PanelRows> scale{};
    for (int64_t r = 0; r < kNf4PanelRows; ++r) {
      code[r] = codes[nf4_panel_code_index(r, b)];
      scale[r] = stats.absmax_scales[static_cast<size_t>(((row0 + r) * nb + b) / kNf4AbsmaxBlockSize)];
    }
    constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const __m512 mapped = _mm512_i32gather_ps(_mm512_load_si512(code.data()), dynamic_map_signed().data(), 4);
    const __m512 scaled = _mm512_mul_round_ps(mapped, _mm512_load_ps(scale.data()), kNearest);
    _mm512_storeu_ps(out, _mm512_add_round_ps(scaled, _mm512_set1_ps(stats.absmax_offset), kNearest));
    return;
  }
#endif
  for (int64_t r = 0; r < kNf4PanelRows; ++r) {
    const int64_t row = std::min(row0 + r, rows - 1);
    out[r] = nf4_absmax_of(codes[nf4_panel_code_index(r, b)],
                           stats.absmax_scales[static_cast<size_t>((row * nb + b) / kNf4AbsmaxBlockSize)],
                           stats.absmax_offset);
  }
}

void nf4_panel_order(const float* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i)
    out[i / kNf4BlockSize * kNf4BlockSize + i % 2 * kNf4BlockSize / 2 + i % kNf4BlockSize / 2] = x[i];
}

void nf4_panel_row_bytes(const uint8_t* block, int64_t r, uint8_t* out) {
  // One gather and one store: eight 4-byte stores would stall the 32-byte load that reads them next.
  const __m256i at = _mm256_setr_epi32(0, 64, 128, 192, 256, 320, 384, 448);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                      _mm256_i32gather_epi32(reinterpret_cast<const int*>(block + 4 * r), at, 1));
}

namespace {

// Row r of a panel's block b in f32 (out[64]).
void dequantize_panel_row(const uint8_t* panel, const Nf4Tensor& stats, int64_t nb, int64_t row, int64_t b,
                          float* out) {
  const int64_t r = row % kNf4PanelRows;
  const uint8_t code = nf4_panel_codes(panel, b)[nf4_panel_code_index(r, b)];
  const float amax =
      nf4_absmax_of(code, stats.absmax_scales[(row * nb + b) / kNf4AbsmaxBlockSize], stats.absmax_offset);
  alignas(32) std::array<uint8_t, kPackedBlockBytes> bytes{};
  nf4_panel_row_bytes(nf4_panel_block(panel, b), r, bytes.data());
  nf4_dequantize_block(bytes.data(), amax, out);
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
// 16 values, the first 8 to row a, the rest to row b: as they are, or rounded to bf16 as
// f32_to_bf16 rounds finite values (NF4 values are finite).
inline void store_rows(__m512 v, float* a, float* b) {
  _mm256_storeu_ps(a, _mm512_castps512_ps256(v));
  _mm256_storeu_ps(b, _mm512_extractf32x8_ps(v, 1));
}
// 16 finite f32 values rounded to bf16 as f32_to_bf16 rounds them (to nearest, ties to even).
inline __m256i round_to_bf16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  return _mm512_cvtepi32_epi16(
      _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd)), 16));
}
inline void store_rows(__m512 v, uint16_t* a, uint16_t* b) {
  const __m256i h = round_to_bf16(v);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(a), _mm256_castsi256_si128(h));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(b), _mm256_extracti128_si256(h, 1));
}

template <class Out>
void dequantize_panel_quad(const uint8_t* panel, int64_t b, int64_t q, const float* absmax, int64_t cols, Out* out) {
  const __m512 values = _mm512_loadu_ps(nf4_code().data());
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const uint8_t* c = nf4_panel_block(panel, b);
  const __m512 a01 = _mm512_insertf32x8(_mm512_set1_ps(absmax[4 * q]), _mm256_set1_ps(absmax[4 * q + 1]), 1);
  const __m512 a23 = _mm512_insertf32x8(_mm512_set1_ps(absmax[4 * q + 2]), _mm256_set1_ps(absmax[4 * q + 3]), 1);
  for (int64_t k = 0; k < kNf4PanelChunks; ++k) {
    // A byte's high nibble is the first of its two values.
    const __m128i z = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + k * 64 + q * 16));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(z, 4), m4), lo = _mm_and_si128(z, m4);
    const __m512 v01 =
        _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(hi, lo)), values), a01);
    const __m512 v23 =
        _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(hi, lo)), values), a23);
    store_rows(v01, out + 8 * k, out + cols + 8 * k);
    store_rows(v23, out + 2 * cols + 8 * k, out + 3 * cols + 8 * k);
  }
}

#if defined(__AVX512BW__)
// The 16 code values times each of two rows' absmax, rounded to bf16 as store_rows rounds them:
// a table of 32 bf16 (row a's 16, then row b's) for one 16-bit lookup instruction.
inline __m512i bf16_code_table(float amax_a, float amax_b) {
  const __m512 values = _mm512_loadu_ps(nf4_code().data());
  const auto row = [&](float amax) { return round_to_bf16(_mm512_mul_ps(values, _mm512_set1_ps(amax))); };
  return _mm512_inserti64x4(_mm512_castsi256_si512(row(amax_a)), row(amax_b), 1);
}

// Rows 4q..4q+3 of block b in bf16, straight from per-row tables of the 16 products code x absmax
// (the same f32 product and rounding as dequantize_panel_quad, so the same bits): two chunks at a
// time, each row's 16 consecutive values one lookup's half.
inline void dequantize_panel_quad_bf16(const uint8_t* panel, int64_t b, int64_t q, const float* absmax, int64_t cols,
                                       uint16_t* out) {
  const __m512i table01 = bf16_code_table(absmax[4 * q], absmax[4 * q + 1]);
  const __m512i table23 = bf16_code_table(absmax[4 * q + 2], absmax[4 * q + 3]);
  // Lanes 16..31 hold the second row of a pair: its entries sit 16 further in the table.
  const __m512i second_row = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(16), 1);
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const uint8_t* c = nf4_panel_block(panel, b);
  const auto nibbles = [&](int64_t k) {  // rows 0-1 then rows 2-3 of chunk k, a value per byte
    const __m128i z = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + k * 64 + q * 16));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(z, 4), m4), lo = _mm_and_si128(z, m4);
    return std::pair{_mm_unpacklo_epi8(hi, lo), _mm_unpackhi_epi8(hi, lo)};
  };
  const auto lookup = [&](__m128i first, __m128i second, __m512i table, uint16_t* row) {
    const __m256i idx8 = _mm256_inserti128_si256(_mm256_castsi128_si256(first), second, 1);
    const __m512i v = _mm512_permutexvar_epi16(_mm512_add_epi16(_mm512_cvtepu8_epi16(idx8), second_row), table);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(row), _mm512_castsi512_si256(v));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + cols), _mm512_extracti64x4_epi64(v, 1));
  };
  for (int64_t k = 0; k < kNf4PanelChunks; k += 2) {
    const auto [a01, a23] = nibbles(k);
    const auto [b01, b23] = nibbles(k + 1);
    // Row 0's 8 values of chunk k then of chunk k + 1 (16 consecutive values), then row 1's.
    lookup(_mm_unpacklo_epi64(a01, b01), _mm_unpackhi_epi64(a01, b01), table01, out + 8 * k);
    lookup(_mm_unpacklo_epi64(a23, b23), _mm_unpackhi_epi64(a23, b23), table23, out + 2 * cols + 8 * k);
  }
}
#endif

// A whole panel (its 16 rows to out, every cols), 4 rows at a time: 16 rows a power of two apart
// written at once fall into one cache set and evict each other.
template <class Out>
void dequantize_panel(const uint8_t* panel, const Nf4Tensor& stats, int64_t nb, int64_t row0, int64_t cols, Out* out) {
  thread_local std::vector<float> absmax;
  absmax.resize(static_cast<size_t>(nb * kNf4PanelRows));
  for (int64_t b = 0; b < nb; ++b)
    nf4_panel_absmax(panel, stats, row0 + kNf4PanelRows, cols, row0, b, absmax.data() + b * kNf4PanelRows);
  for (int64_t q = 0; q < 4; ++q)
    for (int64_t b = 0; b < nb; ++b) {
      const float* block_absmax = absmax.data() + b * kNf4PanelRows;
      Out* dst = out + 4 * q * cols + b * kNf4BlockSize;
#if defined(__AVX512BW__)
      if constexpr (std::is_same_v<Out, uint16_t>) {
        dequantize_panel_quad_bf16(panel, b, q, block_absmax, cols, dst);
        continue;
      }
#endif
      dequantize_panel_quad(panel, b, q, block_absmax, cols, dst);
    }
}
#endif

// One row's blocks (the path of rows outside whole panels), as they are or rounded to bf16.
void dequantize_row(const uint8_t* panel, const Nf4Tensor& stats, int64_t nb, int64_t row, float* out) {
  for (int64_t b = 0; b < nb; ++b) dequantize_panel_row(panel, stats, nb, row, b, out + b * kNf4BlockSize);
}
void dequantize_row(const uint8_t* panel, const Nf4Tensor& stats, int64_t nb, int64_t row, uint16_t* out) {
  std::array<float, kNf4BlockSize> values{};
  for (int64_t b = 0; b < nb; ++b) {
    dequantize_panel_row(panel, stats, nb, row, b, values.data());
    for (int64_t j = 0; j < kNf4BlockSize; ++j) out[b * kNf4BlockSize + j] = f32_to_bf16(values[j]);
  }
}

template <class Out>
void dequantize_rows(const uint8_t* panels, const Nf4Tensor& stats, int64_t cols, int64_t r0, int64_t nr, Out* out) {
  const int64_t nb = cols / kNf4BlockSize, stride = nf4_panel_stride(cols);
  for (int64_t row = r0; row < r0 + nr;) {
    const uint8_t* panel = panels + row / kNf4PanelRows * stride;
    Out* dst = out + (row - r0) * cols;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    if (row % kNf4PanelRows == 0 && row + kNf4PanelRows <= r0 + nr) {  // a whole panel in the band
      dequantize_panel(panel, stats, nb, row, cols, dst);
      row += kNf4PanelRows;
      continue;
    }
#endif
    dequantize_row(panel, stats, nb, row, dst);
    ++row;
  }
}

}  // namespace

void nf4_panels_dequantize(const uint8_t* panels, const Nf4Tensor& stats, int64_t cols, int64_t r0, int64_t nr,
                           float* out) {
  dequantize_rows(panels, stats, cols, r0, nr, out);
}

void nf4_panels_dequantize_bf16(const uint8_t* panels, const Nf4Tensor& stats, int64_t cols, int64_t r0, int64_t nr,
                                uint16_t* out) {
  dequantize_rows(panels, stats, cols, r0, nr, out);
}

}  // namespace pricer
