// Weight storage: f32 <-> bf16/f16 rounding, the ggml block formats (hand-built blocks, quantize ->
// dequantize error bounds, fast dequantizers against their scalar references), and validation of
// raw data.
#include <gtest/gtest.h>
#include <immintrin.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"
#include "quant/ggml_blocks.h"
#include "quant/half.h"
#include "quant/q4_panels.h"
#include "quant/weight.h"

using namespace pricer;

namespace {

std::vector<float> gaussian(int64_t n, uint32_t seed, float sigma = 0.02f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> x(n);
  for (auto& v : x) v = d(rng);
  return x;
}

void put_f16(std::vector<uint8_t>& b, size_t off, uint16_t h) { std::memcpy(b.data() + off, &h, 2); }

// bf16 nearest to f by comparing the two neighbours, ties to the even pattern. Above the largest
// finite bf16 the upper neighbour is infinity, which IEEE rounding treats as 2^128.
uint16_t bf16_nearest_even(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t lo = static_cast<uint16_t>(u >> 16), hi = static_cast<uint16_t>(lo + 1);
  auto value = [](uint16_t h) {
    return (h & 0x7fff) == 0x7f80 ? std::copysign(std::ldexp(1.0, 128), bf16_to_f32(h)) : double(bf16_to_f32(h));
  };
  const double dl = std::fabs(static_cast<double>(f) - value(lo));
  const double dh = std::fabs(static_cast<double>(f) - value(hi));
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1) ? hi : lo;
}

double rel_rms(const std::vector<float>& x, const std::vector<float>& y) {
  double e = 0, s = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    e += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    s += double(x[i]) * x[i];
  }
  return std::sqrt(e / s);
}

const DType kBlockTypes[] = {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

}  // namespace

TEST(Half, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f), 0x3F80);  // tie, even stays
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3F82);  // tie, odd rounds up
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3F81);  // just above the tie
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds up to inf
  EXPECT_EQ(f32_to_bf16(INFINITY), 0x7F80);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::bit_cast<float>(0x7F800001u)))));  // low-bit NaN stays NaN
  std::mt19937 rng(1);
  for (int i = 0; i < 200000; ++i) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (!std::isfinite(f)) continue;
    ASSERT_EQ(f32_to_bf16(f), bf16_nearest_even(f)) << std::hexfloat << f;
  }
}

TEST(Half, F16MatchesHardwareConversion) {
  // F16C converts with round to nearest even: the reference for ggml's GGML_FP32_TO_FP16.
  for (uint32_t h = 0; h < 65536; ++h) {
    const float hw = _cvtsh_ss(static_cast<unsigned short>(h));
    const float sw = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(hw)) {
      ASSERT_TRUE(std::isnan(sw)) << h;
      continue;
    }
    ASSERT_EQ(std::bit_cast<uint32_t>(sw), std::bit_cast<uint32_t>(hw)) << h;
  }
  std::mt19937 rng(2);
  std::vector<float> probes = {0.0f,         -0.0f,           65504.0f,           65519.99f, 65520.0f,
                               0x1p-24f,     0x1p-25f,        0x1.8p-25f,         0x1p-14f,  0x1.ffcp-15f,
                               0x1.ffep-15f, 1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f};
  for (int i = 0; i < 300000; ++i) {
    // Concentrate on the f16 range: random sign, exponent 2^-30..2^17, random significand.
    const uint32_t e = static_cast<uint32_t>(97 + rng() % 48);
    probes.push_back(
        std::bit_cast<float>(static_cast<uint32_t>((rng() & 0x80000000u) | (e << 23) | (rng() & 0x7fffffu))));
  }
  for (float f : probes) {
    const uint16_t hw = _cvtss_sh(f, 0);
    ASSERT_EQ(f32_to_f16(f), hw) << std::hexfloat << f;
  }
  EXPECT_EQ(f32_to_f16(INFINITY), 0x7C00);
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(std::nanf("")))));
}

