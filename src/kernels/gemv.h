#pragma once
// The single-token path of linear_forward: y[out] = W x + beta * y, each row of W dequantized
// inside the dot product (no tile), rows spread over the threads.
#include <cstdint>

#include "quant/weight.h"

namespace pricer::kernels {

void fused_gemv(const Weight& W, const float* x, float* y, float beta);

// The same for bf16 weights under bf16 compute: x given in bf16 (xb), so that both operands are
// bf16 and the products are summed in f32, as the bf16 GEMMs sum them, with AVX512-BF16 dot
// products where the build has them. Reads each row as stored: no band is copied for oneDNN.
void bf16_gemv(const Weight& W, const uint16_t* xb, float* y, float beta);

}  // namespace pricer::kernels
