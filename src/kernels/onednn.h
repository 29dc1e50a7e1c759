#pragma once
// GEMMs through oneDNN: its f32 sgemm, and bf16 x bf16 -> f32 matmuls that run on the AVX512-BF16
// dot-product instructions where the CPU has them (the bf16 compute path of the frozen base).
// All matrices are row-major with explicit leading dimensions.
#include <cstdint>

namespace pricer::kernels {

// C[M,N] = alpha op(A) op(B) + beta C in f32.
void gemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// C[M,N] = A op(B) + beta C: A [M,K] and B ([K,N], or [N,K] when tb) in bf16, C in f32.
void gemm_bf16(bool tb, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb,
               float beta, float* C, int64_t ldc);

// Within our own OpenMP regions every thread multiplies its own tile. Made just before such a
// region, this keeps the GEMMs called inside it on their calling thread (oneDNN would otherwise
// open a nested team whenever our region has a single thread).
class SerialGemms {
 public:
  SerialGemms();
  ~SerialGemms();
  SerialGemms(const SerialGemms&) = delete;
  SerialGemms& operator=(const SerialGemms&) = delete;

 private:
  int saved_;
};

}  // namespace pricer::kernels
