// Reference vs fast kernels at Llama-3.2-1B shapes. Each group runs the reference first; the fast
// runs then report `speedup` = reference time / fast time, both measured in this same process.
// The fast kernels run twice: on one thread (the per-core gain, robust to a busy machine) and on
// all threads.
#include <benchmark/benchmark.h>

#include <chrono>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/threads.h"
#include "kernels/backend.h"

namespace {

using pricer::Backend;
using pricer::DType;
using pricer::Weight;
using Vec = std::vector<float>;

Vec random_vec(size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  Vec v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

enum class Mode { Reference, Fast1, FastAll };

std::map<std::string, double>& reference_seconds() {
  static std::map<std::string, double> m;
  return m;
}

// Times f per iteration; the reference run records its mean, the fast run reports the ratio.
template <class F>
void timed(benchmark::State& state, const std::string& key, Mode mode, F&& f) {
  double total = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const double mean = total / double(state.iterations());
  if (mode == Mode::Reference) {
    reference_seconds()[key] = mean;
  } else if (auto it = reference_seconds().find(key); it != reference_seconds().end()) {
    state.counters["speedup"] = it->second / mean;
  }
}

std::unique_ptr<Backend> backend(Mode mode, DType compute = DType::F32) {
  pricer::set_threads(mode == Mode::Fast1 ? 1 : 0);
  return mode == Mode::Reference ? pricer::make_reference_backend(compute) : pricer::make_cpu_backend(compute);
}

// A linear's pass, forward or its input gradient, through an [out, in] weight at n rows. compute:
// the precision of the linear (bf16 = bf16 operands, f32 sums), reference and fast alike.
void linear_pass(benchmark::State& state, bool backward, DType t, int64_t out, int64_t in, int64_t n, Mode mode,
                 DType compute) {
  const Vec w = random_vec(out * in, 1, 0.02f), x = random_vec(n * (backward ? out : in), 2);
  const Weight W = Weight::from_f32(w.data(), out, in, t);
  Vec y(n * (backward ? in : out));
  auto b = backend(mode, compute);
  const std::string key = std::string(backward ? "linear backward " : "linear ") + std::string(pricer::dtype_name(t)) +
                          std::to_string(out) + "x" + std::to_string(in) + " n" + std::to_string(n) + " " +
                          std::string(pricer::dtype_name(compute));
  timed(state, key, mode, [&] {
    if (backward) {
      b->linear_backward_input(W, x.data(), y.data(), n);
    } else {
      b->linear_forward(W, x.data(), y.data(), n, 0.0f);
    }
    benchmark::DoNotOptimize(y.data());
  });
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(n * out * in), benchmark::Counter::kIsIterationInvariantRate);
  // The weight bytes read per second: what bounds one token's pass once it leaves the cache.
  state.counters["weight_GB/s"] =
      benchmark::Counter(double(W.bytes()) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_linear(benchmark::State& state, DType t, int64_t out, int64_t in, int64_t n, Mode mode,
               DType compute = DType::F32) {
  linear_pass(state, false, t, out, in, n, mode, compute);
}

// The input gradient through a frozen weight, dx += dy W (a training step's backward).
void BM_linear_backward(benchmark::State& state, DType t, int64_t out, int64_t in, int64_t n, Mode mode,
                        DType compute) {
  linear_pass(state, true, t, out, in, n, mode, compute);
}

// SwiGLU forward and backward over a step's MLP activations (256 tokens x 8192).
void BM_swiglu(benchmark::State& state, Mode mode) {
  const int64_t n = 256 * 8192;
  const Vec g = random_vec(n, 11), u = random_vec(n, 12), dh = random_vec(n, 13);
  Vec h(n), dg(n), du(n);
  auto b = backend(mode);
  timed(state, "swiglu", mode, [&] {
    b->swiglu_forward(g.data(), u.data(), h.data(), n);
    b->swiglu_backward(g.data(), u.data(), dh.data(), dg.data(), du.data(), n);
    benchmark::DoNotOptimize(dg.data());
  });
}

// One AdamW step over the adapters of LoRA r16 on the 7 projections of 16 layers (11.3 M).
void BM_adamw(benchmark::State& state, Mode mode) {
  const int64_t n = 16 * 16 * (4096 + 2560 + 2560 + 4096 + 3 * 10240);
  const Vec grad = random_vec(n, 14, 0.01f);
  Vec param = random_vec(n, 15, 0.02f), m(n), v(n);
  auto b = backend(mode);
  int64_t step = 0;
  timed(state, "adamw", mode, [&] {
    b->adamw_step(param.data(), grad.data(), m.data(), v.data(), n, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, ++step);
    benchmark::DoNotOptimize(param.data());
  });
}

void BM_attention(benchmark::State& state, bool backward, Mode mode) {
  const int heads = 32, kv = 8, hd = 64;
  const int64_t T = 256;
  const std::vector<int32_t> cu = {0, int32_t(T)};
  const Vec q = random_vec(T * heads * hd, 3), k = random_vec(T * kv * hd, 4), v = random_vec(T * kv * hd, 5);
  const Vec dout = random_vec(T * heads * hd, 6);
  Vec out(q.size()), lse(T * heads), dq(q.size()), dk(k.size()), dv(v.size());
  auto b = backend(mode);
  b->attention_forward(q.data(), k.data(), v.data(), out.data(), lse.data(), cu, heads, kv, hd);
  timed(state, backward ? "attention backward" : "attention forward", mode, [&] {
    if (backward) {
      b->attention_backward(q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(), dq.data(), dk.data(),
                            dv.data(), cu, heads, kv, hd);
      benchmark::DoNotOptimize(dq.data());
    } else {
      b->attention_forward(q.data(), k.data(), v.data(), out.data(), lse.data(), cu, heads, kv, hd);
      benchmark::DoNotOptimize(out.data());
    }
  });
}

// Decoding: one token's 32 query heads against a 300-token kv cache (8 kv heads, rows 512 apart).
void BM_attention_decode(benchmark::State& state, Mode mode) {
  const int heads = 32, kv = 8, hd = 64;
  const int64_t n = 300, cap = 512;
  const Vec q = random_vec(heads * hd, 3), k = random_vec(kv * cap * hd, 4), v = random_vec(kv * cap * hd, 5);
  Vec out(q.size());
  auto b = backend(mode);
  timed(state, "attention decode", mode, [&] {
    b->attention_decode(q.data(), k.data(), v.data(), cap * hd, n, out.data(), heads, kv, hd);
    benchmark::DoNotOptimize(out.data());
  });
}

void BM_rmsnorm(benchmark::State& state, Mode mode) {
  const int64_t n = 256, dim = 2048;
  const Vec x = random_vec(n * dim, 7), w = random_vec(dim, 8), dy = random_vec(n * dim, 9);
  Vec y(n * dim), rstd(n), dx(n * dim), dw(dim);
  auto b = backend(mode);
  timed(state, "rmsnorm", mode, [&] {
    b->rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), n, dim, 1e-5f);
    b->rmsnorm_backward(dy.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(), n, dim);
    benchmark::DoNotOptimize(dx.data());
  });
}

void BM_cross_entropy(benchmark::State& state, Mode mode) {
  const int64_t n = 32, vocab = 128256;
  const Vec logits = random_vec(n * vocab, 10, 3.0f);
  std::vector<int32_t> targets(n);
  for (int64_t i = 0; i < n; ++i) targets[i] = int32_t((i * 7919) % vocab);
  Vec work(logits.size()), losses(n);
  auto b = backend(mode);
  timed(state, "cross_entropy", mode, [&] {
    state.PauseTiming();
    work = logits;
    state.ResumeTiming();
    b->cross_entropy(work.data(), targets.data(), losses.data(), n, vocab, 1.0f / float(n));
    benchmark::DoNotOptimize(losses.data());
  });
}

}  // namespace

