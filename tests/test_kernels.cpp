// The fast CPU backend against the scalar reference backend, op by op, on random inputs of many
// shapes (odd sizes, several sequences, GQA), plus reproducibility and input validation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "kernels/backend.h"
#include "kernels/bf16.h"
#include "kernels/gemv.h"
#include "kernels/q8_dot.h"
#include "kernels/q8_gemm.h"
#include "quant/half.h"

namespace {

using pricer::Backend;
using pricer::DType;
using pricer::Weight;
using Vec = std::vector<float>;

Vec random_vec(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  Vec v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// |got - want| <= tol * (|want| + mean|want|) + floor: relative per element, with a floor at the
// array's typical magnitude so values that cancel to near zero are not held to an absurd bound;
// floor covers outputs that are a difference of much larger terms.
void expect_close(const Vec& got, const Vec& want, float tol, const std::string& what, double floor = 0.0) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double mean = 0;
  for (float w : want) mean += std::abs(w);
  mean = want.empty() ? 0.0 : mean / double(want.size());
  int reported = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double bound = tol * (std::abs(double(want[i])) + mean) + floor + 1e-30;
    const double err = std::abs(double(got[i]) - double(want[i]));
    if (!(err <= bound)) {
      ADD_FAILURE() << what << "[" << i << "]: fast " << got[i] << " vs reference " << want[i] << " (err " << err
                    << ", bound " << bound << ")";
      if (++reported >= 5) return;
    }
  }
}

void expect_bitwise(const Vec& a, const Vec& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << what << " differs between runs";
}

struct Backends : ::testing::Test {
  std::unique_ptr<Backend> fast = pricer::make_cpu_backend();
  std::unique_ptr<Backend> ref = pricer::make_reference_backend();
};

// ---------------------------------------------------------------------------------------------
// GEMM and linear layers

TEST_F(Backends, GemmAllTransposes) {
  std::mt19937 rng(1);
  const int64_t shapes[][3] = {{1, 1, 1}, {5, 7, 3}, {17, 9, 33}, {64, 33, 100}};
  for (const auto& s : shapes) {
    const int64_t M = s[0], N = s[1], K = s[2];
    for (int ta = 0; ta < 2; ++ta) {
      for (int tb = 0; tb < 2; ++tb) {
        for (float beta : {0.0f, 0.5f}) {
          Vec A = random_vec(M * K, rng), B = random_vec(K * N, rng), C0 = random_vec(M * N, rng);
          Vec Cf = C0, Cr = C0;
          fast->gemm(ta, tb, M, N, K, 0.7f, A.data(), B.data(), beta, Cf.data());
          ref->gemm(ta, tb, M, N, K, 0.7f, A.data(), B.data(), beta, Cr.data());
          expect_close(Cf, Cr, 2e-5f,
                       "gemm " + std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) +
                           " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
        }
      }
    }
  }
  // An empty inner dimension leaves beta * C.
  Vec C = {1.0f, 2.0f}, Cr = C;
  fast->gemm(false, false, 1, 2, 0, 1.0f, nullptr, nullptr, 0.5f, C.data());
  ref->gemm(false, false, 1, 2, 0, 1.0f, nullptr, nullptr, 0.5f, Cr.data());
  expect_close(C, Cr, 0.0f, "gemm K=0");
  EXPECT_EQ(C[1], 1.0f);
}

// ggml block layouts, for building raw weights of the GGUF formats from random bytes.
size_t ggml_block_bytes(DType t) {
  switch (t) {
    case DType::Q8_0: return 34;
    case DType::Q4_0: return 18;
    case DType::Q4_K: return 144;
    case DType::Q5_K: return 176;
    case DType::Q6_K: return 210;
    default: return 0;
  }
}
int64_t ggml_block_size(DType t) { return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K ? 256 : 32; }

// Random but well-formed block data: the f16 scales are small normal numbers, the rest random.
std::vector<uint8_t> random_ggml_raw(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  const size_t bb = ggml_block_bytes(t);
  const int64_t blocks = rows * cols / ggml_block_size(t);
  std::vector<uint8_t> raw(bb * size_t(blocks));
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> sc(0.001f, 0.05f);
  for (auto& b : raw) b = uint8_t(byte(rng));
  auto put_f16 = [&](uint8_t* p, float f) {
    const uint16_t h = pricer::f32_to_f16(f);
    std::memcpy(p, &h, 2);
  };
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t* blk = raw.data() + size_t(b) * bb;
    switch (t) {
      case DType::Q8_0:
      case DType::Q4_0: put_f16(blk, sc(rng)); break;
      case DType::Q4_K:
      case DType::Q5_K:
        put_f16(blk, sc(rng));
        put_f16(blk + 2, sc(rng));
        break;
      case DType::Q6_K: put_f16(blk + 208, sc(rng)); break;
      default: break;
    }
  }
  return raw;
}

// Makes W in format t from random data, or returns false when the format is not available
// through Weight (the caller skips it then).
bool make_weight(DType t, int64_t rows, int64_t cols, std::mt19937& rng, Weight& W) {
  try {
    if (ggml_block_bytes(t) != 0) {
      W = Weight::from_raw(t, rows, cols, random_ggml_raw(t, rows, cols, rng));
    } else {
      const Vec w = random_vec(rows * cols, rng, 0.1f);
      W = Weight::from_f32(w.data(), rows, cols, t);
    }
    W.to_f32();  // dequantization must be available too
    return true;
  } catch (const pricer::Error&) {
    return false;
  }
}

// (weight format, compute dtype)
class LinearFormat : public ::testing::TestWithParam<std::tuple<DType, DType>> {
 protected:
  DType compute = std::get<1>(GetParam());
  std::unique_ptr<Backend> fast = pricer::make_cpu_backend(compute);
  std::unique_ptr<Backend> ref = pricer::make_reference_backend(compute);
};