TEST(Weight, F32Bf16F16RoundTrip) {
  const int64_t rows = 5, cols = 48;
  const auto x = gaussian(rows * cols, 3, 1.0f);
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    const Weight w = Weight::from_f32(x.data(), rows, cols, t);
    EXPECT_EQ(w.dtype(), t);
    EXPECT_EQ(w.rows(), rows);
    EXPECT_EQ(w.cols(), cols);
    EXPECT_EQ(w.bytes(), static_cast<size_t>(rows * cols) * (t == DType::F32 ? 4 : 2));
    const auto y = w.to_f32();
    for (int64_t i = 0; i < rows * cols; ++i) {
      const float want = t == DType::F32    ? x[i]
                         : t == DType::BF16 ? bf16_to_f32(f32_to_bf16(x[i]))
                                            : f16_to_f32(f32_to_f16(x[i]));
      ASSERT_EQ(y[i], want) << dtype_name(t) << " element " << i;
    }
  }
}

TEST(Weight, DequantizeRowsIsTheMatchingSliceForEveryFormat) {
  const int64_t rows = 7, cols = 512;
  const auto x = gaussian(rows * cols, 4);
  for (DType t : kDTypes) {
    const Weight w = Weight::from_f32(x.data(), rows, cols, t);
    const auto all = w.to_f32();
    for (int64_t r0 = 0; r0 < rows; ++r0)
      for (int64_t nr = 0; r0 + nr <= rows; nr += 3) {
        std::vector<float> band(nr * cols + 1, 7.0f);
        w.dequantize_rows(r0, nr, band.data());
        for (int64_t i = 0; i < nr * cols; ++i) ASSERT_EQ(band[i], all[r0 * cols + i]) << dtype_name(t);
        ASSERT_EQ(band[nr * cols], 7.0f) << "wrote past the band";
      }
    std::vector<float> out(cols);
    EXPECT_THROW(w.dequantize_rows(rows, 1, out.data()), Error);
    EXPECT_THROW(w.dequantize_rows(-1, 1, out.data()), Error);
  }
}

TEST(Weight, HandBuiltQ8_0Block) {
  std::vector<uint8_t> b(34, 0);
  put_f16(b, 0, 0x3800);  // d = 0.5
  const int8_t qs[5] = {0, 1, -1, 127, -128};
  std::memcpy(b.data() + 2, qs, 5);
  const auto y = Weight::from_raw(DType::Q8_0, 1, 32, b).to_f32();
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[1], 0.5f);
  EXPECT_EQ(y[2], -0.5f);
  EXPECT_EQ(y[3], 63.5f);
  EXPECT_EQ(y[4], -64.0f);
  EXPECT_EQ(y[31], 0.0f);
}

TEST(Weight, HandBuiltQ4_0Block) {
  std::vector<uint8_t> b(18, 0x88);  // every nibble 8 -> 0
  put_f16(b, 0, 0x4000);  // d = 2
  b[2] = 0xF0;  // element 0: 0 - 8 -> -16; element 16: 15 - 8 -> 14
  b[3] = 0x39;  // element 1: 9 - 8 -> 2;  element 17: 3 - 8 -> -10
  const auto y = Weight::from_raw(DType::Q4_0, 1, 32, b).to_f32();
  EXPECT_EQ(y[0], -16.0f);
  EXPECT_EQ(y[16], 14.0f);
  EXPECT_EQ(y[1], 2.0f);
  EXPECT_EQ(y[17], -10.0f);
  EXPECT_EQ(y[2], 0.0f);
}

