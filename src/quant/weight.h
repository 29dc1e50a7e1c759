#pragma once
// A 2-D weight matrix W [rows = out_features, cols = in_features], row-major as in Hugging Face
// (nn.Linear stores [out, in]), held in one storage format. Kernels never need a whole f32 copy of
// a quantized weight: they ask for a band of rows at a time (dequantize_rows) into a small tile.
#include <cstdint>
#include <vector>

#include "quant/dtype.h"
#include "quant/nf4.h"

namespace pricer {

class Weight {
 public:
  Weight() = default;

  // Quantizes/converts an f32 matrix into the target format (F32, BF16, F16, NF4, Q8_0, Q4_0,
  // Q4_K, Q6_K). Block formats need cols to be a multiple of their block (32 or 256); every
  // target but F32 rejects non-finite values. Throws Error.
  static Weight from_f32(const float* data, int64_t rows, int64_t cols, DType target);
  // Adopts raw ggml block data (Q8_0, Q4_0, Q4_K, Q6_K, F16, BF16, or F32) as read from a GGUF
  // file (layouts in quant/ggml_blocks.h). Throws Error if the byte count does not match
  // rows x cols, cols is not a multiple of the block size, or a block's scale is not finite.
  static Weight from_raw(DType type, int64_t rows, int64_t cols, std::vector<uint8_t> raw);

  DType dtype() const { return dtype_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t numel() const { return rows_ * cols_; }
  size_t bytes() const;  // memory held

  // out[nr * cols] = rows [r0, r0 + nr) in f32.
  void dequantize_rows(int64_t r0, int64_t nr, float* out) const;
  std::vector<float> to_f32() const;  // whole matrix; for tests and export only

  // The bytes a GGUF file holds for it (F16, BF16 and the block formats), in ggml's layout.
  std::vector<uint8_t> file_bytes() const;

  // Direct access for the kernels of each format.
  const std::vector<float>& f32() const { return f32_; }
  std::vector<float>& f32() { return f32_; }  // trainable in full-parameter mode
  // F16/BF16 (2 bytes/elem) or ggml blocks as stored, but for Q4_0: 16-row panels of the same
  // blocks (quant/q4_panels.h), the layout its one-token kernels read fastest; for NF4 in rows of
  // whole 64-blocks, the panels of quant/nf4_panels.h (empty otherwise).
  const std::vector<uint8_t>& raw() const { return raw_; }
  // NF4: the flat tensor, or where raw() holds panels, only its absmax scales and offset.
  const Nf4Tensor& nf4() const { return nf4_; }
  // NF4: the whole flat tensor, bitsandbytes' layout (a copy where raw() holds panels).
  Nf4Tensor nf4_flat() const;

 private:
  DType dtype_ = DType::F32;
  int64_t rows_ = 0, cols_ = 0;
  std::vector<float> f32_;
  std::vector<uint8_t> raw_;
  Nf4Tensor nf4_;
};

}  // namespace pricer
