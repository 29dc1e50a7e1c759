#pragma once
// NF4 with double quantization, exactly as bitsandbytes defines it (Linear4bit, quant_type="nf4",
// compress_statistics=True):
//  - the tensor, flattened, is cut into blocks of 64; each block's absmax scales it to [-1, 1];
//    each value becomes the index of the nearest of the 16 NF4 code values, two per byte with the
//    first element in the high nibble;
//  - the absmax values (one per block), minus their mean (the offset), are quantized again
//    blockwise to 8 bits in blocks of 256 with bitsandbytes' signed dynamic map, each block of
//    256 keeping its own f32 absmax.
// Rounding follows bitsandbytes' kernels: values are scaled by the float reciprocal of their
// absmax; a value exactly on a midpoint between two NF4 codes takes the lower one; an all-zero
// block scales by 1/0 and gets code 0 (-1) everywhere, so it dequantizes to minus its
// reconstructed absmax, which the double quantization may have moved off 0. The offset is the correctly rounded mean
// (torch's float32 mean may differ from it in the last bit, depending on its reduction order). Dequantization:
// absmax[b] = dynamic_map[absmax_codes[b]] * absmax_scales[b / 256] + offset, value = nf4_code[index] * absmax[b].
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
  std::vector<uint8_t> packed;  // ceil(numel / 2) bytes
  std::vector<uint8_t> absmax_codes;  // one per block of 64
  std::vector<float> absmax_scales;  // one per 256 absmax values
  float absmax_offset = 0.0f;  // mean of the block absmax values

  size_t bytes() const { return packed.size() + absmax_codes.size() + absmax_scales.size() * 4 + 4; }
};

// Throws Error if an element is not finite.
Nf4Tensor nf4_quantize(const float* x, int64_t n);
// The absmax of every block of 64, after double-quantization round trip (what dequant uses).
std::vector<float> nf4_block_absmax(const Nf4Tensor& t);
// The same for block b alone, rounded exactly as nf4_dequantize does (no fused multiply-add);
// b is not checked.
float nf4_absmax(const Nf4Tensor& t, int64_t b);
// The same from a block's absmax code, its group's scale and the tensor's offset.
float nf4_absmax_of(uint8_t code, float scale, float offset);
// out[count] = elements [first, first + count). Whole blocks of 64 take the AVX2 path; any first
// is accepted. Throws Error if the range lies outside the tensor or its sizes are inconsistent.
void nf4_dequantize(const Nf4Tensor& t, int64_t first, int64_t count, float* out);
// One whole block of 64 from its 32 packed bytes and absmax (nf4_dequantize's SIMD step).
void nf4_dequantize_block(const uint8_t* packed, float amax, float* out);
// Plain scalar twin of nf4_dequantize (same results, bit for bit).
void nf4_dequantize_reference(const Nf4Tensor& t, int64_t first, int64_t count, float* out);

}  // namespace pricer