TEST_P(LinearFormat, ForwardAndBackwardInputMatchReference) {
  const DType t = std::get<0>(GetParam());
  std::mt19937 rng(2 + int(t));
  // (out, in): odd widths where the format allows them, several bands (band_rows >= 64), and
  // NF4 rows that start inside a 64-block or on an odd element (flat) or are whole blocks (panels).
  std::vector<std::pair<int64_t, int64_t>> shapes;
  if (ggml_block_bytes(t) != 0) {
    const int64_t bs = ggml_block_size(t);
    shapes = {{7, bs}, {300, 2 * bs}, {65, 4 * bs}};
  } else {
    shapes = {{7, 64}, {5, 33}, {9, 96}, {300, 33}, {150, 2100}, {300, 128}};  // NF4: panels from 64 and 128
  }
  int tested = 0;
  for (const auto& [out, in] : shapes) {
    Weight W;
    if (!make_weight(t, out, in, rng, W)) {
      GTEST_SKIP() << "format " << pricer::dtype_name(t) << " is not supported by Weight";
    }
    ASSERT_EQ(W.dtype(), t);
    for (int64_t n : {1, 2, 8, 17}) {  // 1 to 8 rows: the few-row kernels where they apply
      const std::string tag = std::string(pricer::dtype_name(t)) + " [" + std::to_string(out) + "x" +
                              std::to_string(in) + "] n=" + std::to_string(n);
      const Vec x = random_vec(n * in, rng);
      for (float beta : {0.0f, 1.0f}) {
        const Vec y0 = random_vec(n * out, rng);
        Vec yf = y0, yr = y0;
        fast->linear_forward(W, x.data(), yf.data(), n, beta);
        ref->linear_forward(W, x.data(), yr.data(), n, beta);
        expect_close(yf, yr, 2e-5f, "linear_forward " + tag + " beta=" + std::to_string(beta));
      }
      const Vec dy = random_vec(n * out, rng), dx0 = random_vec(n * in, rng);
      Vec dxf = dx0, dxr = dx0;
      fast->linear_backward_input(W, dy.data(), dxf.data(), n);
      ref->linear_backward_input(W, dy.data(), dxr.data(), n);
      expect_close(dxf, dxr, 2e-5f, "linear_backward_input " + tag);
      ++tested;
    }
  }
  EXPECT_GT(tested, 0);
}

// The single-token GEMV called directly, every storage format it takes (f32 included, which
// linear_forward sends to the GEMM instead), against the reference backend's plain loops.
TEST_F(Backends, FusedGemvMatchesTheReferenceInEveryFormat) {
  std::mt19937 rng(21);
  int tested = 0;
  for (DType t : pricer::kDTypes) {
    Weight W;
    if (!make_weight(t, 37, 256, rng, W)) continue;
    const Vec x = random_vec(256, rng);
    for (float beta : {0.0f, 1.0f}) {
      const Vec y0 = random_vec(37, rng);
      Vec yf = y0, yr = y0;
      pricer::kernels::fused_gemv(W, x.data(), yf.data(), beta);
      ref->linear_forward(W, x.data(), yr.data(), 1, beta);
      expect_close(yf, yr, 2e-5f, "fused_gemv " + std::string(pricer::dtype_name(t)) + " beta=" + std::to_string(beta));
    }
    ++tested;
  }
  EXPECT_GE(tested, 6);
}

// The integer path (compute q8_0) differs from the float product by the rounding of the
// activations to blocks of 32 (for NF4, of 64; per value at most half a step, its block's largest
// magnitude / 127) and, for NF4, by the code values taken as integers of 1/32512 of the block's absmax.
TEST(Q8Dot, IntegerPathIsTheFloatProductUpToActivationRounding) {
  using pricer::kernels::Q8Isa;
  std::mt19937 rng(31);
  // Rows of 320: whole steps of 128 values and 64 after them (for NF4, a group of 4 blocks and
  // one more); rows of 128: one step and nothing after.
  for (const auto& [format, cols] : {std::pair{DType::Q8_0, int64_t{320}},
                                     {DType::Q4_0, 320},
                                     {DType::Q4_0, 128},
                                     {DType::NF4, 320},
                                     {DType::NF4, 128},
                                     {DType::NF4, 3072}}) {  // rows crossing groups of 256 absmax values
    const DType t = format;  // plain variables: lambdas below capture them
    const int64_t in = cols;
    const int64_t out = 23, n = 3;
    const Weight W = t == DType::NF4 ? Weight::from_f32(random_vec(out * in, rng, 0.1f).data(), out, in, t)
                                     : Weight::from_raw(t, out, in, random_ggml_raw(t, out, in, rng));
    const std::vector<float> w = W.to_f32();
    Vec x = random_vec(n * in, rng);
    x[5] = 40.0f;  // one block with an outlier: its step is coarse, the others' fine
    // A block whose step is 1: its halves are ties, rounded to even by both kernels alike.
    for (int64_t j = 128; j < 192; ++j) x[j] = static_cast<float>(j % 7) - 2.5f;
    x[130] = 127.0f;
    Vec yf(n * out), yr(n * out);
    pricer::kernels::q8_linear_forward_reference(W, x.data(), yr.data(), n, 0.0f);
    for (Q8Isa isa : {Q8Isa::Avx512, Q8Isa::Avx2}) {
      if (!pricer::kernels::q8_isa_built(isa)) continue;
      pricer::kernels::q8_linear_forward(W, x.data(), yf.data(), n, 0.0f, isa);
      expect_close(yf, yr, 1e-5f,
                   std::string("q8 fast against its scalar twin, ") + std::string(pricer::dtype_name(t)) +
                       (isa == Q8Isa::Avx2 ? " avx2" : " avx512"));
      // Adding into y (beta): a Q4_0 panel's rows past the matrix's end must stay unwritten.
      const Vec y0 = random_vec(n * out + 1, rng);
      Vec yb = y0, ybr = y0;
      pricer::kernels::q8_linear_forward(W, x.data(), yb.data(), n, 0.5f, isa);
      pricer::kernels::q8_linear_forward_reference(W, x.data(), ybr.data(), n, 0.5f);
      expect_close(yb, ybr, 1e-5f, std::string("q8 fast, beta 0.5, ") + std::string(pricer::dtype_name(t)));
      EXPECT_EQ(yb.back(), y0.back());
    }
    // Activation blocks: 32 in a row, or for NF4 its 64.
    auto group = [&](int64_t j) { return t == DType::NF4 ? j / 64 : j / 32; };
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) {
      std::vector<float> amax(in / 32, 0.0f);
      for (int64_t j = 0; j < in; ++j) amax[group(j)] = std::max(amax[group(j)], std::fabs(x[i * in + j]));
      for (int64_t o = 0; o < out; ++o) {
        double exact = 0, bound = 1e-5;
        for (int64_t j = 0; j < in; ++j) {
          const double wj = w[o * in + j], xj = x[i * in + j];
          exact += wj * xj;
          bound += std::fabs(wj) * (amax[group(j)] / 127 * 0.5 * 1.002 + amax[group(j)] * 0x1p-11);
          if (t == DType::NF4) {
            float blk = 0;
            for (int64_t e = (o * in + j) / 64 * 64; e < (o * in + j) / 64 * 64 + 64; ++e)
              blk = std::max(blk, std::fabs(w[e]));
            bound += std::fabs(xj) * blk * 1.6e-5;
          }
        }
        const double err = std::fabs(yf[i * out + o] - exact);
        ASSERT_LE(err, bound) << pricer::dtype_name(t) << " row " << o << " token " << i;
        worst = std::max(worst, err / bound);
      }
    }
    EXPECT_GT(worst, 0.01) << "the activations were not rounded: the integer path did not run";
  }
  Weight f16 = Weight::from_f32(random_vec(64, rng).data(), 2, 32, DType::F16);
  Vec x = random_vec(32, rng), y(2);
  EXPECT_THROW(pricer::kernels::q8_linear_forward(f16, x.data(), y.data(), 1, 0.0f), pricer::Error);
  Weight odd_nf4 = Weight::from_f32(random_vec(192, rng).data(), 2, 96, DType::NF4);  // rows of 96: not whole blocks
  EXPECT_FALSE(pricer::kernels::takes_q8_activations(odd_nf4));
}

