#include "kernels/onednn.h"

#include <omp.h>

#include <dnnl.hpp>
#include <map>
#include <string>
#include <tuple>

#include "core/error.h"

namespace pricer::kernels {

namespace {

dnnl::engine& cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

// Primitives are built once per shape and thread (a JIT compile, ~0.1 ms) and reused; a batch of
// variable-length sequences brings a few new row counts, so the cache is bounded and simply
// emptied when full.
struct Bf16Key {
  bool tb;
  int64_t M, N, K, lda, ldb, ldc;
  float beta;
  auto tie() const { return std::tie(tb, M, N, K, lda, ldb, ldc, beta); }
  bool operator<(const Bf16Key& o) const { return tie() < o.tie(); }
};
constexpr size_t kMaxCachedPrimitives = 512;

struct Bf16Matmul {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul mm;
};

struct ThreadGemms {
  dnnl::stream stream{cpu_engine()};
  std::map<Bf16Key, Bf16Matmul> primitives;

  Bf16Matmul& get(const Bf16Key& k) {
    auto it = primitives.find(k);
    if (it != primitives.end()) return it->second;
    if (primitives.size() >= kMaxCachedPrimitives) primitives.clear();
    using dt = dnnl::memory::data_type;
    const dnnl::memory::desc a({k.M, k.K}, dt::bf16, dnnl::memory::dims{k.lda, 1});
    const dnnl::memory::desc b({k.K, k.N}, dt::bf16,
                               k.tb ? dnnl::memory::dims{1, k.ldb} : dnnl::memory::dims{k.ldb, 1});
    const dnnl::memory::desc c({k.M, k.N}, dt::f32, dnnl::memory::dims{k.ldc, 1});
    dnnl::primitive_attr attr;
    if (k.beta != 0.0f) {
      dnnl::post_ops po;
      po.append_sum(k.beta);
      attr.set_post_ops(po);
    }
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, cpu_engine());
    dnnl::matmul mm(pd);
    return primitives.emplace(k, Bf16Matmul{std::move(pd), std::move(mm)}).first->second;
  }
};

ThreadGemms& thread_gemms() {
  thread_local ThreadGemms g;
  return g;
}

}  // namespace

void gemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  require(st == dnnl_success, "oneDNN sgemm failed (status " + std::to_string(st) + ")");
}

void gemm_bf16(bool tb, int64_t M, int64_t N, int64_t K, const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb,
               float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  ThreadGemms& g = thread_gemms();
  const Bf16Key key{tb, M, N, K, lda, ldb, ldc, beta};
  Bf16Matmul& p = g.get(key);
  dnnl::memory a(p.pd.src_desc(), cpu_engine(), const_cast<uint16_t*>(A));
  dnnl::memory b(p.pd.weights_desc(), cpu_engine(), const_cast<uint16_t*>(B));
  dnnl::memory c(p.pd.dst_desc(), cpu_engine(), C);
  p.mm.execute(g.stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
  g.stream.wait();
}

SerialGemms::SerialGemms() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }

SerialGemms::~SerialGemms() { omp_set_num_threads(saved_); }

}  // namespace pricer::kernels
