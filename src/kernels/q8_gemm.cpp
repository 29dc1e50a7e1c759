#include "kernels/q8_gemm.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "kernels/q8_dot.h"
#include "quant/half.h"
#include "quant/q4_panels.h"

namespace pricer::kernels {

#ifdef PRICER_Q8_AVX512
namespace {

constexpr int64_t kPanelRows = 16;  // one 512-bit register of int32 sums, a lane per row
static_assert(kPanelRows == kQ4PanelRows);
constexpr int64_t kTileTokens = 8;  // tokens sharing each weight load
constexpr int64_t kBandPanels = 4;  // panels a thread packs at a time: ~150-600 KiB, within L2

// Q8_0 rows are repacked by each thread, a band at a time, into panels of 16 rows: for each
// block of 32 values, 8 groups of 64 bytes, group g holding values 4g..4g+3 of each row in turn
// (what one dot-product instruction takes against 4 values of a token broadcast to all lanes),
// then the 16 rows' block scales in f32. Values are stored unsigned, plus 128, which the token's
// sums take back: the instruction multiplies unsigned by signed bytes. Q4_0 weights are held in
// panels already (quant/q4_panels.h): group 2k is chunk k's low nibbles, 2k + 1 its high ones,
// unsigned plus 8 as stored.
constexpr int64_t kCodeBytes = kPanelRows * kQ8Block;
constexpr int64_t kPanelBlockBytes = kCodeBytes + kPanelRows * int64_t{sizeof(float)};
constexpr int64_t kQ8BlockBytes = 34;  // ggml Q8_0: f16 d, int8 qs[32]

int32_t value_offset(DType t) { return t == DType::Q8_0 ? 128 : 8; }

// Rows [r0, r0 + rows) of a Q8_0 W (rows <= 16) into a panel; rows past them are zero with scale 0.
void pack_q8_0_panel(const Weight& W, int64_t r0, int64_t rows, uint8_t* panel) {
  const int64_t nb = W.cols() / kQ8Block;
  if (rows < kPanelRows) std::memset(panel, 0, static_cast<size_t>(nb * kPanelBlockBytes));
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = W.raw().data() + (r0 + r) * nb * kQ8BlockBytes;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = row + b * kQ8BlockBytes;
      uint8_t* dst = panel + b * kPanelBlockBytes;
      alignas(32) std::array<uint8_t, kQ8Block> v;
      _mm256_store_si256(
          reinterpret_cast<__m256i*>(v.data()),
          _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2)), _mm256_set1_epi8(-128)));
      for (int64_t g = 0; g < kQ8Block / 4; ++g) std::memcpy(dst + g * 64 + r * 4, v.data() + 4 * g, 4);
      const float scale = f16_to_f32(f16_bits_at(blk));
      std::memcpy(dst + kCodeBytes + r * int64_t{sizeof(float)}, &scale, sizeof(float));
    }
  }
}

// How a panel's blocks read: group g's 64 bytes, the 16 scales, the bytes from block to block.
template <DType T>
struct PanelBlock;
template <>
struct PanelBlock<DType::Q8_0> {
  static constexpr int64_t kBytes = kPanelBlockBytes;
  static __m512i group(const uint8_t* codes, int64_t g) { return _mm512_loadu_si512(codes + g * 64); }
  static __m512 scales(const uint8_t* codes) { return _mm512_loadu_ps(codes + kCodeBytes); }
};
template <>
struct PanelBlock<DType::Q4_0> {
  static constexpr int64_t kBytes = kQ4PanelBlockBytes;
  static __m512i group(const uint8_t* codes, int64_t g) {
    const __m512i z = _mm512_loadu_si512(codes + (g / 2) * 64);
    return _mm512_and_si512(g % 2 == 0 ? z : _mm512_srli_epi16(z, 4), _mm512_set1_epi8(0x0F));
  }
  static __m512 scales(const uint8_t* codes) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + kQ4PanelCodeBytes)));
  }
};

// The tokens' activations as the integer path rounds them, in tiles of 8 tokens laid out as the
// kernel reads them: per block, per group of 4 values, the 8 tokens' 4 bytes side by side (one
// pointer and constant offsets reach them all); then per block the 8 tokens' scales, and their
// start values for the int32 sums: -offset times the sum of the block's values. A last partial
// tile leaves its missing tokens' lanes unwritten: the kernel for m tokens reads only m lanes.
struct Tokens {
  std::vector<int8_t> q;  // [tiles, in / 32, 8 groups, 8 tokens, 4]
  std::vector<float> d;  // [tiles, in / 32, 8 tokens]
  std::vector<int32_t> start;  // [tiles, in / 32, 8 tokens]
};

