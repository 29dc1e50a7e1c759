#pragma once
// f32 -> bf16 conversion of activations and weight tiles for the bf16 compute path (operands in
// bf16, products accumulated in f32, as bitsandbytes' compute_dtype=bfloat16). Round to nearest,
// ties to even, quiet NaNs: the fast version is bit for bit its scalar twin (quant/half.h).
#include <cstdint>

namespace pricer::kernels {

void to_bf16(const float* x, uint16_t* y, int64_t n);  // AVX2
void to_bf16_reference(const float* x, uint16_t* y, int64_t n);  // scalar

}  // namespace pricer::kernels
