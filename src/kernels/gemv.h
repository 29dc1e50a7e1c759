#pragma once
// The single-token path of linear_forward: y[out] = W x + beta * y, each row of W dequantized
// inside the dot product (no tile), rows spread over the threads.
#include <cstdint>

#include "quant/weight.h"

namespace pricer::kernels {

void fused_gemv(const Weight& W, const float* x, float* y, float beta);

}  // namespace pricer::kernels