// Llama-3.2-1B: hidden 2048, intermediate 8192; 256 tokens per step, and 1 token (generation).
BENCHMARK_CAPTURE(BM_linear, f32_2048x2048_reference, DType::F32, 2048, 2048, 256, Mode::Reference)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_linear, f32_2048x2048_fast_1thread, DType::F32, 2048, 2048, 256, Mode::Fast1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, f32_2048x2048_fast, DType::F32, 2048, 2048, 256, Mode::FastAll)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, nf4_2048x2048_reference, DType::NF4, 2048, 2048, 256, Mode::Reference)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_linear, nf4_2048x2048_fast_1thread, DType::NF4, 2048, 2048, 256, Mode::Fast1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, nf4_2048x2048_fast, DType::NF4, 2048, 2048, 256, Mode::FastAll)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, f32_8192x2048_reference, DType::F32, 8192, 2048, 256, Mode::Reference)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_linear, f32_8192x2048_fast_1thread, DType::F32, 8192, 2048, 256, Mode::Fast1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, f32_8192x2048_fast, DType::F32, 8192, 2048, 256, Mode::FastAll)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, nf4_8192x2048_reference, DType::NF4, 8192, 2048, 256, Mode::Reference)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_linear, nf4_8192x2048_fast_1thread, DType::NF4, 8192, 2048, 256, Mode::Fast1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, nf4_8192x2048_fast, DType::NF4, 8192, 2048, 256, Mode::FastAll)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, nf4_8192x2048_bf16_reference, DType::NF4, 8192, 2048, 256, Mode::Reference, DType::BF16)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_linear, nf4_8192x2048_bf16_fast_1thread, DType::NF4, 8192, 2048, 256, Mode::Fast1, DType::BF16)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, nf4_8192x2048_bf16_fast, DType::NF4, 8192, 2048, 256, Mode::FastAll, DType::BF16)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, nf4_8192x2048_gemv_reference, DType::NF4, 8192, 2048, 1, Mode::Reference)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, nf4_8192x2048_gemv_fast_1thread, DType::NF4, 8192, 2048, 1, Mode::Fast1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, nf4_8192x2048_gemv_fast, DType::NF4, 8192, 2048, 1, Mode::FastAll)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// Compute q8_0: 8-bit activations and integer dot products. Prompts (256 tokens) take the integer
// GEMM (the bf16 GEMM on the same weights beside it); one token takes the row kernels, here on a
// matrix that stays in cache (2.3 MiB), so that they show their arithmetic rate, not DRAM's.
BENCHMARK_CAPTURE(BM_linear, q4_0_8192x2048_q8_reference, DType::Q4_0, 8192, 2048, 256, Mode::Reference, DType::Q8_0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_linear, q4_0_8192x2048_q8_fast_1thread, DType::Q4_0, 8192, 2048, 256, Mode::Fast1, DType::Q8_0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, q4_0_8192x2048_q8_fast, DType::Q4_0, 8192, 2048, 256, Mode::FastAll, DType::Q8_0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, q4_0_8192x2048_bf16_fast_1thread, DType::Q4_0, 8192, 2048, 256, Mode::Fast1, DType::BF16)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, q4_0_2048x2048_q8_gemv_reference, DType::Q4_0, 2048, 2048, 1, Mode::Reference, DType::Q8_0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, q4_0_2048x2048_q8_gemv_fast_1thread, DType::Q4_0, 2048, 2048, 1, Mode::Fast1, DType::Q8_0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, q4_0_2048x2048_q8_gemv_fast, DType::Q4_0, 2048, 2048, 1, Mode::FastAll, DType::Q8_0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, nf4_2048x2048_q8_gemv_reference, DType::NF4, 2048, 2048, 1, Mode::Reference, DType::Q8_0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, nf4_2048x2048_q8_gemv_fast_1thread, DType::NF4, 2048, 2048, 1, Mode::Fast1, DType::Q8_0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, nf4_2048x2048_q8_gemv_fast, DType::NF4, 2048, 2048, 1, Mode::FastAll, DType::Q8_0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// Where the integer GEMM takes over for Q4_0: 2 tokens through it against one token's pass (the
// one-token kernels would take two).
BENCHMARK_CAPTURE(BM_linear, q4_0_8192x2048_q8_1token_fast, DType::Q4_0, 8192, 2048, 1, Mode::FastAll, DType::Q8_0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, q4_0_8192x2048_q8_2tokens_fast, DType::Q4_0, 8192, 2048, 2, Mode::FastAll, DType::Q8_0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, q8_0_2048x2048_q8_gemv_reference, DType::Q8_0, 2048, 2048, 1, Mode::Reference, DType::Q8_0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, q8_0_2048x2048_q8_gemv_fast_1thread, DType::Q8_0, 2048, 2048, 1, Mode::Fast1, DType::Q8_0)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// One token through bf16 weights under bf16 compute (a QLoRA model's head while decoding): the
// bf16 GEMV on the rows as stored.
BENCHMARK_CAPTURE(BM_linear, bf16_8192x2048_gemv_reference, DType::BF16, 8192, 2048, 1, Mode::Reference, DType::BF16)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, bf16_8192x2048_gemv_fast_1thread, DType::BF16, 8192, 2048, 1, Mode::Fast1, DType::BF16)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// A tied bf16 head at a training step's loss rows (6 in `bench train`): each weight row read once
// for all of them.
BENCHMARK_CAPTURE(BM_linear, bf16_8192x2048_6rows_reference, DType::BF16, 8192, 2048, 6, Mode::Reference, DType::BF16)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear, bf16_8192x2048_6rows_fast_1thread, DType::BF16, 8192, 2048, 6, Mode::Fast1, DType::BF16)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// The input gradient: a down projection's shape (bands of 512 of its 2048 rows) and a tied bf16
// head at 6 loss rows (each weight row read once for all of them).
BENCHMARK_CAPTURE(BM_linear_backward, nf4_2048x8192_bf16_reference, DType::NF4, 2048, 8192, 256, Mode::Reference,
                  DType::BF16)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_linear_backward, nf4_2048x8192_bf16_fast_1thread, DType::NF4, 2048, 8192, 256, Mode::Fast1,
                  DType::BF16)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear_backward, nf4_2048x8192_bf16_fast, DType::NF4, 2048, 8192, 256, Mode::FastAll, DType::BF16)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear_backward, bf16_8192x2048_6rows_reference, DType::BF16, 8192, 2048, 6, Mode::Reference,
                  DType::BF16)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_linear_backward, bf16_8192x2048_6rows_fast_1thread, DType::BF16, 8192, 2048, 6, Mode::Fast1,
                  DType::BF16)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_swiglu, fwd_bwd_reference, Mode::Reference)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_swiglu, fwd_bwd_fast_1thread, Mode::Fast1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_swiglu, fwd_bwd_fast, Mode::FastAll)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_adamw, lora_r16_1b_reference, Mode::Reference)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_adamw, lora_r16_1b_fast_1thread, Mode::Fast1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_adamw, lora_r16_1b_fast, Mode::FastAll)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention, forward_reference, false, Mode::Reference)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_attention, forward_fast_1thread, false, Mode::Fast1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention, forward_fast, false, Mode::FastAll)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention, backward_reference, true, Mode::Reference)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_attention, backward_fast_1thread, true, Mode::Fast1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention, backward_fast, true, Mode::FastAll)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_decode, n300_reference, Mode::Reference)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_decode, n300_fast_1thread, Mode::Fast1)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_decode, n300_fast, Mode::FastAll)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_rmsnorm, fwd_bwd_reference, Mode::Reference)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_rmsnorm, fwd_bwd_fast_1thread, Mode::Fast1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_rmsnorm, fwd_bwd_fast, Mode::FastAll)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_cross_entropy, vocab128256_reference, Mode::Reference)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_cross_entropy, vocab128256_fast_1thread, Mode::Fast1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_cross_entropy, vocab128256_fast, Mode::FastAll)->Unit(benchmark::kMillisecond)->UseRealTime();
