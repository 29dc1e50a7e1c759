#pragma once
// How Q4_0 weights are held in memory: the bytes of ggml's blocks, regrouped so that one token's
// pass reads 16 rows at once. A panel is 16 consecutive rows; for each block of 32 values it holds
//   4 chunks of 64 bytes: chunk k, byte 4r + i holds value 8k + i of row r in its low nibble and
//                         value 8k + 4 + i in its high nibble (nibbles as Q4_0 stores them: value + 8)
//   16 f16 scales, one per row
// = 288 bytes, the same 18 bytes per row and block as the file. A 512-bit register of a chunk's
// low (or high) nibbles is then 4 values of each of 16 rows: what one dot-product instruction
// takes against 4 activations broadcast to every lane, with a lane per row. The last panel of a
// matrix whose rows are not a multiple of 16 is padded with zero rows (scale 0).
#include <cstdint>
#include <vector>

namespace pricer {

inline constexpr int64_t kQ4PanelRows = 16;
inline constexpr int64_t kQ4PanelChunks = 4;
inline constexpr int64_t kQ4PanelCodeBytes = kQ4PanelChunks * 64;
inline constexpr int64_t kQ4PanelBlockBytes = kQ4PanelCodeBytes + kQ4PanelRows * 2;  // 288

inline int64_t q4_panel_count(int64_t rows) { return (rows + kQ4PanelRows - 1) / kQ4PanelRows; }
// Bytes of a rows x cols matrix in panels (cols a multiple of 32).
inline int64_t q4_panel_bytes(int64_t rows, int64_t cols) {
  return q4_panel_count(rows) * (cols / 32) * kQ4PanelBlockBytes;
}
// Where block b of panel p starts (nb = cols / 32).
inline const uint8_t* q4_panel_block(const uint8_t* panels, int64_t nb, int64_t p, int64_t b) {
  return panels + (p * nb + b) * kQ4PanelBlockBytes;
}

// ggml Q4_0 rows (rows x cols / 32 blocks of 18 bytes) into panels, and back.
std::vector<uint8_t> q4_0_to_panels(const uint8_t* blocks, int64_t rows, int64_t cols);
std::vector<uint8_t> q4_0_from_panels(const uint8_t* panels, int64_t rows, int64_t cols);

// Rows [r0, r0 + nr) of a panel matrix in f32: out[nr * cols].
void q4_panels_dequantize(const uint8_t* panels, int64_t cols, int64_t r0, int64_t nr, float* out);

}  // namespace pricer
