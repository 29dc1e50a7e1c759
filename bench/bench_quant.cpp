// Quantization kernels: NF4 dequantization (AVX2 vs scalar reference) in GB/s of f32 written, the
// ggml block dequantizers (AVX2 vs scalar), and quantization throughput.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/bf16.h"
#include "quant/ggml_blocks.h"
#include "quant/nf4.h"
#include "quant/nf4_panels.h"
#include "quant/weight.h"

namespace {

constexpr int64_t kN = 4096 * 1024;  // one 4096 x 1024 projection

std::vector<float> weights(int64_t n) {
  std::mt19937 rng(42);
  std::normal_distribution<float> d(0.0f, 0.02f);
  std::vector<float> x(n);
  for (auto& v : x) v = d(rng);
  return x;
}

const std::vector<float>& input() {
  static const std::vector<float> x = weights(kN);
  return x;
}

const pricer::Nf4Tensor& nf4_input() {
  static const pricer::Nf4Tensor t = pricer::nf4_quantize(input().data(), kN);
  return t;
}

template <bool kFast>
void BM_Nf4Dequantize(benchmark::State& state) {
  const auto& t = nf4_input();
  std::vector<float> out(kN);
  for (auto _ : state) {
    if (kFast) pricer::nf4_dequantize(t, 0, kN, out.data());
    else pricer::nf4_dequantize_reference(t, 0, kN, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kN * static_cast<int64_t>(sizeof(float)));
}
BENCHMARK(BM_Nf4Dequantize<true>)->Name("nf4_dequantize/avx2")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Nf4Dequantize<false>)->Name("nf4_dequantize/scalar")->Unit(benchmark::kMillisecond);

void BM_Nf4Quantize(benchmark::State& state) {
  const auto& x = input();
  for (auto _ : state) benchmark::DoNotOptimize(pricer::nf4_quantize(x.data(), kN));
  state.SetItemsProcessed(state.iterations() * kN);
}
BENCHMARK(BM_Nf4Quantize)->Name("nf4_quantize")->Unit(benchmark::kMillisecond);

// Argument 0: dtype index; argument 1: fast (1) or scalar (0).
void BM_RawDequantize(benchmark::State& state) {
  const auto t = static_cast<pricer::DType>(state.range(0));
  const bool fast = state.range(1) != 0;
  std::vector<uint8_t> raw(pricer::raw_bytes(t, kN));
  pricer::quantize_raw(t, input().data(), raw.data(), kN);
  std::vector<float> out(kN);
  for (auto _ : state) {
    if (fast) pricer::dequantize_raw(t, raw.data(), out.data(), kN);
    else pricer::dequantize_raw_reference(t, raw.data(), out.data(), kN);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetLabel(std::string(pricer::dtype_name(t)) + (fast ? " avx2" : " scalar"));
  state.SetBytesProcessed(state.iterations() * kN * static_cast<int64_t>(sizeof(float)));
}

// Weights back to f32 as the bf16 GEMMs take them: bands of 256 rows (1 MiB of f32 at these
// rows of 1024) into one reused tile. Q4_0 and NF4 as held in memory (16-row panels), beside NF4's
// flat bitsandbytes tensor (nf4_dequantize) in the same bands.
// Nf4PanelsBf16: the panels rounded straight to bf16, beside Nf4Panels then kernels::to_bf16
// (what the bf16 GEMMs took before).
enum class Held { Q4_0Panels, Nf4Panels, Nf4Flat, Nf4PanelsBf16, Nf4PanelsThenBf16 };
template <Held kHeld>
void BM_BandDequantize(benchmark::State& state) {
  const int64_t rows = 4096, cols = kN / rows, band = 256;
  const pricer::DType t = kHeld == Held::Q4_0Panels ? pricer::DType::Q4_0 : pricer::DType::NF4;
  const pricer::Weight w = pricer::Weight::from_f32(input().data(), rows, cols, t);
  std::vector<float> tile(band * cols);
  std::vector<uint16_t> tile16(band * cols);
  for (auto _ : state) {
    for (int64_t r0 = 0; r0 < rows; r0 += band) {
      if (kHeld == Held::Nf4Flat) {
        pricer::nf4_dequantize(nf4_input(), r0 * cols, band * cols, tile.data());
      } else if (kHeld == Held::Nf4PanelsBf16) {
        pricer::nf4_panels_dequantize_bf16(w.raw().data(), w.nf4(), cols, r0, band, tile16.data());
      } else {
        w.dequantize_rows(r0, band, tile.data());
        if (kHeld == Held::Nf4PanelsThenBf16) pricer::kernels::to_bf16(tile.data(), tile16.data(), band * cols);
      }
      benchmark::DoNotOptimize(tile16.data());
      benchmark::DoNotOptimize(tile.data());
      benchmark::ClobberMemory();
    }
  }
  state.SetBytesProcessed(state.iterations() * kN * static_cast<int64_t>(sizeof(float)));
}

void BM_RawQuantize(benchmark::State& state) {
  const auto t = static_cast<pricer::DType>(state.range(0));
  std::vector<uint8_t> raw(pricer::raw_bytes(t, kN));
  for (auto _ : state) {
    pricer::quantize_raw(t, input().data(), raw.data(), kN);
    benchmark::DoNotOptimize(raw.data());
  }
  state.SetLabel(std::string(pricer::dtype_name(t)));
  state.SetItemsProcessed(state.iterations() * kN);
}

void raw_types(benchmark::internal::Benchmark* b, bool with_mode) {
  using pricer::DType;
  for (DType t : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    if (with_mode) {
      b->Args({static_cast<int64_t>(t), 1});
      b->Args({static_cast<int64_t>(t), 0});
    } else {
      b->Args({static_cast<int64_t>(t)});
    }
  }
}
BENCHMARK(BM_RawDequantize)->Apply([](auto* b) { raw_types(b, true); }) -> Unit(benchmark::kMillisecond);
BENCHMARK(BM_BandDequantize<Held::Q4_0Panels>)->Name("bands/q4_0_panels")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_BandDequantize<Held::Nf4Panels>)->Name("bands/nf4_panels")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_BandDequantize<Held::Nf4Flat>)->Name("bands/nf4_flat")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_BandDequantize<Held::Nf4PanelsThenBf16>)
    ->Name("bands/nf4_panels_then_to_bf16")
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_BandDequantize<Held::Nf4PanelsBf16>)->Name("bands/nf4_panels_bf16")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RawQuantize)->Apply([](auto* b) { raw_types(b, false); }) -> Unit(benchmark::kMillisecond);

}  // namespace
