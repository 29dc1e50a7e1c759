#pragma once
// How NF4 weights whose rows are whole blocks of 64 are held in memory: the same codes as the flat
// bitsandbytes tensor (quant/nf4.h), regrouped so that one token's pass reads 16 rows at once, as
// Q4_0's panels do (quant/q4_panels.h). A panel is 16 consecutive rows; its blocks of 64 values
// come in groups of 4, each group
//   64 bytes: the 4 blocks' absmax codes, byte 16 (r / 4) + 4 (b % 4) + r % 4 for row r of block b
//             (the order in which four 128-bit lanes of byte lookups unpack into one f32 register
//             per block, a lane per row)
//   then per block 8 chunks of 64 bytes: chunk k, byte 4r + i = packed byte 4k + i of row r's block
//             (its high nibble element 8k + 2i, its low one 8k + 2i + 1)
// = 2112 bytes for 4 blocks (a last, shorter group holds fewer blocks behind its 64 bytes). The
// absmax scales (one per 256 blocks of the flat tensor) and the offset stay as they are. A
// 512-bit register of a chunk's high (or low) nibbles is 4 even (odd) values of each of 16 rows,
// what one dot-product instruction takes against 4 activations broadcast to every lane. The last
// panel of a matrix whose rows are not a multiple of 16 is padded with zero rows.
#include <cstdint>
#include <vector>

#include "quant/nf4.h"

namespace pricer {

inline constexpr int64_t kNf4PanelRows = 16;
inline constexpr int64_t kNf4PanelChunks = 8;
inline constexpr int64_t kNf4PanelBlockBytes = kNf4PanelChunks * 64;  // 512
inline constexpr int64_t kNf4PanelGroupBlocks = 4;
inline constexpr int64_t kNf4PanelGroupBytes = 64 + kNf4PanelGroupBlocks * kNf4PanelBlockBytes;  // 2112

// Whether a matrix of rows of `cols` values is held in panels: rows of whole blocks of 64.
inline bool nf4_takes_panels(int64_t cols) { return cols > 0 && cols % kNf4BlockSize == 0; }
inline int64_t nf4_panel_count(int64_t rows) { return (rows + kNf4PanelRows - 1) / kNf4PanelRows; }
// Bytes of one panel, and of a rows x cols matrix.
inline int64_t nf4_panel_stride(int64_t cols) {
  const int64_t nb = cols / kNf4BlockSize;
  return (nb + kNf4PanelGroupBlocks - 1) / kNf4PanelGroupBlocks * 64 + nb * kNf4PanelBlockBytes;
}
inline int64_t nf4_panel_bytes(int64_t rows, int64_t cols) { return nf4_panel_count(rows) * nf4_panel_stride(cols); }
// Within one panel: the absmax codes of block b's group, and block b's 8 chunks.
inline const uint8_t* nf4_panel_codes(const uint8_t* panel, int64_t b) {
  return panel + b / kNf4PanelGroupBlocks * kNf4PanelGroupBytes;
}
inline const uint8_t* nf4_panel_block(const uint8_t* panel, int64_t b) {
  return nf4_panel_codes(panel, b) + 64 + b % kNf4PanelGroupBlocks * kNf4PanelBlockBytes;
}
// Where row r's absmax code of block b sits in its group's 64 bytes.
inline int64_t nf4_panel_code_index(int64_t r, int64_t b) {
  return 16 * (r / 4) + 4 * (b % kNf4PanelGroupBlocks) + r % 4;
}

// A flat rows x cols tensor (cols a multiple of 64) into panels, and back: the flat tensor's
// absmax scales and offset come from `stats` (a tensor whose codes may be held in panels).
std::vector<uint8_t> nf4_to_panels(const Nf4Tensor& t, int64_t rows, int64_t cols);
Nf4Tensor nf4_from_panels(const uint8_t* panels, int64_t rows, int64_t cols, const Nf4Tensor& stats);

// The absmax of block b for the 16 rows of the panel starting at row0, as nf4_absmax rounds
// them: out[16]. Padding rows past `rows` (the matrix's) take its last row's scale.
void nf4_panel_absmax(const uint8_t* panel, const Nf4Tensor& stats, int64_t rows, int64_t cols, int64_t row0, int64_t b,
                      float* out);

// x[0, n) (n a multiple of 64) in the order a panel's chunks pair with: per block of 64, its even
// elements, then its odd ones.
void nf4_panel_order(const float* x, int64_t n, float* out);

// Row r's 32 packed bytes of one panel block, in the flat tensor's order.
void nf4_panel_row_bytes(const uint8_t* block, int64_t r, uint8_t* out);

// Rows [r0, r0 + nr) in f32, bit for bit what nf4_dequantize gives for the flat tensor:
// out[nr * cols].
void nf4_panels_dequantize(const uint8_t* panels, const Nf4Tensor& stats, int64_t cols, int64_t r0, int64_t nr,
                           float* out);
// The same rounded to bf16 as f32_to_bf16 rounds (quant/half.h), without an f32 copy of the rows
// where the build has AVX-512: what the bf16 GEMMs multiply.
void nf4_panels_dequantize_bf16(const uint8_t* panels, const Nf4Tensor& stats, int64_t cols, int64_t r0, int64_t nr,
                                uint16_t* out);

}  // namespace pricer