// Under compute bf16, a layer's matrices of one input take their bands in one pass: the very
// outputs of one call per matrix, for weights of several bands and of less than one, mixed
// formats (NF4 panels, Q4_0 through f32 tiles, bf16), one token and many.
TEST(LinearsForward, OnePassOfBf16BandsGivesEachMatrixsOutput) {
  pricer::set_threads(2);
  std::mt19937 rng(34);
  const int64_t in = 128;
  std::vector<Weight> Ws;
  Ws.push_back(Weight::from_f32(random_vec(600 * in, rng, 0.1f).data(), 600, in, DType::NF4));
  Ws.push_back(Weight::from_f32(random_vec(40 * in, rng, 0.1f).data(), 40, in, DType::Q4_0));
  Ws.push_back(Weight::from_f32(random_vec(7 * in, rng, 0.1f).data(), 7, in, DType::BF16));
  const std::vector<const Weight*> ptrs{&Ws[0], &Ws[1], &Ws[2]};
  const auto be = pricer::make_cpu_backend(DType::BF16);
  for (int64_t n : {1, 17}) {
    const Vec x = random_vec(n * in, rng);
    std::vector<Vec> one(3), many(3);
    std::vector<float*> ys;
    for (size_t i = 0; i < 3; ++i) {
      one[i].assign(n * Ws[i].rows(), 0.0f);
      many[i].assign(n * Ws[i].rows() + 1, 7.0f);  // one float past the end: never written
      be->linear_forward(Ws[i], x.data(), one[i].data(), n, 0.0f);
      ys.push_back(many[i].data());
    }
    be->linears_forward(ptrs, x.data(), ys, n);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(many[i].back(), 7.0f);
      many[i].pop_back();
      EXPECT_EQ(many[i], one[i]) << "matrix " << i << " n=" << n;
    }
  }
}

// A layer's matrices of one input in one pass (x rounded once, no barrier between matrices):
// the very sums of one call per matrix, matrices of whole and partial 16-row panels, 1 and 3 tokens.
TEST(Q8Dot, MatricesOfOneInputInOnePassGiveEachMatrixsSums) {
  using pricer::kernels::Q8Isa;
  std::mt19937 rng(33);
  const int64_t in = 256;
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::NF4}) {
    std::vector<Weight> Ws;
    for (int64_t rows : {40, 16, 7})
      Ws.push_back(t == DType::NF4 ? Weight::from_f32(random_vec(rows * in, rng, 0.1f).data(), rows, in, t)
                                   : Weight::from_raw(t, rows, in, random_ggml_raw(t, rows, in, rng)));
    const std::vector<const Weight*> ptrs{&Ws[0], &Ws[1], &Ws[2]};
    for (int64_t n : {1, 3}) {
      const Vec x = random_vec(n * in, rng);
      for (Q8Isa isa : {Q8Isa::Avx512, Q8Isa::Avx2}) {
        if (!pricer::kernels::q8_isa_built(isa)) continue;
        std::vector<Vec> one(3), many(3);
        std::vector<float*> ys;
        for (size_t i = 0; i < 3; ++i) {
          one[i].assign(n * Ws[i].rows(), 0.0f);
          many[i].assign(n * Ws[i].rows() + 1, 7.0f);  // one float past the end: never written
          pricer::kernels::q8_linear_forward(Ws[i], x.data(), one[i].data(), n, 0.0f, isa);
          ys.push_back(many[i].data());
        }
        pricer::kernels::q8_linears_forward(ptrs, x.data(), ys, n, isa);
        for (size_t i = 0; i < 3; ++i) {
          EXPECT_EQ(many[i].back(), 7.0f);
          many[i].pop_back();
          EXPECT_EQ(many[i], one[i]) << pricer::dtype_name(t) << " matrix " << i << " n=" << n;
        }
      }
    }
  }
  const Weight a = Weight::from_f32(random_vec(16 * 64, rng).data(), 16, 64, DType::Q8_0);
  const Weight b = Weight::from_f32(random_vec(16 * 64, rng).data(), 16, 64, DType::Q4_0);
  const std::vector<const Weight*> mixed{&a, &b};
  Vec x = random_vec(64, rng), y0(16), y1(16);
  const std::vector<float*> ys{y0.data(), y1.data()};
  EXPECT_THROW(pricer::kernels::q8_linears_forward(mixed, x.data(), ys, 1), pricer::Error);
  // The backend takes them in one pass under compute q8_0, one by one otherwise: the same outputs.
  const auto q8 = pricer::make_cpu_backend(DType::Q8_0);
  Vec z0(16), z1(16);
  q8->linears_forward(mixed, x.data(), ys, 1);
  q8->linear_forward(a, x.data(), z0.data(), 1, 0.0f);
  q8->linear_forward(b, x.data(), z1.data(), 1, 0.0f);
  EXPECT_EQ(y0, z0);
  EXPECT_EQ(y1, z1);
}

