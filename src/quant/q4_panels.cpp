#include "quant/q4_panels.h"

#include <immintrin.h>

#include <array>
#include <cstring>

#include "core/threads.h"
#include "quant/half.h"

namespace pricer {

namespace {

constexpr int64_t kBlockBytes = 18;  // ggml Q4_0: f16 d, u8 qs[16] (value j low nibble of byte j, j + 16 high)

// Value j (0..31) of a ggml block, as its nibble.
uint8_t ggml_nibble(const uint8_t* blk, int64_t j) { return j < 16 ? blk[2 + j] & 0x0F : blk[2 + j - 16] >> 4; }

// Value j of row r in a panel block, as its nibble.
uint8_t panel_nibble(const uint8_t* pb, int64_t r, int64_t j) {
  const int64_t k = j / 8, i = j % 4;
  const uint8_t byte = pb[k * 64 + 4 * r + i];
  return j % 8 < 4 ? byte & 0x0F : byte >> 4;
}

}  // namespace

std::vector<uint8_t> q4_0_to_panels(const uint8_t* blocks, int64_t rows, int64_t cols) {
  const int64_t nb = cols / 32;
  std::vector<uint8_t> out(static_cast<size_t>(q4_panel_bytes(rows, cols)), 0);
  // Each row writes bytes of its own (the last panel's padding stays zero): a model's weights are
  // regrouped on every thread as it loads.
#pragma omp parallel for schedule(static) num_threads(threads())
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t p = row / kQ4PanelRows, r = row % kQ4PanelRows;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = blocks + (row * nb + b) * kBlockBytes;
      uint8_t* pb = out.data() + (p * nb + b) * kQ4PanelBlockBytes;
      for (int64_t k = 0; k < kQ4PanelChunks; ++k)
        for (int64_t i = 0; i < 4; ++i)
          pb[k * 64 + 4 * r + i] =
              static_cast<uint8_t>(ggml_nibble(blk, 8 * k + i) | ggml_nibble(blk, 8 * k + 4 + i) << 4);
      std::memcpy(pb + kQ4PanelCodeBytes + 2 * r, blk, 2);
    }
  }
  return out;
}

std::vector<uint8_t> q4_0_from_panels(const uint8_t* panels, int64_t rows, int64_t cols) {
  const int64_t nb = cols / 32;
  std::vector<uint8_t> out(static_cast<size_t>(rows * nb * kBlockBytes));
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t p = row / kQ4PanelRows, r = row % kQ4PanelRows;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* pb = q4_panel_block(panels, nb, p, b);
      uint8_t* blk = out.data() + (row * nb + b) * kBlockBytes;
      std::memcpy(blk, pb + kQ4PanelCodeBytes + 2 * r, 2);
      for (int64_t j = 0; j < 16; ++j)
        blk[2 + j] = static_cast<uint8_t>(panel_nibble(pb, r, j) | panel_nibble(pb, r, j + 16) << 4);
    }
  }
  return out;
}

void q4_panels_dequantize(const uint8_t* panels, int64_t cols, int64_t r0, int64_t nr, float* out) {
  const int64_t nb = cols / 32;
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m256i eight = _mm256_set1_epi32(8);
  for (int64_t row = r0; row < r0 + nr; ++row, out += cols) {
    const int64_t p = row / kQ4PanelRows, r = row % kQ4PanelRows;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* pb = q4_panel_block(panels, nb, p, b);
      const __m256 d = _mm256_set1_ps(f16_to_f32(f16_bits_at(pb + kQ4PanelCodeBytes + 2 * r)));
      // The row's 4 bytes of each chunk; chunk k's low nibbles are values 8k..8k+3, its high ones 8k+4..8k+7.
      std::array<int32_t, kQ4PanelChunks> four{};
      for (int64_t k = 0; k < kQ4PanelChunks; ++k) std::memcpy(&four[k], pb + k * 64 + 4 * r, 4);
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(four.data()));
      const __m128i lo = _mm_and_si128(bytes, m4), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), m4);
      const __m128i first = _mm_unpacklo_epi32(lo, hi), second = _mm_unpackhi_epi32(lo, hi);  // values in order
      float* o = out + b * 32;
      auto put8 = [&](__m128i eight_values, float* dst) {
        const __m256i v = _mm256_sub_epi32(_mm256_cvtepu8_epi32(eight_values), eight);
        _mm256_storeu_ps(dst, _mm256_mul_ps(_mm256_cvtepi32_ps(v), d));
      };
      put8(first, o);
      put8(_mm_srli_si128(first, 8), o + 8);
      put8(second, o + 16);
      put8(_mm_srli_si128(second, 8), o + 24);
    }
  }
}

}  // namespace pricer