TEST(Weight, HandComputedQ8_0AndQ4_0Quantization) {
  // Q8_0: x_j = (j - 16) / 4, amax 4 -> d = 4/127, q_j = round((j - 16) * 7.9375).
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = (j - 16) * 0.25f;
  auto raw = Weight::from_f32(x.data(), 1, 32, DType::Q8_0).file_bytes();
  ASSERT_EQ(raw.size(), 34u);
  uint16_t d;
  std::memcpy(&d, raw.data(), 2);
  EXPECT_EQ(d, f32_to_f16(4.0f / 127.0f));
  const int8_t want8[] = {-127, -119, -111, -103};  // -127, round(-119.06), round(-111.13), round(-103.19)
  for (int j = 0; j < 4; ++j) EXPECT_EQ(static_cast<int8_t>(raw[2 + j]), want8[j]) << j;
  EXPECT_EQ(static_cast<int8_t>(raw[2 + 16]), 0);
  EXPECT_EQ(static_cast<int8_t>(raw[2 + 31]), 119);
  // Q4_0: x_j = (j % 16 - 8) / 2; the first largest magnitude is -4, so d = -4 / -8 = 0.5 and
  // x_j / d + 8.5 truncates to j % 16: byte j holds j in both nibbles.
  for (int j = 0; j < 32; ++j) x[j] = (j % 16 - 8) * 0.5f;
  raw = Weight::from_f32(x.data(), 1, 32, DType::Q4_0).file_bytes();
  ASSERT_EQ(raw.size(), 18u);
  std::memcpy(&d, raw.data(), 2);
  EXPECT_EQ(d, 0x3800);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(raw[2 + j], j | (j << 4)) << j;
}

TEST(Weight, Q4_0IsHeldInPanelsOfTheSameBytes) {
  // 37 rows: two whole panels and one of 5 rows padded with zero rows.
  const int64_t rows = 37, cols = 96, nb = cols / 32;
  auto x = gaussian(rows * cols, 21);
  const Weight w = Weight::from_f32(x.data(), rows, cols, DType::Q4_0);
  const std::vector<uint8_t> file = w.file_bytes();
  ASSERT_EQ(file.size(), static_cast<size_t>(rows * nb * 18));
  ASSERT_EQ(w.raw().size(), static_cast<size_t>(3 * kQ4PanelRows * nb * 18));
  // Value j of row r, block b, read from each layout as documented.
  auto file_value = [&](int64_t r, int64_t b, int64_t j) {
    const uint8_t byte = file[(r * nb + b) * 18 + 2 + j % 16];
    return j < 16 ? byte & 15 : byte >> 4;
  };
  auto panel_value = [&](int64_t r, int64_t b, int64_t j) {
    const uint8_t* pb = w.raw().data() + ((r / 16) * nb + b) * kQ4PanelBlockBytes;
    const uint8_t byte = pb[(j / 8) * 64 + 4 * (r % 16) + j % 4];
    return j % 8 < 4 ? byte & 15 : byte >> 4;
  };
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < nb; ++b) {
      for (int64_t j = 0; j < 32; ++j)
        ASSERT_EQ(panel_value(r, b, j), file_value(r, b, j)) << r << " " << b << " " << j;
      const uint8_t* pb = w.raw().data() + ((r / 16) * nb + b) * kQ4PanelBlockBytes;
      ASSERT_EQ(0, std::memcmp(pb + kQ4PanelCodeBytes + 2 * (r % 16), file.data() + (r * nb + b) * 18, 2));
    }
  // The padding rows are zero, scale and nibbles.
  const uint8_t* last = w.raw().data() + 2 * nb * kQ4PanelBlockBytes;
  for (int64_t r = 5; r < 16; ++r) EXPECT_EQ(last[kQ4PanelCodeBytes + 2 * r], 0) << r;
  // Values as the file's blocks hold them, a row range that starts and ends inside panels.
  std::vector<float> want(static_cast<size_t>(rows * cols)), got(static_cast<size_t>(20 * cols));
  dequantize_raw_reference(DType::Q4_0, file.data(), want.data(), rows * cols);
  w.dequantize_rows(9, 20, got.data());
  for (int64_t i = 0; i < 20 * cols; ++i) ASSERT_EQ(got[i], want[9 * cols + i]) << i;
  // From the file's bytes, the same panels and back.
  const Weight again = Weight::from_raw(DType::Q4_0, rows, cols, file);
  EXPECT_EQ(again.raw(), w.raw());
  EXPECT_EQ(again.file_bytes(), file);
}

