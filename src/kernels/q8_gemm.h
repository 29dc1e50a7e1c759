#pragma once
// Prompts through the integer path: many tokens against weights in Q8_0 or Q4_0 blocks at once,
// with the activations rounded to Q8_0 blocks exactly as for decoding (q8_dot.h), so that a
// prompt and the tokens decoded after it see the same arithmetic. Where q8_dot.h's kernels read
// one row against one token at a time (decoding is bound by reading the weights), a prompt is
// bound by arithmetic: weights are read in 16-row panels (Q4_0 is held that way, quant/q4_panels.h;
// Q8_0 is repacked a band per thread at a time) so that one AVX-512 VNNI instruction multiplies
// 4 values of 16 rows by 4 values of one token (64 products), and a tile of 8 tokens shares every
// weight load. The scalar twin is q8_linear_forward_reference (the same
// int32 block sums, scaled the same way).
#include <cstdint>

#include "quant/weight.h"

namespace pricer::kernels {

// Whether this build has the integer GEMM (AVX-512 VNNI) and W's format takes it (Q8_0, Q4_0).
bool q8_gemm_takes(const Weight& W);

// y[n, out] = x[n, in] W^T + beta y, threads and SIMD.
void q8_gemm_forward(const Weight& W, const float* x, float* y, int64_t n, float beta);

}  // namespace pricer::kernels
