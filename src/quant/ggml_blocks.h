#pragma once
// ggml's block storage formats, byte for byte as GGUF files hold them (little-endian, packed):
//   Q8_0  32 elems, 34 bytes:  f16 d; int8 qs[32]                         x = qs * d
//   Q4_0  32 elems, 18 bytes:  f16 d; u8 qs[16]                           x = (nibble - 8) * d
//         (byte j holds element j in the low nibble and element j + 16 in the high nibble)
//   Q4_K  256 elems, 144 bytes: f16 d, dmin; u8 scales[12] (8 pairs of 6-bit scale/min);
//         u8 qs[128]                                                      x = d*sc * q - dmin*m
//   Q5_K  256 elems, 176 bytes: as Q4_K, with u8 qh[32] (each level's fifth bit) before qs[128]
//   Q6_K  256 elems, 210 bytes: u8 ql[128] (low 4 bits); u8 qh[64] (high 2 bits);
//         int8 scales[16]; f16 d                                          x = d * sc * (q - 32)
//   F16 / BF16: one element of 2 bytes.
// Each dequantizer has a plain scalar reference and an AVX2 version with identical results.
#include <cstddef>
#include <cstdint>

#include "quant/dtype.h"

namespace pricer {

inline constexpr int64_t kQK8_0 = 32;
inline constexpr int64_t kQK4_0 = 32;
inline constexpr int64_t kQK_K = 256;

struct BlockLayout {
  int64_t elems;  // elements per block
  int64_t bytes;  // bytes per block
};

// Layout of a raw storage format (F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K); throws Error otherwise.
BlockLayout block_layout(DType t);

// The format a matrix with rows `cols` long is written in when `want`'s blocks do not divide its
// rows: a K-quant falls back to the plain 32-element blocks of about its width (q4_k to q4_0, q5_k
// and q6_k to q8_0; no importance data needed), those to f16; `want` itself when its blocks fit.
DType fitting_block_format(DType want, int64_t cols);
// Bytes of n elements; throws Error if n is not a whole number of blocks.
size_t raw_bytes(DType t, int64_t n);

// Quantizes n elements (a whole number of blocks) into dst (raw_bytes(t, n) bytes) with ggml's
// reference quantizers (quantize_row_*_ref). t: F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K.
void quantize_raw(DType t, const float* x, uint8_t* dst, int64_t n);

// n elements (a whole number of blocks) from raw blocks into f32.
void dequantize_raw(DType t, const uint8_t* src, float* dst, int64_t n);  // AVX2
void dequantize_raw_reference(DType t, const uint8_t* src, float* dst, int64_t n);  // scalar

// Throws Error (naming `what` and the block) if a block's f16 scale is not finite.
void check_raw_scales(DType t, const uint8_t* src, int64_t n, const char* what);

}  // namespace pricer