// Prompts under compute q8_0: the integer GEMM against the scalar twin of the row kernels (the
// same int32 block sums and scales), over panels with and without missing rows (16 and 37 rows),
// tiles of tokens whole and partial (2, 9, 24, 61 tokens: tiles of 8), beta 0 and not, weights
// holding every byte (Q8_0's -128 included), and a block of exact ties in the activations.
TEST(Q8Gemm, PromptsTakeTheSumsOfTheScalarTwin) {
  std::mt19937 rng(41);
  int tested = 0;
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    for (const auto& [rows, cols] : {std::pair{int64_t{16}, int64_t{64}}, {int64_t{37}, int64_t{320}}}) {
      const int64_t out = rows, in = cols;
      const Weight W = Weight::from_raw(t, out, in, random_ggml_raw(t, out, in, rng));
      if (!pricer::kernels::q8_gemm_takes(W)) continue;
      ASSERT_TRUE(pricer::kernels::takes_integer_path(W, 100));
      // One token stays on the row kernels; Q4_0 (panels as held) leaves them from 2, Q8_0 from 7.
      EXPECT_FALSE(pricer::kernels::prefers_q8_gemm(W, 1));
      EXPECT_EQ(pricer::kernels::prefers_q8_gemm(W, 2), t == DType::Q4_0);
      EXPECT_TRUE(pricer::kernels::prefers_q8_gemm(W, 7));
      for (int64_t n : {2, 9, 24, 61}) {
        Vec x = random_vec(n * in, rng);
        for (int64_t j = 0; j < 32; ++j) x[in + j] = static_cast<float>(j % 7) - 2.5f;  // ties: step 1
        x[in + 3] = 127.0f;
        for (float beta : {0.0f, 0.7f}) {
          const Vec y0 = random_vec(n * out, rng);
          Vec yf = y0, yr = y0;
          pricer::kernels::q8_gemm_forward(W, x.data(), yf.data(), n, beta);
          pricer::kernels::q8_linear_forward_reference(W, x.data(), yr.data(), n, beta);
          expect_close(yf, yr, 1e-5f,
                       std::string("q8 gemm ") + std::string(pricer::dtype_name(t)) + " [" + std::to_string(out) + "x" +
                           std::to_string(in) + "] n=" + std::to_string(n) + " beta=" + std::to_string(beta));
          ++tested;
        }
      }
    }
  }
  if (tested == 0) GTEST_SKIP() << "this build has no AVX-512 VNNI: prompts take the bf16 GEMMs";
  Weight nf4 = Weight::from_f32(random_vec(2 * 64, rng).data(), 2, 64, DType::NF4);
  EXPECT_FALSE(pricer::kernels::q8_gemm_takes(nf4));
  Vec x = random_vec(9 * 64, rng), y(9 * 2);
  EXPECT_THROW(pricer::kernels::q8_gemm_forward(nf4, x.data(), y.data(), 9, 0.0f), pricer::Error);
}

TEST_F(Backends, LinearBackwardInputInTokenChunks) {
  // Enough tokens that the per-thread partial sums of the input gradient are taken in two
  // chunks of tokens (at most 4 Mi floats of partials: 998 tokens of 2100 columns on 2 threads).
  pricer::set_threads(2);
  std::mt19937 rng(11);
  const int64_t out = 70, in = 2100, n = 1100;
  Weight W;
  ASSERT_TRUE(make_weight(DType::BF16, out, in, rng, W));
  const Vec dy = random_vec(n * out, rng), dx0 = random_vec(n * in, rng);
  Vec dxf = dx0, dxr = dx0;
  fast->linear_backward_input(W, dy.data(), dxf.data(), n);
  ref->linear_backward_input(W, dy.data(), dxr.data(), n);
  expect_close(dxf, dxr, 2e-5f, "linear_backward_input bf16 in token chunks");
}

INSTANTIATE_TEST_SUITE_P(AllFormats, LinearFormat,
                         ::testing::Combine(::testing::Values(DType::F32, DType::BF16, DType::F16, DType::NF4,
                                                              DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K,
                                                              DType::Q6_K),
                                            ::testing::Values(DType::F32, DType::BF16, DType::Q8_0)),
                         [](const auto& info) {
                           return std::string(pricer::dtype_name(std::get<0>(info.param))) + "_compute_" +
                                  std::string(pricer::dtype_name(std::get<1>(info.param)));
                         });

TEST(Bf16Compute, StaysWithinTheRoundingOfItsOperands) {
  // Each product x w with both rounded to bf16 is off by at most about 2 * 2^-9 relative, so
  // |y_bf16 - y_f32| <= 2^-7 sum |x||w| per output; the f32 path is exact to f32 rounding.
  std::mt19937 rng(12);
  const int64_t out = 130, in = 200, n = 9;
  Weight W;
  ASSERT_TRUE(make_weight(DType::NF4, out, in, rng, W));
  const Vec w = W.to_f32(), x = random_vec(n * in, rng);
  auto exact = pricer::make_cpu_backend(DType::F32), bf16 = pricer::make_cpu_backend(DType::BF16);
  Vec y32(n * out), y16(n * out);
  exact->linear_forward(W, x.data(), y32.data(), n, 0.0f);
  bf16->linear_forward(W, x.data(), y16.data(), n, 0.0f);
  double worst = 0, differs = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      double mag = 0;
      for (int64_t k = 0; k < in; ++k) mag += std::abs(double(x[i * in + k]) * w[o * in + k]);
      const double err = std::abs(double(y16[i * out + o]) - y32[i * out + o]);
      worst = std::max(worst, err / mag);
      differs += err > 0;
    }
  EXPECT_LE(worst, 0x1p-7);
  EXPECT_GT(differs, 0) << "bf16 compute gave exactly the f32 result: operands were not rounded";
  EXPECT_THROW(pricer::make_cpu_backend(DType::NF4), pricer::Error);
  EXPECT_THROW(pricer::make_reference_backend(DType::F16), pricer::Error);
}

