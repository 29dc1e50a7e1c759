#pragma once
// The integer path llama.cpp takes through weights in ggml's Q8_0 and Q4_0 blocks (and here NF4): the
// activations are rounded once to Q8_0 blocks (32 int8 and an f16 scale, ggml's
// quantize_row_q8_0; for NF4 weights, blocks of 64 to match theirs), each weight block's dot
// product with them is summed exactly in int32, and scaled by the two block scales:
// y[n, out] = x[n, in] W^T + beta y. Decoding reads every weight
// once per token, so this is what makes it memory-bound rather than bound by converting blocks
// to floats. The fast kernel uses AVX512-VNNI where the build has it (AVX2 otherwise); the scalar
// twin computes the same sums in plain loops.
#include <cstdint>
#include <span>

#include "quant/weight.h"

// The AVX-512 VNNI kernels, where the build targets them.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define PRICER_Q8_AVX512 1
#endif

namespace pricer::kernels {

// Passes of at most this many tokens take the row kernels below under compute q8_0 (decoding:
// one token per sequence, bound by reading the weights); longer ones (prompts, bound by
// arithmetic) take the integer GEMM (q8_gemm.h) where the build and format have it, and bf16
// GEMMs otherwise.
inline constexpr int64_t kQ8MaxTokens = 8;

// Where the build and format have the integer GEMM, the passes it takes over from the row
// kernels: from 2 tokens for Q4_0, whose panels it reads as held (the row kernels read each panel
// again per token), from 7 for Q8_0, whose repacking costs about what 6 tokens through the row
// kernels do (8192x2048 and 2048x8192, 2 threads).
bool prefers_q8_gemm(const Weight& W, int64_t n);

// Values per block, weights and activations alike (ggml's QK8_0 and QK4_0).
inline constexpr int64_t kQ8Block = 32;

// Whether W's storage takes the integer path: Q8_0, Q4_0, and NF4 in rows of whole 64-blocks, whose
// 16 code values are taken as integers of 1/32512 (within 1.6e-5 of the block's absmax: finer
// than bf16 compute rounds them).
bool takes_q8_activations(const Weight& W);

// Whether a pass of n tokens through W takes the integer path under compute q8_0 (row kernels or
// GEMM, as above): the one rule both backends follow.
bool takes_integer_path(const Weight& W, int64_t n);

// x[0, in) rounded to blocks of 32 int8 values and a scale, as the integer path rounds
// activations (ggml's quantize_row_q8_0, ties to even): q[in], d[in / 32].
void round_activations(const float* x, int64_t in, int8_t* q, float* d);

// The SIMD kernels: AVX2 always, AVX-512 VNNI where the build targets it (for NF4 also
// AVX512-VBMI, its absmax lookups; AVX2 otherwise), which is then the default.
enum class Q8Isa { Avx2, Avx512 };
bool q8_isa_built(Q8Isa isa);
inline Q8Isa q8_best_isa() { return q8_isa_built(Q8Isa::Avx512) ? Q8Isa::Avx512 : Q8Isa::Avx2; }

void q8_linear_forward(const Weight& W, const float* x, float* y, int64_t n, float beta,
                       Q8Isa isa = q8_best_isa());  // threads, SIMD
void q8_linear_forward_reference(const Weight& W, const float* x, float* y, int64_t n, float beta);  // scalar

// Several weights of one input (a layer's q, k and v; gate and up), all in one format and width:
// ys[i] [n, rows of Ws[i]] = x Ws[i]^T, the same sums as one call each, but x is rounded once and
// the threads go from one matrix to the next without waiting for each other.
void q8_linears_forward(std::span<const Weight* const> Ws, const float* x, std::span<float* const> ys, int64_t n,
                        Q8Isa isa = q8_best_isa());

}  // namespace pricer::kernels