void round_tokens(const float* x, int64_t n, int64_t in, int32_t offset, Tokens& a) {
  const int64_t nb = in / kQ8Block, tiles = (n + kTileTokens - 1) / kTileTokens;
  a.q.resize(static_cast<size_t>(tiles * kTileTokens * in));
  a.d.resize(static_cast<size_t>(tiles * kTileTokens * nb));
  a.start.resize(static_cast<size_t>(tiles * kTileTokens * nb));
#pragma omp parallel for schedule(static) num_threads(threads())
  for (int64_t t = 0; t < n; ++t) {
    thread_local std::vector<int8_t> row;
    thread_local std::vector<float> scales;
    row.resize(static_cast<size_t>(in));
    scales.resize(static_cast<size_t>(nb));
    round_activations(x + t * in, in, row.data(), scales.data());
    const int64_t tile = t / kTileTokens, lane = t % kTileTokens;
    for (int64_t b = 0; b < nb; ++b) {
      const int8_t* v = row.data() + b * kQ8Block;
      int8_t* dst = a.q.data() + (tile * nb + b) * kTileTokens * kQ8Block + lane * 4;
      int32_t sum = 0;
      for (int64_t g = 0; g < kQ8Block / 4; ++g) std::memcpy(dst + g * kTileTokens * 4, v + g * 4, 4);
      for (int64_t j = 0; j < kQ8Block; ++j) sum += v[j];
      const size_t i = static_cast<size_t>((tile * nb + b) * kTileTokens + lane);
      a.d[i] = scales[static_cast<size_t>(b)];
      a.start[i] = -offset * sum;
    }
  }
}

// Where a tile of tokens reads and writes.
struct TileArgs {
  const int8_t* q;  // the tile's activations, as Tokens lays them out
  const float* d;
  const int32_t* start;
  int64_t nb;
  float* y;  // the first token's outputs for the panel's first row; token t at y + t * ldy
  int64_t ldy, rows;
  float beta;
};

// MR tokens against one panel: per block, the int32 sums of 16 rows for each token (8
// instructions of 64 products), then scaled by both blocks' scales into f32.
template <DType T, int MR>
void tile(const uint8_t* panel, const TileArgs& a) {
  using Block = PanelBlock<T>;
  __m512 acc[MR];  // NOLINT(*-avoid-c-arrays): std::array drops the vector type's alignment attribute
  for (int t = 0; t < MR; ++t) acc[t] = _mm512_setzero_ps();
  const int8_t* q = a.q;
  for (int64_t b = 0; b < a.nb; ++b, q += kTileTokens * kQ8Block) {
    const uint8_t* codes = panel + b * Block::kBytes;
    const int32_t* start = a.start + b * kTileTokens;
    __m512i s[MR];  // NOLINT(*-avoid-c-arrays)
    for (int t = 0; t < MR; ++t) s[t] = _mm512_set1_epi32(start[t]);
    for (int64_t g = 0; g < kQ8Block / 4; ++g) {
      const __m512i w = Block::group(codes, g);
      for (int t = 0; t < MR; ++t) {
        int32_t x4 = 0;
        std::memcpy(&x4, q + (g * kTileTokens + t) * 4, 4);
        s[t] = _mm512_dpbusd_epi32(s[t], w, _mm512_set1_epi32(x4));
      }
    }
    const __m512 dw = Block::scales(codes);
    const float* d = a.d + b * kTileTokens;
    for (int t = 0; t < MR; ++t)
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), _mm512_mul_ps(dw, _mm512_set1_ps(d[t])), acc[t]);
  }
  const __mmask16 m = static_cast<__mmask16>((1u << a.rows) - 1u);
  for (int t = 0; t < MR; ++t) {
    float* y = a.y + t * a.ldy;
    __m512 v = acc[t];
    if (a.beta != 0.0f) v = _mm512_fmadd_ps(_mm512_set1_ps(a.beta), _mm512_maskz_loadu_ps(m, y), v);
    _mm512_mask_storeu_ps(y, m, v);
  }
}