// ---------------------------------------------------------------------------------------------
// Element-wise and row-wise ops

TEST_F(Backends, RmsNorm) {
  std::mt19937 rng(3);
  const int64_t shapes[][2] = {{1, 1}, {3, 7}, {5, 64}, {4, 1000}, {33, 2048}};
  for (const auto& s : shapes) {
    const int64_t n = s[0], dim = s[1];
    const std::string tag = std::to_string(n) + "x" + std::to_string(dim);
    const Vec x = random_vec(n * dim, rng, 2.0f), w = random_vec(dim, rng);
    Vec yf(n * dim), yr(n * dim), rf(n), rr(n);
    fast->rmsnorm_forward(x.data(), w.data(), yf.data(), rf.data(), n, dim, 1e-5f);
    ref->rmsnorm_forward(x.data(), w.data(), yr.data(), rr.data(), n, dim, 1e-5f);
    expect_close(yf, yr, 1e-5f, "rmsnorm y " + tag);
    expect_close(rf, rr, 1e-5f, "rmsnorm rstd " + tag);

    const Vec dy = random_vec(n * dim, rng), dw0 = random_vec(dim, rng);
    Vec dxf(n * dim), dxr(n * dim), dwf = dw0, dwr = dw0;
    fast->rmsnorm_backward(dy.data(), x.data(), w.data(), rr.data(), dxf.data(), dwf.data(), n, dim);
    ref->rmsnorm_backward(dy.data(), x.data(), w.data(), rr.data(), dxr.data(), dwr.data(), n, dim);
    // dx = r w dy - x c cancels almost exactly when dim is 1: bound by the size of the terms.
    double term = 0;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < dim; ++i) term = std::max(term, std::abs(double(rr[r] * w[i] * dy[r * dim + i])));
    expect_close(dxf, dxr, 2e-5f, "rmsnorm dx " + tag, 1e-6 * term);
    expect_close(dwf, dwr, 2e-5f, "rmsnorm dw " + tag);
    // Without dw only dx is produced.
    Vec dx2(n * dim);
    fast->rmsnorm_backward(dy.data(), x.data(), w.data(), rr.data(), dx2.data(), nullptr, n, dim);
    expect_bitwise(dx2, dxf, "rmsnorm dx without dw " + tag);
  }
}

TEST_F(Backends, Rope) {
  std::mt19937 rng(4);
  std::uniform_int_distribution<int32_t> pd(0, 8191);
  // The largest case (200 tokens x 3 heads x 64) is big enough to run on several threads.
  for (int head_dim : {2, 6, 16, 34, 64}) {
    for (int heads : {1, 3}) {
      const int64_t n = head_dim == 64 ? 200 : 5;
      Vec inv_freq(head_dim / 2);
      for (int j = 0; j < head_dim / 2; ++j) inv_freq[j] = std::pow(500000.0f, -2.0f * j / head_dim);
      std::vector<int32_t> pos(n);
      for (auto& p : pos) p = pd(rng);
      pos[0] = 0;
      for (bool inverse : {false, true}) {
        const Vec x = random_vec(n * heads * head_dim, rng);
        Vec xf = x, xr = x;
        fast->rope(xf.data(), pos.data(), n, heads, head_dim, inv_freq.data(), inverse);
        ref->rope(xr.data(), pos.data(), n, heads, head_dim, inv_freq.data(), inverse);
        expect_close(
            xf, xr, 1e-5f,
            "rope hd=" + std::to_string(head_dim) + " heads=" + std::to_string(heads) + (inverse ? " inverse" : ""));
      }
    }
  }
}

struct AttnCase {
  std::vector<int32_t> cu;
  int heads, kv_heads, hd;
};

TEST_F(Backends, Attention) {
  const AttnCase cases[] = {
      {{0, 1}, 2, 2, 8},  // a single token
      {{0, 5, 6, 23}, 4, 4, 8},  // MHA, lengths 5, 1, 17
      {{0, 70, 73}, 4, 2, 5},  // GQA 2, crosses a key block, odd head_dim
      {{0, 3, 3, 133}, 4, 1, 64},  // GQA 4, an empty sequence, two key-block boundaries
      {{0, 1, 40}, 6, 3, 16},  // GQA 2 with 3 kv heads
  };
  std::mt19937 rng(5);
  for (const auto& c : cases) {
    const int64_t T = c.cu.back();
    const std::string tag = "T=" + std::to_string(T) + " heads=" + std::to_string(c.heads) +
                            " kv=" + std::to_string(c.kv_heads) + " hd=" + std::to_string(c.hd);
    const Vec q = random_vec(T * c.heads * c.hd, rng, 1.5f), k = random_vec(T * c.kv_heads * c.hd, rng, 1.5f),
              v = random_vec(T * c.kv_heads * c.hd, rng);
    Vec of(q.size()), orf(q.size()), lf(T * c.heads), lr(T * c.heads);
    fast->attention_forward(q.data(), k.data(), v.data(), of.data(), lf.data(), c.cu, c.heads, c.kv_heads, c.hd);
    ref->attention_forward(q.data(), k.data(), v.data(), orf.data(), lr.data(), c.cu, c.heads, c.kv_heads, c.hd);
    expect_close(of, orf, 2e-5f, "attention out " + tag);
    expect_close(lf, lr, 1e-5f, "attention lse " + tag);

    const Vec dout = random_vec(q.size(), rng);
    Vec dqf(q.size(), 9.0f), dkf(k.size(), 9.0f), dvf(v.size(), 9.0f);
    Vec dqr(q.size()), dkr(k.size()), dvr(v.size());
    fast->attention_backward(q.data(), k.data(), v.data(), orf.data(), lr.data(), dout.data(), dqf.data(), dkf.data(),
                             dvf.data(), c.cu, c.heads, c.kv_heads, c.hd);
    ref->attention_backward(q.data(), k.data(), v.data(), orf.data(), lr.data(), dout.data(), dqr.data(), dkr.data(),
                            dvr.data(), c.cu, c.heads, c.kv_heads, c.hd);
    // dq and dk weigh keys and queries by differences (dP - D) of terms of order 1, which a
    // one-token sequence cancels to zero: their rounding is held to a floor at that order.
    expect_close(dqf, dqr, 5e-5f, "attention dq " + tag, 1e-6);
    expect_close(dkf, dkr, 5e-5f, "attention dk " + tag, 1e-6);
    expect_close(dvf, dvr, 5e-5f, "attention dv " + tag);
  }
}

