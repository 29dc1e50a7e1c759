// NF4 with double quantization: bit-exact agreement with the independent Python implementation of
// bitsandbytes' definition (tools/golden/nf4_golden.py -> tests/data/nf4), the error bound of the
// round trip, idempotence, and the fast dequantizer against its scalar reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "quant/half.h"
#include "quant/nf4.h"
#include "quant/nf4_panels.h"
#include "quant/weight.h"

using namespace pricer;

namespace {

const std::string kDataDir = std::string(PRICER_SOURCE_DIR) + "/tests/data/nf4/";

std::vector<uint8_t> read_bytes(const std::string& name) {
  std::ifstream f(kDataDir + name, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + kDataDir + name);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::vector<float> read_f32(const std::string& name) {
  const auto bytes = read_bytes(name);
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

uint8_t index_at(const Nf4Tensor& t, int64_t i) {
  const uint8_t byte = t.packed[i / 2];
  return i % 2 == 0 ? byte >> 4 : byte & 0x0f;
}

std::vector<float> random_weights(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::uniform_real_distribution<float> scale(0.2f, 5.0f);
  std::vector<float> x(n);
  float s = 1.0f;
  for (int64_t i = 0; i < n; ++i) {
    if (i % kNf4BlockSize == 0) s = scale(rng);
    x[i] = normal(rng) * s;
    if (i % 997 == 13) x[i] = (i % 2 ? 1.0f : -1.0f) * 0.7f;  // outliers
  }
  return x;
}

struct Golden {
  std::vector<float> input, absmax_scales, dequantized, dynamic_map;
  std::vector<uint8_t> packed, absmax_codes;
  int64_t numel = 0;
  float offset = 0.0f;
};

const Golden& golden() {
  static const Golden g = [] {
    Golden g;
    g.input = read_f32("input.f32");
    g.absmax_scales = read_f32("absmax_scales.f32");
    g.dequantized = read_f32("dequantized.f32");
    g.dynamic_map = read_f32("dynamic_map.f32");
    g.packed = read_bytes("packed.u8");
    g.absmax_codes = read_bytes("absmax_codes.u8");
    std::ifstream f(kDataDir + "meta.json");
    const auto meta = nlohmann::json::parse(f);
    g.numel = meta.at("numel").get<int64_t>();
    g.offset = static_cast<float>(meta.at("absmax_offset").get<double>());
    return g;
  }();
  return g;
}

// Half of the widest gap between adjacent values of a sorted table.
template <size_t N>
float half_max_gap(const std::array<float, N>& v) {
  float g = 0.0f;
  for (size_t i = 1; i < N; ++i) g = std::max(g, v[i] - v[i - 1]);
  return g / 2;
}

}  // namespace

TEST(Nf4, CodeTableIsBitsandbytesNormalFloat) {
  const auto& c = nf4_code();
  EXPECT_EQ(c[0], -1.0f);
  EXPECT_EQ(c[7], 0.0f);
  EXPECT_EQ(c[15], 1.0f);
  for (int i = 1; i < 16; ++i) EXPECT_LT(c[i - 1], c[i]);
}

TEST(Nf4, DynamicMapMatchesTorchEvaluation) {
  const auto& g = golden();
  const auto& m = dynamic_map_signed();
  ASSERT_EQ(g.dynamic_map.size(), 256u);
  for (int i = 0; i < 256; ++i)
    EXPECT_EQ(std::bit_cast<uint32_t>(m[i]), std::bit_cast<uint32_t>(g.dynamic_map[i])) << "entry " << i;
  for (int i = 1; i < 256; ++i) EXPECT_LE(m[i - 1], m[i]);
  EXPECT_EQ(m[255], 1.0f);
}

TEST(Nf4, DynamicMapFollowsTheRecipeWithinTwoUlps) {
  // The recipe in exact arithmetic (torch rounds three times in float32: linspace point, mean,
  // product, hence up to two ulps apart): decade 10^(i-6) times the means of adjacent points of
  // linspace(0.1, 1, 2^i + 1), both signs, plus 0 and 1.
  std::vector<double> want = {0.0, 1.0};
  for (int i = 0; i < 7; ++i) {
    const int steps = (1 << i) + 1;
    const double start = 0.1f, step = (1.0 - start) / (steps - 1);
    for (int k = 0; k + 1 < steps; ++k) {
      const double mean = start + step * (k + 0.5);
      want.push_back(std::pow(10.0, i - 6) * mean);
      want.push_back(-std::pow(10.0, i - 6) * mean);
    }
  }
  std::sort(want.begin(), want.end());
  ASSERT_EQ(want.size(), 256u);
  const auto& m = dynamic_map_signed();
  for (int i = 0; i < 256; ++i) {
    const float w = static_cast<float>(want[i]);
    EXPECT_LE(std::fabs(m[i] - w), 2.01f * std::fabs(std::nextafter(w, 2.0f) - w)) << "entry " << i;
  }
}

TEST(Nf4, QuantizeMatchesGoldenCodeForCode) {
  const auto& g = golden();
  ASSERT_EQ(static_cast<int64_t>(g.input.size()), g.numel);
  const Nf4Tensor t = nf4_quantize(g.input.data(), g.numel);
  ASSERT_EQ(t.packed.size(), g.packed.size());
  ASSERT_EQ(t.absmax_codes.size(), g.absmax_codes.size());
  ASSERT_EQ(t.absmax_scales.size(), g.absmax_scales.size());
  int mismatches = 0;
  for (size_t i = 0; i < t.packed.size() && mismatches < 10; ++i)
    if (t.packed[i] != g.packed[i]) {
      ++mismatches;
      ADD_FAILURE() << "packed byte " << i << ": " << int(t.packed[i]) << " vs golden " << int(g.packed[i]);
    }
  for (size_t b = 0; b < t.absmax_codes.size(); ++b)
    EXPECT_EQ(t.absmax_codes[b], g.absmax_codes[b]) << "absmax block " << b;
  for (size_t s = 0; s < t.absmax_scales.size(); ++s)
    EXPECT_EQ(std::bit_cast<uint32_t>(t.absmax_scales[s]), std::bit_cast<uint32_t>(g.absmax_scales[s]))
        << "scale " << s;
  EXPECT_EQ(std::bit_cast<uint32_t>(t.absmax_offset), std::bit_cast<uint32_t>(g.offset));
}

TEST(Nf4, DequantizeMatchesGoldenBitForBit) {
  const auto& g = golden();
  Nf4Tensor t;
  t.numel = g.numel;
  t.packed = g.packed;
  t.absmax_codes = g.absmax_codes;
  t.absmax_scales = g.absmax_scales;
  t.absmax_offset = g.offset;
  std::vector<float> fast(g.numel), ref(g.numel);
  nf4_dequantize(t, 0, g.numel, fast.data());
  nf4_dequantize_reference(t, 0, g.numel, ref.data());
  int mismatches = 0;
  for (int64_t i = 0; i < g.numel && mismatches < 10; ++i) {
    if (std::bit_cast<uint32_t>(fast[i]) != std::bit_cast<uint32_t>(g.dequantized[i]) ||
        std::bit_cast<uint32_t>(ref[i]) != std::bit_cast<uint32_t>(g.dequantized[i])) {
      ++mismatches;
      ADD_FAILURE() << "element " << i << ": fast " << fast[i] << ", reference " << ref[i] << ", golden "
                    << g.dequantized[i];
    }
  }
}

TEST(Nf4, TiesOnMidpointsTakeTheLowerCode) {
  // absmax 1 makes the scaled value the value itself; the midpoint between codes 7 (0) and 8
  // lies exactly halfway, as a float rounded once from the double midpoint.
  const auto& c = nf4_code();
  std::vector<float> x(kNf4BlockSize, 0.0f);
  x[0] = 1.0f;
  const float mid = static_cast<float>((double(c[7]) + double(c[8])) * 0.5);
  x[1] = mid;
  x[2] = std::nextafter(mid, 1.0f);
  x[3] = -1.0f + 1e-7f;  // nearest to -1
  x[4] = 0.0f;
  const Nf4Tensor t = nf4_quantize(x.data(), kNf4BlockSize);
  EXPECT_EQ(index_at(t, 0), 15);
  EXPECT_EQ(index_at(t, 1), 7);
  EXPECT_EQ(index_at(t, 2), 8);
  EXPECT_EQ(index_at(t, 3), 0);
  EXPECT_EQ(index_at(t, 4), 7);
}

TEST(Nf4, PartialBlockPadsWithTheCodeOfZero) {
  std::vector<float> x = {0.5f, -0.25f, 1.0f};  // one partial block, odd count
  const Nf4Tensor t = nf4_quantize(x.data(), 3);
  ASSERT_EQ(t.packed.size(), 2u);
  ASSERT_EQ(t.absmax_codes.size(), 1u);
  ASSERT_EQ(t.absmax_scales.size(), 1u);
  EXPECT_EQ(t.packed[1] & 0x0f, 7);  // padding nibble
  EXPECT_EQ(t.packed[1] >> 4, 15);  // 1.0 / absmax 1.0
  // A single block: offset == absmax, so the stored difference is 0 and it round-trips exactly.
  EXPECT_EQ(t.absmax_offset, 1.0f);
  EXPECT_EQ(nf4_block_absmax(t)[0], 1.0f);
  std::vector<float> y(3);
  nf4_dequantize(t, 0, 3, y.data());
  EXPECT_EQ(y[2], 1.0f);
  EXPECT_EQ(y[0], nf4_code()[12]);  // 0.5 lies below the 0.4407/0.5626 midpoint 0.5017
}

TEST(Nf4, RoundTripErrorIsBoundedPerElement) {
  const float nf4_half_gap = half_max_gap(nf4_code());
  const float map_half_gap = half_max_gap(dynamic_map_signed());
  for (int trial = 0; trial < 2; ++trial) {
    const std::vector<float> x = trial == 0 ? golden().input : random_weights(64 * 700 + 21, 7);
    const int64_t n = static_cast<int64_t>(x.size());
    const Nf4Tensor t = nf4_quantize(x.data(), n);
    const auto amax_dq = nf4_block_absmax(t);
    std::vector<float> y(n);
    nf4_dequantize(t, 0, n, y.data());
    for (size_t b = 0; b < amax_dq.size(); ++b) {
      float a = 0.0f;
      for (int64_t i = b * kNf4BlockSize; i < std::min<int64_t>(n, (b + 1) * kNf4BlockSize); ++i)
        a = std::max(a, std::fabs(x[i]));
      const float scale = t.absmax_scales[b / kNf4AbsmaxBlockSize];
      const float dq_err = std::fabs(a - amax_dq[b]);
      // Nearest 8-bit code: within half the widest map gap of the scale, plus float rounding.
      ASSERT_LE(dq_err, map_half_gap * scale + 1e-6f * (scale + std::fabs(t.absmax_offset))) << "block " << b;
      for (int64_t i = b * kNf4BlockSize; i < std::min<int64_t>(n, (b + 1) * kNf4BlockSize); ++i)
        ASSERT_LE(std::fabs(x[i] - y[i]), nf4_half_gap * a + dq_err + 1e-6f * a) << "element " << i;
    }
  }
}

TEST(Nf4, RequantizingTheDequantizedTensorGivesTheSameCodes) {
  for (int trial = 0; trial < 2; ++trial) {
    const std::vector<float> x = trial == 0 ? golden().input : random_weights(64 * 300 + 5, 11);
    const int64_t n = static_cast<int64_t>(x.size());
    const Nf4Tensor t = nf4_quantize(x.data(), n);
    std::vector<float> y(n);
    nf4_dequantize(t, 0, n, y.data());
    const Nf4Tensor u = nf4_quantize(y.data(), n);
    const auto amax_dq = nf4_block_absmax(t);
    int64_t compared = 0;
    for (int64_t i = 0; i < n; ++i) {
      // A block whose absmax the double quantization reconstructs as <= 0 (an all-zero block
      // next to large ones) flips or loses its sign on the way back; every other block's
      // extreme element maps to +-1 again, so its scale and codes are reproduced.
      if (amax_dq[i / kNf4BlockSize] <= 0.0f) continue;
      ASSERT_EQ(index_at(u, i), index_at(t, i)) << "element " << i;
      ++compared;
    }
    EXPECT_GT(compared, n - 2 * kNf4BlockSize);
  }
}

TEST(Nf4, FastDequantizeEqualsReferenceOnAnyRange) {
  std::mt19937 rng(3);
  for (int64_t n : {1, 2, 63, 64, 65, 128, 1000, 64 * 257 + 3}) {
    const auto x = random_weights(n, static_cast<uint32_t>(n));
    const Nf4Tensor t = nf4_quantize(x.data(), n);
    for (int rep = 0; rep < 20; ++rep) {
      std::uniform_int_distribution<int64_t> pick(0, n);
      int64_t a = pick(rng), b = pick(rng);
      if (rep == 0) a = 0, b = n;
      if (a > b) std::swap(a, b);
      std::vector<float> fast(b - a + 1, 42.0f), ref(b - a + 1, 42.0f);
      nf4_dequantize(t, a, b - a, fast.data());
      nf4_dequantize_reference(t, a, b - a, ref.data());
      for (int64_t i = 0; i < b - a; ++i)
        ASSERT_EQ(std::bit_cast<uint32_t>(fast[i]), std::bit_cast<uint32_t>(ref[i]))
            << "n " << n << " element " << a + i;
      EXPECT_EQ(fast[b - a], 42.0f) << "wrote past the range";
    }
  }
}

TEST(Nf4, QuantizationDoesNotDependOnThreadCount) {
  const auto x = random_weights(64 * 1000 + 9, 21);
  set_threads(1);
  const Nf4Tensor a = nf4_quantize(x.data(), static_cast<int64_t>(x.size()));
  set_threads(4);
  const Nf4Tensor b = nf4_quantize(x.data(), static_cast<int64_t>(x.size()));
  set_threads(0);
  EXPECT_EQ(a.packed, b.packed);
  EXPECT_EQ(a.absmax_codes, b.absmax_codes);
  EXPECT_EQ(a.absmax_scales, b.absmax_scales);
  EXPECT_EQ(a.absmax_offset, b.absmax_offset);
}

TEST(Nf4, BadInputThrows) {
  std::vector<float> x(100, 0.1f);
  x[70] = std::nanf("");
  EXPECT_THROW(nf4_quantize(x.data(), 100), Error);
  x[70] = INFINITY;
  EXPECT_THROW(nf4_quantize(x.data(), 100), Error);
  x[70] = 0.3f;
  Nf4Tensor t = nf4_quantize(x.data(), 100);
  std::vector<float> y(100);
  EXPECT_THROW(nf4_dequantize(t, 90, 11, y.data()), Error);
  EXPECT_THROW(nf4_dequantize(t, -1, 2, y.data()), Error);
  t.absmax_codes.pop_back();
  EXPECT_THROW(nf4_dequantize(t, 0, 10, y.data()), Error);
  EXPECT_THROW(nf4_block_absmax(t), Error);
  const Nf4Tensor empty = nf4_quantize(nullptr, 0);
  EXPECT_EQ(empty.packed.size(), 0u);
  EXPECT_NO_THROW(nf4_dequantize(empty, 0, 0, y.data()));
}

// NF4 weights in rows of whole 64-blocks are held in 16-row panels: the same codes as the flat
// tensor, read back bit for bit (and in bf16 as f32_to_bf16 rounds them), for whole and partial panels, partial groups
// of 4 blocks, and rows crossing the flat tensor's groups of 256 absmax values (rows of 48 blocks).
TEST(Nf4Panels, HoldTheFlatTensorBitForBit) {
  std::mt19937 rng(8);
  std::normal_distribution<float> d(0.0f, 0.05f);
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{37, 3072}, {16, 320}, {5, 64}, {48, 128}}) {
    std::vector<float> x(static_cast<size_t>(rows * cols));
    for (auto& v : x) v = d(rng);
    x[3] = 0.9f;  // a block of a larger absmax than the rest
    const pricer::Nf4Tensor flat = pricer::nf4_quantize(x.data(), rows * cols);
    const pricer::Weight w = pricer::Weight::from_f32(x.data(), rows, cols, pricer::DType::NF4);
    ASSERT_FALSE(w.raw().empty()) << "rows of whole blocks are held in panels";
    EXPECT_EQ(w.raw().size(), static_cast<size_t>(pricer::nf4_panel_bytes(rows, cols)));
    // The flat bytes are not kept beside the panels (a second copy of every frozen weight).
    EXPECT_EQ(w.nf4().packed.capacity(), 0u);
    EXPECT_EQ(w.nf4().absmax_codes.capacity(), 0u);
    const pricer::Nf4Tensor back = w.nf4_flat();
    EXPECT_EQ(back.packed, flat.packed);
    EXPECT_EQ(back.absmax_codes, flat.absmax_codes);
    EXPECT_EQ(back.absmax_scales, flat.absmax_scales);
    std::vector<float> want(x.size()), got(x.size());
    pricer::nf4_dequantize(flat, 0, rows * cols, want.data());
    // Bands that start and end inside panels as well as whole ones.
    for (const auto& [r0, nr] : {std::pair<int64_t, int64_t>{0, rows}, {1, rows - 1}, {rows / 2, rows - rows / 2}}) {
      std::fill(got.begin(), got.end(), -7.0f);
      w.dequantize_rows(r0, nr, got.data());
      std::vector<uint16_t> got16(static_cast<size_t>(nr * cols), 0xFFFF);
      pricer::nf4_panels_dequantize_bf16(w.raw().data(), w.nf4(), cols, r0, nr, got16.data());
      for (int64_t i = 0; i < nr * cols; ++i) {
        ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want[r0 * cols + i]))
            << rows << "x" << cols << " band from row " << r0 << ", element " << i;
        ASSERT_EQ(got16[i], pricer::f32_to_bf16(want[r0 * cols + i])) << "bf16, element " << i;
      }
    }
  }
  // Rows that are not whole blocks stay flat.
  std::vector<float> x(2 * 96, 0.5f);
  EXPECT_TRUE(pricer::Weight::from_f32(x.data(), 2, 96, pricer::DType::NF4).raw().empty());
}
