#pragma once
// NF4 with double quantization, exactly as bitsandbytes defines it (Linear4bit, quant_type="nf4",
// compress_statistics=True):
//  - the tensor, flattened, is cut into blocks of 64; each block's absmax scales it to [-1, 1];
//    each value becomes the index of the nearest of the 16 NF4 code values, two per byte with the
//    first element in the high nibble;
//  - the absmax values (one per block), minus their mean (the offset), are quantized again
//    blockwise to 8 bits in blocks of 256 with bitsandbytes' signed dynamic map, each block of
//    256 keeping its own f32 absmax.
// Dequantization: absmax[b] = dynamic_map[absmax_codes[b]] * absmax_scales[b / 256] + offset,
// value = nf4_code[index] * absmax[b].
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace pricer {

inline constexpr int kNf4BlockSize = 64;
inline constexpr int kNf4AbsmaxBlockSize = 256;

// The 16 NF4 code values (bitsandbytes' table, ascending, index 7 == 0).
const std::array<float, 16>& nf4_code();
// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): 256 values.
const std::array<float, 256>& dynamic_map_signed();

struct Nf4Tensor {
  int64_t numel = 0;
  std::vector<uint8_t> packed;        // ceil(numel / 2) bytes
  std::vector<uint8_t> absmax_codes;  // one per block of 64
  std::vector<float> absmax_scales;   // one per 256 absmax values
  float absmax_offset = 0.0f;         // mean of the block absmax values

  size_t bytes() const { return packed.size() + absmax_codes.size() + absmax_scales.size() * 4 + 4; }
};

Nf4Tensor nf4_quantize(const float* x, int64_t n);
// The absmax of every block of 64, after double-quantization round trip (what dequant uses).
std::vector<float> nf4_block_absmax(const Nf4Tensor& t);
// out[count] = elements [first, first + count); first must be a multiple of 64.
void nf4_dequantize(const Nf4Tensor& t, int64_t first, int64_t count, float* out);
// Plain scalar twin of nf4_dequantize (same results, bit for bit); any first is accepted by both.
void nf4_dequantize_reference(const Nf4Tensor& t, int64_t first, int64_t count, float* out);

}  // namespace pricer