// Decoding: the last token of a sequence against its keys and values in a cache's layout (each kv
// head's rows together, `cap` rows apart), as the prompt path computes that token, and the fast
// backend against the reference.
TEST_F(Backends, AttentionDecodeIsThePromptPathsLastToken) {
  const AttnCase cases[] = {
      {{0, 1}, 2, 2, 8},  // the first token: only itself
      {{0, 37}, 8, 2, 64},  // GQA 4, Llama's head_dim
      {{0, 300}, 6, 3, 20},  // GQA 2, a head_dim with a tail past 8
  };
  std::mt19937 rng(9);
  for (const auto& c : cases) {
    const int64_t T = c.cu.back(), cap = T + 5, hd = c.hd;
    const std::string tag =
        "n=" + std::to_string(T) + " heads=" + std::to_string(c.heads) + " hd=" + std::to_string(hd);
    const Vec q = random_vec(T * c.heads * hd, rng, 1.5f), k = random_vec(T * c.kv_heads * hd, rng, 1.5f),
              v = random_vec(T * c.kv_heads * hd, rng);
    Vec prompt_out(q.size()), lse(T * c.heads);
    ref->attention_forward(q.data(), k.data(), v.data(), prompt_out.data(), lse.data(), c.cu, c.heads, c.kv_heads, hd);
    Vec kc(c.kv_heads * cap * hd, 9.0f), vc(kc.size(), 9.0f);  // rows past T: never read
    for (int64_t t = 0; t < T; ++t)
      for (int g = 0; g < c.kv_heads; ++g)
        for (int64_t e = 0; e < hd; ++e) {
          kc[(g * cap + t) * hd + e] = k[(t * c.kv_heads + g) * hd + e];
          vc[(g * cap + t) * hd + e] = v[(t * c.kv_heads + g) * hd + e];
        }
    const Vec last(prompt_out.end() - c.heads * hd, prompt_out.end());
    const float* q_last = q.data() + (T - 1) * c.heads * hd;
    for (Backend* b : {fast.get(), ref.get()}) {
      Vec out(c.heads * hd);
      b->attention_decode(q_last, kc.data(), vc.data(), cap * hd, T, out.data(), c.heads, c.kv_heads, c.hd);
      expect_close(out, last, 2e-5f, std::string("attention decode, ") + b->name() + ", " + tag);
    }
  }
  Vec x(64), out(16);
  EXPECT_THROW(fast->attention_decode(x.data(), x.data(), x.data(), 8, 3, out.data(), 2, 2, 4), pricer::Error);
  EXPECT_THROW(fast->attention_decode(x.data(), x.data(), x.data(), 16, 0, out.data(), 2, 2, 4), pricer::Error);
  EXPECT_THROW(fast->attention_decode(x.data(), x.data(), x.data(), 16, 2, out.data(), 3, 2, 4), pricer::Error);
}

TEST_F(Backends, AttentionKnownValues) {
  // One token attends only to itself: out = v, lse = q.k / sqrt(hd). Two equal keys: the mean of
  // the two values.
  for (Backend* b : {fast.get(), ref.get()}) {
    const std::vector<int32_t> cu = {0, 1, 3};
    const int hd = 4;
    const Vec q = {1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0};
    const Vec k = {1, 0, 0, 1, 5, 5, 5, 5, 5, 5, 5, 5};
    const Vec v = {7, 8, 9, 10, 2, 4, 6, 8, 4, 6, 8, 10};
    Vec out(12), lse(3);
    b->attention_forward(q.data(), k.data(), v.data(), out.data(), lse.data(), cu, 1, 1, hd);
    for (int e = 0; e < hd; ++e) EXPECT_FLOAT_EQ(out[e], v[e]) << b->name();
    EXPECT_FLOAT_EQ(lse[0], 5.0f / 2.0f) << b->name();
    for (int e = 0; e < hd; ++e) EXPECT_FLOAT_EQ(out[8 + e], 0.5f * (v[4 + e] + v[8 + e])) << b->name();
    EXPECT_NEAR(lse[2], std::log(2.0f), 1e-6f) << b->name();
  }
}

TEST_F(Backends, SwiGlu) {
  std::mt19937 rng(6);
  for (int64_t n : {1, 7, 8, 1000, 100003}) {
    Vec g = random_vec(n, rng, 4.0f);
    g[0] = n > 1 ? 30.0f : -30.0f;  // far into both tails of the sigmoid
    if (n > 1) g[n - 1] = -95.0f;
    const Vec u = random_vec(n, rng), dh = random_vec(n, rng);
    Vec hf(n), hr(n), dgf(n), dgr(n), duf(n), dur(n);
    fast->swiglu_forward(g.data(), u.data(), hf.data(), n);
    ref->swiglu_forward(g.data(), u.data(), hr.data(), n);
    expect_close(hf, hr, 1e-5f, "swiglu h n=" + std::to_string(n));
    fast->swiglu_backward(g.data(), u.data(), dh.data(), dgf.data(), duf.data(), n);
    ref->swiglu_backward(g.data(), u.data(), dh.data(), dgr.data(), dur.data(), n);
    expect_close(dgf, dgr, 1e-5f, "swiglu dg n=" + std::to_string(n));
    expect_close(duf, dur, 1e-5f, "swiglu du n=" + std::to_string(n));
  }
}