TEST(Weight, HandBuiltQ4_KBlock) {
  std::vector<uint8_t> b(144, 0);
  put_f16(b, 0, 0x3C00);  // d = 1
  put_f16(b, 2, 0x3800);  // dmin = 0.5
  uint8_t* sc = b.data() + 4;
  sc[0] = 2 | (1 << 6);  // sub-block 0: scale 2; top bits of sub-block 4's scale = 01
  sc[4] = 3;  // sub-block 0: min 3; top bits of sub-block 4's min = 00
  sc[8] = 0x21;  // sub-block 4: scale low 1 (-> 1 + 16 = 17), min low 2 (-> 2)
  uint8_t* q = b.data() + 16;
  q[0] = 0x05;  // element 0 (sub-block 0, low nibble 5): 2*5 - 0.5*3 = 8.5
  q[64] = 0x03;  // element 128 (sub-block 4, low nibble 3): 17*3 - 0.5*2 = 50
  const auto y = Weight::from_raw(DType::Q4_K, 1, 256, b).to_f32();
  EXPECT_EQ(y[0], 8.5f);
  EXPECT_EQ(y[1], -1.5f);  // nibble 0 in sub-block 0
  EXPECT_EQ(y[128], 50.0f);
  EXPECT_EQ(y[129], -1.0f);
  EXPECT_EQ(y[32], 0.0f);  // sub-block 1: scale 0, min 0
}

TEST(Weight, HandBuiltQ5_KBlock) {
  std::vector<uint8_t> b(176, 0);
  put_f16(b, 0, 0x3C00);  // d = 1
  put_f16(b, 2, 0x3800);  // dmin = 0.5
  uint8_t* sc = b.data() + 4;
  sc[0] = 2;  // sub-block 0: scale 2
  sc[4] = 3;  // sub-block 0: min 3
  sc[3] = 1;  // sub-block 3 (elements 96..127, high nibbles of the second 32 bytes): scale 1
  sc[7] = 4;  // sub-block 3: min 4
  uint8_t* qh = b.data() + 16;
  uint8_t* ql = b.data() + 48;
  ql[0] = 0x05;  // element 0: low bits 5
  qh[0] = 1;  // element 0: fifth bit (bit 0 of qh[0]) -> level 21: 2*21 - 0.5*3 = 40.5
  ql[32 + 2] = 0x70;  // element 96 + 2: low bits 7 in the high nibble
  qh[2] = 1 << 3;  // element 98: fifth bit (bit 3: sub-block 3) -> level 23: 23 - 2 = 21
  const auto y = Weight::from_raw(DType::Q5_K, 1, 256, b).to_f32();
  EXPECT_EQ(y[0], 40.5f);
  EXPECT_EQ(y[1], -1.5f);  // level 0 in sub-block 0
  EXPECT_EQ(y[98], 21.0f);
  EXPECT_EQ(y[97], -2.0f);
  EXPECT_EQ(y[66], 0.0f);  // sub-block 2: scale 0, min 0, and qh[2]'s bit 3 is not its bit
}

TEST(Weight, HandBuiltQ6_KBlock) {
  std::vector<uint8_t> b(210, 0);
  uint8_t* ql = b.data();
  uint8_t* qh = b.data() + 128;
  int8_t* sc = reinterpret_cast<int8_t*>(b.data() + 192);
  put_f16(b, 208, 0x3400);  // d = 0.25
  sc[0] = 4;
  sc[2] = -2;
  sc[4] = 1;
  ql[0] = 0x75;  // element 0 low 5, element 64 low 7
  ql[32] = 0x01;  // element 32 low 1
  qh[0] = 2 | (0 << 2) | (1 << 4);
  const auto y = Weight::from_raw(DType::Q6_K, 1, 256, b).to_f32();
  EXPECT_EQ(y[0], 0.25f * 4 * (37 - 32));  // 5
  EXPECT_EQ(y[32], 0.25f * -2 * (1 - 32));  // 15.5
  EXPECT_EQ(y[64], 0.25f * 1 * (23 - 32));  // -2.25
  EXPECT_EQ(y[1], 0.25f * 4 * (0 - 32));  // -32
}

