#pragma once
// The single-token path of linear_forward: y[out] = W x + beta * y, each row of W dequantized
// inside the dot product (no tile), rows spread over the threads.
#include <cstdint>

#include "quant/weight.h"

namespace pricer::kernels {

void fused_gemv(const Weight& W, const float* x, float* y, float beta);

// The same for bf16 weights under bf16 compute, for 1 to kGemvRows rows of x given in bf16 (xb,
// [n, in]; y is [n, out]): both operands bf16 and the products summed in f32, as the bf16 GEMMs
// sum them, with AVX512-BF16 dot products where the build has them. Each weight row is read once
// for all n rows, as stored (no band is copied for oneDNN): a tied head's few loss rows, or one
// token at a time, stream its weight at memory speed.
inline constexpr int64_t kGemvRows = 8;
void bf16_gemv_rows(const Weight& W, const uint16_t* xb, int64_t n, float* y, float beta);

// Its backward: dx[n, in] += dyb[n, out] W, dyb in bf16.
void bf16_gemv_rows_backward(const Weight& W, const uint16_t* dyb, int64_t n, float* dx);

}  // namespace pricer::kernels