TEST_F(Backends, CrossEntropy) {
  std::mt19937 rng(7);
  const int64_t shapes[][2] = {{1, 1}, {3, 7}, {4, 1000}, {2, 128256}};
  for (const auto& s : shapes) {
    const int64_t n = s[0], vocab = s[1];
    Vec logits = random_vec(n * vocab, rng, 3.0f);
    logits[0] = 80.0f;  // a dominant logit
    if (vocab > 1) logits[1] = -80.0f;
    std::vector<int32_t> targets(n);
    std::uniform_int_distribution<int32_t> td(0, int32_t(vocab - 1));
    for (auto& t : targets) t = td(rng);
    if (n > 2) targets[1] = -1;  // ignored row
    Vec gf = logits, gr = logits, lf(n), lr(n);
    const float scale = 1.0f / float(n);
    fast->cross_entropy(gf.data(), targets.data(), lf.data(), n, vocab, scale);
    ref->cross_entropy(gr.data(), targets.data(), lr.data(), n, vocab, scale);
    const std::string tag = std::to_string(n) + "x" + std::to_string(vocab);
    expect_close(lf, lr, 1e-5f, "cross_entropy loss " + tag);
    expect_close(gf, gr, 1e-5f, "cross_entropy grad " + tag);
  }
  // Uniform logits: loss = log(vocab).
  Vec u(2 * 50, 0.25f), loss(2);
  const std::vector<int32_t> t = {3, 49};
  fast->cross_entropy(u.data(), t.data(), loss.data(), 2, 50, 1.0f);
  EXPECT_NEAR(loss[0], std::log(50.0f), 1e-6f);
  EXPECT_NEAR(u[3], 1.0f / 50.0f - 1.0f, 1e-6f);
}

TEST_F(Backends, Embedding) {
  std::mt19937 rng(8);
  const int64_t vocab = 37, dim = 70;
  const std::vector<int32_t> ids = {3, 36, 0, 3, 3, 17, 36};
  const int64_t n = int64_t(ids.size());
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::NF4}) {
    Weight table;
    if (!make_weight(t, vocab, dim, rng, table)) continue;
    Vec of(n * dim), orf(n * dim);
    fast->embedding_forward(table, ids.data(), of.data(), n);
    ref->embedding_forward(table, ids.data(), orf.data(), n);
    expect_bitwise(of, orf, std::string("embedding_forward ") + std::string(pricer::dtype_name(t)));
  }
  // Backward: a few tokens, and enough (with repeats) to run on several threads.
  for (int64_t tokens : {n, int64_t(600)}) {
    std::vector<int32_t> bids(static_cast<size_t>(tokens));
    for (int64_t i = 0; i < tokens; ++i) bids[i] = i < n ? ids[i] : int32_t((i * 13) % vocab);
    const Vec dout = random_vec(tokens * dim, rng), dt0 = random_vec(vocab * dim, rng);
    Vec dtf = dt0, dtr = dt0;
    fast->embedding_backward(bids.data(), dout.data(), dtf.data(), tokens, dim);
    ref->embedding_backward(bids.data(), dout.data(), dtr.data(), tokens, dim);
    expect_close(dtf, dtr, 1e-6f, "embedding_backward " + std::to_string(tokens) + " tokens");
  }
}

TEST_F(Backends, AdamW) {
  std::mt19937 rng(9);
  for (int64_t n : {1, 13, 1000, 40001}) {
    Vec pf = random_vec(n, rng), pr = pf, mf(n, 0.0f), mr(n, 0.0f), vf(n, 0.0f), vr(n, 0.0f);
    for (int64_t step = 1; step <= 3; ++step) {
      const Vec g = random_vec(n, rng);
      fast->adamw_step(pf.data(), g.data(), mf.data(), vf.data(), n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, step);
      ref->adamw_step(pr.data(), g.data(), mr.data(), vr.data(), n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, step);
    }
    expect_close(pf, pr, 1e-6f, "adamw param n=" + std::to_string(n));
    expect_close(mf, mr, 1e-6f, "adamw m n=" + std::to_string(n));
    expect_close(vf, vr, 1e-6f, "adamw v n=" + std::to_string(n));
  }
}

// ---------------------------------------------------------------------------------------------
// Reproducibility: the same thread count gives bitwise-identical results.

TEST_F(Backends, DeterministicForAThreadCount) {
  pricer::set_threads(2);
  std::mt19937 rng(10);
  auto twice = [&](const std::function<Vec()>& run, const std::string& what) { expect_bitwise(run(), run(), what); };
  const int64_t n = 40, in = 128, out = 200;
  const Vec x = random_vec(n * in, rng), dy = random_vec(n * out, rng);
  std::vector<Weight> weights;
  for (DType t : {DType::F32, DType::NF4}) {
    Weight W;
    if (make_weight(t, out, in, rng, W)) weights.push_back(std::move(W));
  }
  for (const Weight& W : weights) {
    const std::string f(pricer::dtype_name(W.dtype()));
    twice(
        [&] {
          Vec y(n * out);
          fast->linear_forward(W, x.data(), y.data(), n, 0.0f);
          return y;
        },
        "linear " + f);
    twice(
        [&] {
          Vec y(out);
          fast->linear_forward(W, x.data(), y.data(), 1, 0.0f);
          return y;
        },
        "gemv " + f);
    twice(
        [&] {
          Vec d(n * in);
          fast->linear_backward_input(W, dy.data(), d.data(), n);
          return d;
        },
        "linear backward " + f);
  }
  const std::vector<int32_t> cu = {0, 50, 51, 120};
  const int heads = 4, kv = 2, hd = 16;
  const int64_t T = cu.back();
  const Vec q = random_vec(T * heads * hd, rng), k = random_vec(T * kv * hd, rng), v = random_vec(T * kv * hd, rng);
  const Vec dout = random_vec(q.size(), rng);
  Vec o(q.size()), lse(T * heads);
  fast->attention_forward(q.data(), k.data(), v.data(), o.data(), lse.data(), cu, heads, kv, hd);
  twice(
      [&] {
        Vec o2(q.size()), l2(T * heads);
        fast->attention_forward(q.data(), k.data(), v.data(), o2.data(), l2.data(), cu, heads, kv, hd);
        o2.insert(o2.end(), l2.begin(), l2.end());
        return o2;
      },
      "attention forward");
  twice(
      [&] {
        Vec dq(q.size()), dk(k.size()), dv(v.size());
        fast->attention_backward(q.data(), k.data(), v.data(), o.data(), lse.data(), dout.data(), dq.data(), dk.data(),
                                 dv.data(), cu, heads, kv, hd);
        dq.insert(dq.end(), dk.begin(), dk.end());
        dq.insert(dq.end(), dv.begin(), dv.end());
        return dq;
      },
      "attention backward");
  const int64_t dim = 1000;  // n * dim is large enough for the element-wise ops to use threads
  const Vec xr = random_vec(n * dim, rng), w = random_vec(dim, rng), g = random_vec(n * dim, rng);
  twice(
      [&] {
        Vec y(n * dim), rs(n), dx(n * dim), dw(dim, 0.0f);
        fast->rmsnorm_forward(xr.data(), w.data(), y.data(), rs.data(), n, dim, 1e-5f);
        fast->rmsnorm_backward(g.data(), xr.data(), w.data(), rs.data(), dx.data(), dw.data(), n, dim);
        y.insert(y.end(), dx.begin(), dx.end());
        y.insert(y.end(), dw.begin(), dw.end());
        return y;
      },
      "rmsnorm");
  twice(
      [&] {
        Vec logits = g, losses(n);
        std::vector<int32_t> t(n, 5);
        fast->cross_entropy(logits.data(), t.data(), losses.data(), n, dim, 0.5f);
        logits.insert(logits.end(), losses.begin(), losses.end());
        return logits;
      },
      "cross_entropy");
  twice(
      [&] {
        std::vector<int32_t> ids(n);
        for (int64_t i = 0; i < n; ++i) ids[i] = int32_t(i % 7);
        Vec table(7 * dim, 0.0f);
        fast->embedding_backward(ids.data(), g.data(), table.data(), n, dim);
        return table;
      },
      "embedding backward");
}

