#include "quant/q4_panels.h"

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
  for (int64_t row = r0; row < r0 + nr; ++row, out += cols) {
    const int64_t p = row / kQ4PanelRows, r = row % kQ4PanelRows;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* pb = q4_panel_block(panels, nb, p, b);
      const float d = f16_to_f32(f16_bits_at(pb + kQ4PanelCodeBytes + 2 * r));
      float* o = out + b * 32;
      for (int64_t k = 0; k < kQ4PanelChunks; ++k)
        for (int64_t i = 0; i < 4; ++i) {
          const uint8_t byte = pb[k * 64 + 4 * r + i];
          o[8 * k + i] = static_cast<float>((byte & 0x0F) - 8) * d;
          o[8 * k + 4 + i] = static_cast<float>((byte >> 4) - 8) * d;
        }
    }
  }
}

}  // namespace pricer