TEST(Weight, BlockQuantizationErrorBounds) {
  const int64_t rows = 16, cols = 1024;
  auto x = gaussian(rows * cols, 5);
  x[100] = 0.3f;  // an outlier
  for (int64_t i = 2048; i < 2048 + 256; ++i) x[i] = 0.0f;  // an all-zero region
  // Q8_0 and Q4_0: every element is within half a step (a full step where Q4_0 clamps the
  // side opposite its largest magnitude) of its block scale, plus the f16 rounding of the scale.
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    const auto y = Weight::from_f32(x.data(), rows, cols, t).to_f32();
    for (int64_t b = 0; b < rows * cols / 32; ++b) {
      float amax = 0, max = 0;
      for (int j = 0; j < 32; ++j)
        if (std::fabs(x[b * 32 + j]) > amax) amax = std::fabs(x[b * 32 + j]), max = x[b * 32 + j];
      const float d = t == DType::Q8_0 ? amax / 127 : std::fabs(max) / 8;
      const float d16 = f16_to_f32(f32_to_f16(d));
      const float qmax = t == DType::Q8_0 ? 127 : 8;
      for (int j = 0; j < 32; ++j) {
        const float step = (t == DType::Q4_0 && x[b * 32 + j] * max < 0) ? d : d / 2;
        ASSERT_LE(std::fabs(x[b * 32 + j] - y[b * 32 + j]), step + qmax * std::fabs(d - d16) + 1e-7f * amax)
            << dtype_name(t) << " element " << b * 32 + j;
      }
    }
  }
  // All formats: the zero region stays exactly zero and the overall error is what each format's
  // bit width allows.
  const std::pair<DType, double> limits[] = {{DType::F16, 1e-3},  {DType::BF16, 4e-3}, {DType::Q8_0, 0.01},
                                             {DType::Q6_K, 0.03}, {DType::Q5_K, 0.06}, {DType::Q4_K, 0.12},
                                             {DType::Q4_0, 0.15}};
  for (const auto& [t, lim] : limits) {
    const auto y = Weight::from_f32(x.data(), rows, cols, t).to_f32();
    EXPECT_LT(rel_rms(x, y), lim) << dtype_name(t);
    for (int64_t i = 2048; i < 2048 + 256; ++i) ASSERT_EQ(y[i], 0.0f) << dtype_name(t);
  }
}

TEST(Weight, RequantizingDequantizedBlocksReproducesTheBytes) {
  // Q8_0 and Q4_0 map each block's extreme element to the end code, so the dequantized block
  // has the same scale and every value sits on a level: the bytes must come back unchanged.
  const int64_t rows = 4, cols = 256;
  auto x = gaussian(rows * cols, 9);
  x[3] = -0.5f;
  for (DType t : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0}) {
    const Weight w = Weight::from_f32(x.data(), rows, cols, t);
    const auto y = w.to_f32();
    EXPECT_EQ(Weight::from_f32(y.data(), rows, cols, t).raw(), w.raw()) << dtype_name(t);
  }
}

TEST(Weight, KQuantsPickTheNearestLevelOfTheStoredScales) {
  // Given the scales each block stores, K-quant quantization must choose, per element, the
  // representable level closest to it (the levels are decoded here independently).
  const int64_t n = 256 * 12;
  auto x = gaussian(n, 6);
  for (int64_t i = 0; i < n; i += 97) x[i] *= 8.0f;
  for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const Weight w = Weight::from_f32(x.data(), 1, n, t);
    const auto y = w.to_f32();
    const auto& raw = w.raw();
    for (int64_t b = 0; b < n / 256; ++b) {
      const uint8_t* blk = raw.data() + b * block_layout(t).bytes;
      for (int i = 0; i < 256; ++i) {
        float best = INFINITY;
        if (t != DType::Q6_K) {
          uint16_t hd, hm;
          std::memcpy(&hd, blk, 2);
          std::memcpy(&hm, blk + 2, 2);
          const int j = i / 32;  // sub-block: elements 64c..64c+31 are sub-block 2c, the rest 2c+1
          const uint8_t* s = blk + 4;
          const int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
          const int m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
          const float d = f16_to_f32(hd) * sc, dm = f16_to_f32(hm) * m;
          const int levels = t == DType::Q4_K ? 16 : 32;
          for (int q = 0; q < levels; ++q) best = std::min(best, std::fabs(x[b * 256 + i] - (d * q - dm)));
        } else {
          uint16_t hd;
          std::memcpy(&hd, blk + 208, 2);
          const int8_t sc = static_cast<int8_t>(blk[192 + i / 16]);
          const float d = f16_to_f32(hd) * sc;
          for (int q = -32; q < 32; ++q) best = std::min(best, std::fabs(x[b * 256 + i] - d * q));
        }
        ASSERT_LE(std::fabs(x[b * 256 + i] - y[b * 256 + i]), best * (1 + 1e-5f) + 1e-9f)
            << dtype_name(t) << " element " << b * 256 + i;
      }
    }
  }
}