// ---------------------------------------------------------------------------------------------
// Bad input becomes pricer::Error in both backends.

TEST_F(Backends, RejectsBadInput) {
  for (Backend* b : {fast.get(), ref.get()}) {
    SCOPED_TRACE(b->name());
    Vec q(64), out(64), lse(16);
    const std::vector<int32_t> decreasing = {0, 3, 2}, bad_start = {1, 4}, ok = {0, 4};
    EXPECT_THROW(b->attention_forward(q.data(), q.data(), q.data(), out.data(), lse.data(), decreasing, 2, 2, 4),
                 pricer::Error);
    EXPECT_THROW(b->attention_forward(q.data(), q.data(), q.data(), out.data(), lse.data(), bad_start, 2, 2, 4),
                 pricer::Error);
    EXPECT_THROW(b->attention_forward(q.data(), q.data(), q.data(), out.data(), lse.data(), ok, 3, 2, 4),
                 pricer::Error);
    EXPECT_THROW(b->attention_backward(q.data(), q.data(), q.data(), out.data(), lse.data(), q.data(), out.data(),
                                       out.data(), out.data(), std::span<const int32_t>(), 2, 2, 4),
                 pricer::Error);

    // Linears of one input: one output each, every weight as wide as the input.
    std::mt19937 rng(3);
    const Vec w8 = random_vec(8 * 32, rng), w6 = random_vec(6 * 64, rng);
    const Weight a = Weight::from_f32(w8.data(), 8, 32, DType::F32),
                 b64 = Weight::from_f32(w6.data(), 6, 64, DType::F32);
    Vec lx(64), la(8), lb(6);
    const std::vector<const Weight*> two{&a, &a}, mixed{&a, &b64};
    const std::vector<float*> one_out{la.data()}, two_out{la.data(), lb.data()};
    EXPECT_THROW(b->linears_forward(two, lx.data(), one_out, 1), pricer::Error);
    EXPECT_THROW(b->linears_forward(mixed, lx.data(), two_out, 1), pricer::Error);

    Vec logits(2 * 5, 0.0f), losses(2);
    const std::vector<int32_t> targets = {1, 5};
    try {
      b->cross_entropy(logits.data(), targets.data(), losses.data(), 2, 5, 1.0f);
      ADD_FAILURE() << "target 5 of vocab 5 accepted";
    } catch (const pricer::Error& e) {
      EXPECT_NE(std::string(e.what()).find("row 1"), std::string::npos) << e.what();
    }

    const Vec t = {1, 2, 3, 4, 5, 6};
    const Weight table = Weight::from_f32(t.data(), 3, 2, DType::F32);
    const std::vector<int32_t> ids = {0, 3};
    Vec emb(4);
    EXPECT_THROW(b->embedding_forward(table, ids.data(), emb.data(), 2), pricer::Error);
    const std::vector<int32_t> neg = {-1};
    EXPECT_THROW(b->embedding_forward(table, neg.data(), emb.data(), 1), pricer::Error);

    Vec x(6), freq(2);
    const std::vector<int32_t> pos = {0};
    EXPECT_THROW(b->rope(x.data(), pos.data(), 1, 2, 3, freq.data(), false), pricer::Error);

    Vec p(1), g(1), m(1), v(1);
    EXPECT_THROW(b->adamw_step(p.data(), g.data(), m.data(), v.data(), 1, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0),
                 pricer::Error);
  }
}

}  // namespace

TEST(Bf16Conversion, FastEqualsScalarBitForBit) {
  std::mt19937 rng(13);
  std::uniform_int_distribution<uint32_t> bits;
  for (int64_t n : {0, 1, 7, 8, 9, 1000, 1003}) {
    Vec x(n);
    for (auto& v : x) {
      const uint32_t u = bits(rng);
      std::memcpy(&v, &u, 4);  // every bit pattern: NaNs, infinities, subnormals included
    }
    const float specials[] = {0.0f,
                              -0.0f,
                              1.0f,
                              1.00390625f /* tie, rounds to even */,
                              1.01171875f /* tie, rounds up */,
                              INFINITY,
                              -INFINITY,
                              NAN,
                              1e-40f,
                              3.4e38f /* rounds to infinity */};
    for (size_t i = 0; i < std::size(specials) && i < x.size(); ++i) x[i] = specials[i];
    std::vector<uint16_t> fast(n), ref(n);
    pricer::kernels::to_bf16(x.data(), fast.data(), n);
    pricer::kernels::to_bf16_reference(x.data(), ref.data(), n);
    EXPECT_EQ(fast, ref) << "n=" << n;
  }
  uint16_t h[3];
  const float v[3] = {1.00390625f, 1.01171875f, 3.4e38f};
  pricer::kernels::to_bf16_reference(v, h, 3);
  EXPECT_EQ(h[0], 0x3f80);  // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even is 1
  EXPECT_EQ(h[1], 0x3f82);
  EXPECT_EQ(h[2], 0x7f80);
}