using TileFn = void (*)(const uint8_t*, const TileArgs&);
template <DType T, size_t... I>
constexpr std::array<TileFn, sizeof...(I)> tiles_up_to(std::index_sequence<I...>) {
  return {tile<T, static_cast<int>(I) + 1>...};
}
// [m - 1]: m tokens
constexpr auto kQ8_0Tiles = tiles_up_to<DType::Q8_0>(std::make_index_sequence<kTileTokens>{});
constexpr auto kQ4_0Tiles = tiles_up_to<DType::Q4_0>(std::make_index_sequence<kTileTokens>{});

// One thread's band of panels (np from row r0) against every token, 8 tokens at a time.
template <DType T>
void band_times_tokens(const uint8_t* panels, int64_t np, int64_t r0, int64_t out, const Tokens& a, int64_t n,
                       int64_t in, float* y, float beta) {
  const auto& tiles = T == DType::Q8_0 ? kQ8_0Tiles : kQ4_0Tiles;
  const int64_t nb = in / kQ8Block;
  for (int64_t t0 = 0; t0 < n; t0 += kTileTokens) {
    const int64_t m = std::min(kTileTokens, n - t0);
    for (int64_t p = 0; p < np; ++p) {
      const int64_t row = r0 + p * kPanelRows;
      const TileArgs args{a.q.data() + t0 * in,
                          a.d.data() + t0 * nb,
                          a.start.data() + t0 * nb,
                          nb,
                          y + t0 * out + row,
                          out,
                          std::min(kPanelRows, out - row),
                          beta};
      tiles[static_cast<size_t>(m - 1)](panels + p * nb * PanelBlock<T>::kBytes, args);
    }
  }
}

}  // namespace
#endif

bool q8_gemm_takes(const Weight& W) {
#ifdef PRICER_Q8_AVX512
  return W.dtype() == DType::Q8_0 || W.dtype() == DType::Q4_0;
#else
  (void)W;
  return false;
#endif
}

void q8_gemm_forward(const Weight& W, const float* x, float* y, int64_t n, float beta) {
  require(q8_gemm_takes(W), "q8 gemm: weights in " + std::string(dtype_name(W.dtype())) +
                                " do not take the integer GEMM (Q8_0 or Q4_0, and a build with AVX-512 VNNI)");
#ifdef PRICER_Q8_AVX512
  const int64_t out = W.rows(), in = W.cols(), nb = in / kQ8Block;
  if (n == 0 || out == 0) return;
  thread_local Tokens mine;  // the calling thread's, reused from call to call
  Tokens& a = mine;  // a reference the worker threads share (a thread_local is their own)
  round_tokens(x, n, in, value_offset(W.dtype()), a);
  const int nt = threads();
  const int64_t panels = (out + kPanelRows - 1) / kPanelRows, bands = (panels + kBandPanels - 1) / kBandPanels;
  const int64_t band_bytes = kBandPanels * nb * kPanelBlockBytes;
  thread_local std::vector<uint8_t> packed_mine;  // Q8_0's bands, a thread's at a time
  std::vector<uint8_t>& packed = packed_mine;
  if (W.dtype() == DType::Q8_0) packed.resize(static_cast<size_t>(nt * band_bytes));
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t bi = 0; bi < bands; ++bi) {
    const int64_t p0 = bi * kBandPanels, np = std::min(kBandPanels, panels - p0);
    if (W.dtype() == DType::Q4_0) {
      const uint8_t* band = W.raw().data() + p0 * nb * kQ4PanelBlockBytes;
      band_times_tokens<DType::Q4_0>(band, np, p0 * kPanelRows, out, a, n, in, y, beta);
      continue;
    }
    uint8_t* buf = packed.data() + omp_get_thread_num() * band_bytes;
    for (int64_t p = 0; p < np; ++p) {
      const int64_t row = (p0 + p) * kPanelRows;
      pack_q8_0_panel(W, row, std::min(kPanelRows, out - row), buf + p * nb * kPanelBlockBytes);
    }
    band_times_tokens<DType::Q8_0>(buf, np, p0 * kPanelRows, out, a, n, in, y, beta);
  }
#else
  (void)x, (void)y, (void)n, (void)beta;
#endif
}

}  // namespace pricer::kernels