TEST(Weight, FastDequantizersEqualTheirScalarReferences) {
  std::mt19937 rng(8);
  for (DType t : kBlockTypes) {
    const BlockLayout L = block_layout(t);
    const int64_t nblocks = 37;
    std::vector<uint8_t> raw(nblocks * L.bytes);
    for (auto& v : raw) v = static_cast<uint8_t>(rng());
    if (t != DType::F16 && t != DType::BF16) {
      // Random but finite scales, as from_raw admits.
      for (int64_t b = 0; b < nblocks; ++b) {
        const int offs[2] = {t == DType::Q6_K ? 208 : 0, t == DType::Q4_K || t == DType::Q5_K ? 2 : -1};
        for (int o : offs)
          if (o >= 0) put_f16(raw, b * L.bytes + o, static_cast<uint16_t>(0x2000 + rng() % 0x3000 + (rng() & 0x8000)));
      }
    }
    const int64_t n = nblocks * L.elems;
    std::vector<float> fast(n), ref(n);
    dequantize_raw(t, raw.data(), fast.data(), n);
    dequantize_raw_reference(t, raw.data(), ref.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      if (std::isnan(ref[i])) {
        ASSERT_TRUE(std::isnan(fast[i]));
        continue;
      }
      ASSERT_EQ(std::bit_cast<uint32_t>(fast[i]), std::bit_cast<uint32_t>(ref[i])) << dtype_name(t) << " element " << i;
    }
  }
}

TEST(Weight, RawDataIsValidated) {
  // Wrong byte count.
  EXPECT_THROW(Weight::from_raw(DType::Q8_0, 2, 64, std::vector<uint8_t>(4 * 34 - 1)), Error);
  EXPECT_THROW(Weight::from_raw(DType::F16, 3, 5, std::vector<uint8_t>(29)), Error);
  EXPECT_THROW(Weight::from_raw(DType::F32, 3, 5, std::vector<uint8_t>(59)), Error);
  // cols not a multiple of the block.
  EXPECT_THROW(Weight::from_raw(DType::Q4_K, 1, 128, std::vector<uint8_t>(72)), Error);
  EXPECT_THROW(Weight::from_f32(gaussian(40, 1).data(), 1, 40, DType::Q4_0), Error);
  // Hostile shapes.
  EXPECT_THROW(Weight::from_raw(DType::F16, -1, 4, {}), Error);
  EXPECT_THROW(Weight::from_raw(DType::Q8_0, int64_t{1} << 40, int64_t{1} << 40, {}), Error);
  // NF4 is not raw.
  EXPECT_THROW(Weight::from_raw(DType::NF4, 1, 64, std::vector<uint8_t>(32)), Error);
  // Non-finite block scale.
  std::vector<uint8_t> b(2 * 18, 0);
  put_f16(b, 18, 0x7C00);
  try {
    Weight::from_raw(DType::Q4_0, 1, 64, b);
    FAIL() << "accepted an infinite scale";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("block 1"), std::string::npos) << e.what();
  }
  // Non-finite input to a quantizer.
  auto x = gaussian(64, 2);
  x[5] = NAN;
  EXPECT_THROW(Weight::from_f32(x.data(), 1, 64, DType::Q8_0), Error);
  EXPECT_THROW(Weight::from_f32(x.data(), 1, 64, DType::NF4), Error);
  // Right sizes are accepted, including F32 raw bytes.
  std::vector<float> f = {1.5f, -2.0f};
  std::vector<uint8_t> fb(8);
  std::memcpy(fb.data(), f.data(), 8);
  EXPECT_EQ(Weight::from_raw(DType::F32, 1, 2, fb).to_f32(), f);
}
