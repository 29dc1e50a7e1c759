// Every backward of the reference kernels, instantiated in double, against central finite
// differences of its forward. Each check uses a scalar loss L = sum(R * forward(...)) with a random
// R, so the analytic gradient is backward(dout = R).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "kernels/reference.h"

namespace {

using Vec = std::vector<double>;
namespace ref = pricer::ref;

Vec random_vec(size_t n, std::mt19937& rng, double scale = 1.0) {
  std::normal_distribution<double> d(0.0, scale);
  Vec v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Compares analytic[i] with (L(x + h e_i) - L(x - h e_i)) / 2h for every i of x; loss reads x.
void expect_gradient(const char* what, Vec& x, const Vec& analytic, const std::function<double()>& loss) {
  ASSERT_EQ(x.size(), analytic.size());
  const double h = 1e-5;
  double max_err = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double lp = loss();
    x[i] = x0 - h;
    const double lm = loss();
    x[i] = x0;
    const double fd = (lp - lm) / (2 * h);
    const double err = std::abs(fd - analytic[i]) / std::max(1.0, std::abs(fd));
    max_err = std::max(max_err, err);
    EXPECT_LT(err, 1e-7) << what << "[" << i << "]: finite difference " << fd << " vs analytic " << analytic[i];
  }
  // The gradient must not be trivially zero, or the check above proves nothing.
  EXPECT_GT(dot(analytic, analytic), 1e-6) << what;
}

TEST(GradCheck, RmsNorm) {
  std::mt19937 rng(1);
  const int64_t n = 3, dim = 7;
  const double eps = 1e-5;
  Vec x = random_vec(n * dim, rng), w = random_vec(dim, rng), R = random_vec(n * dim, rng);
  Vec y(n * dim), rstd(n);
  auto loss = [&] {
    ref::rmsnorm_forward<double>(x.data(), w.data(), y.data(), rstd.data(), n, dim, eps);
    return dot(y, R);
  };
  loss();
  Vec dx(n * dim), dw(dim, 0.0);
  ref::rmsnorm_backward<double>(R.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(), n, dim);
  expect_gradient("rmsnorm dx", x, dx, loss);
  expect_gradient("rmsnorm dw", w, dw, loss);

  // dw accumulates into what is there; dx is overwritten.
  Vec dx2(n * dim, 123.0), dw2(dim, 1.0);
  ref::rmsnorm_backward<double>(R.data(), x.data(), w.data(), rstd.data(), dx2.data(), dw2.data(), n, dim);
  for (int64_t i = 0; i < dim; ++i) EXPECT_NEAR(dw2[i], dw[i] + 1.0, 1e-12);
  for (int64_t i = 0; i < n * dim; ++i) EXPECT_EQ(dx2[i], dx[i]);
}

TEST(GradCheck, RopeInverseIsTranspose) {
  std::mt19937 rng(2);
  const int heads = 2, hd = 6;
  const int64_t n = 3, width = heads * hd;
  const std::vector<int32_t> pos = {0, 5, 1000};
  Vec inv_freq(hd / 2);
  for (int j = 0; j < hd / 2; ++j) inv_freq[j] = std::pow(10000.0, -2.0 * j / hd);

  // Materialize the forward and inverse maps column by column; the inverse must be the transpose.
  const int64_t N = n * width;
  Vec fwd(N * N), inv(N * N);
  for (int64_t c = 0; c < N; ++c) {
    Vec e(N, 0.0);
    e[c] = 1.0;
    Vec a = e, b = e;
    ref::rope<double>(a.data(), pos.data(), n, heads, hd, inv_freq.data(), false);
    ref::rope<double>(b.data(), pos.data(), n, heads, hd, inv_freq.data(), true);
    for (int64_t r = 0; r < N; ++r) {
      fwd[r * N + c] = a[r];
      inv[r * N + c] = b[r];
    }
  }
  for (int64_t r = 0; r < N; ++r) {
    for (int64_t c = 0; c < N; ++c) EXPECT_NEAR(inv[r * N + c], fwd[c * N + r], 1e-14);
  }
  // Position 0 is the identity; other positions are not.
  for (int64_t c = 0; c < width; ++c) EXPECT_EQ(fwd[c * N + c], 1.0);
  EXPECT_LT(fwd[width * N + width], 1.0 - 1e-3);

  // Finite differences: the gradient of sum(R * rope(x)) is rope_inverse(R).
  Vec x = random_vec(N, rng), R = random_vec(N, rng);
  auto loss = [&] {
    Vec y = x;
    ref::rope<double>(y.data(), pos.data(), n, heads, hd, inv_freq.data(), false);
    return dot(y, R);
  };
  Vec g = R;
  ref::rope<double>(g.data(), pos.data(), n, heads, hd, inv_freq.data(), true);
  expect_gradient("rope dx", x, g, loss);
}

void attention_gradcheck(int heads, int kv_heads, const std::vector<int32_t>& cu, unsigned seed) {
  std::mt19937 rng(seed);
  const int hd = 5;
  const int64_t T = cu.back();
  Vec q = random_vec(T * heads * hd, rng), k = random_vec(T * kv_heads * hd, rng),
      v = random_vec(T * kv_heads * hd, rng), R = random_vec(T * heads * hd, rng);
  Vec out(T * heads * hd), lse(heads * T);
  auto loss = [&] {
    ref::attention_forward<double>(q.data(), k.data(), v.data(), out.data(), lse.data(), cu, heads, kv_heads, hd);
    return dot(out, R);
  };
  loss();
  Vec dq(q.size(), 7.0), dk(k.size(), 7.0), dv(v.size(), 7.0);  // overwritten, not accumulated
  ref::attention_backward<double>(q.data(), k.data(), v.data(), out.data(), lse.data(), R.data(), dq.data(), dk.data(),
                                  dv.data(), cu, heads, kv_heads, hd);
  expect_gradient("attention dq", q, dq, loss);
  expect_gradient("attention dk", k, dk, loss);
  expect_gradient("attention dv", v, dv, loss);
}

TEST(GradCheck, AttentionMha) { attention_gradcheck(2, 2, {0, 3, 4, 8}, 3); }
TEST(GradCheck, AttentionGqa2) { attention_gradcheck(4, 2, {0, 1, 5, 7}, 4); }
TEST(GradCheck, AttentionGqa4) { attention_gradcheck(4, 1, {0, 4, 4, 6}, 5); }

TEST(GradCheck, AttentionSequencesAreIndependent) {
  // Changing a token of the second sequence leaves the first sequence's outputs unchanged,
  // and a token never sees later tokens of its own sequence.
  std::mt19937 rng(6);
  const int heads = 2, kv = 1, hd = 4;
  const std::vector<int32_t> cu = {0, 3, 6};
  const int64_t T = 6;
  Vec q = random_vec(T * heads * hd, rng), k = random_vec(T * kv * hd, rng), v = random_vec(T * kv * hd, rng);
  Vec out1(T * heads * hd), out2(T * heads * hd), lse(heads * T);
  ref::attention_forward<double>(q.data(), k.data(), v.data(), out1.data(), lse.data(), cu, heads, kv, hd);
  for (int e = 0; e < hd; ++e) {
    k[4 * hd + e] += 1.0;  // token 4 (second sequence)
    v[1 * hd + e] += 1.0;  // token 1 (first sequence)
  }
  ref::attention_forward<double>(q.data(), k.data(), v.data(), out2.data(), lse.data(), cu, heads, kv, hd);
  const int64_t row = heads * hd;
  for (int64_t t = 0; t < T; ++t) {
    const bool affected = t == 1 || t == 2 || t == 4 || t == 5;
    double diff = 0;
    for (int64_t e = 0; e < row; ++e) diff += std::abs(out1[t * row + e] - out2[t * row + e]);
    if (affected) {
      EXPECT_GT(diff, 1e-6) << "token " << t;
    } else {
      EXPECT_EQ(diff, 0.0) << "token " << t;
    }
  }
}

TEST(GradCheck, SwiGlu) {
  std::mt19937 rng(7);
  const int64_t n = 13;
  Vec g = random_vec(n, rng, 2.0), u = random_vec(n, rng), R = random_vec(n, rng), h(n);
  auto loss = [&] {
    ref::swiglu_forward<double>(g.data(), u.data(), h.data(), n);
    return dot(h, R);
  };
  Vec dg(n), du(n);
  ref::swiglu_backward<double>(g.data(), u.data(), R.data(), dg.data(), du.data(), n);
  expect_gradient("swiglu dg", g, dg, loss);
  expect_gradient("swiglu du", u, du, loss);
}

TEST(GradCheck, CrossEntropy) {
  std::mt19937 rng(8);
  const int64_t n = 4, vocab = 11;
  const std::vector<int32_t> targets = {3, 0, -1, 10};  // row 2 ignored
  const double scale = 0.25;
  Vec logits = random_vec(n * vocab, rng, 3.0);
  auto loss = [&] {
    Vec tmp = logits, losses(n);
    ref::cross_entropy<double>(tmp.data(), targets.data(), losses.data(), n, vocab, scale);
    double s = 0;
    for (double l : losses) s += l;
    return scale * s;
  };
  Vec grad = logits, losses(n);
  ref::cross_entropy<double>(grad.data(), targets.data(), losses.data(), n, vocab, scale);
  EXPECT_EQ(losses[2], 0.0);
  for (int64_t i = 0; i < vocab; ++i) EXPECT_EQ(grad[2 * vocab + i], 0.0);
  for (int64_t r = 0; r < n; ++r) {
    if (targets[r] >= 0) {
      EXPECT_GT(losses[r], 0.0);
    }
  }
  expect_gradient("cross_entropy dlogits", logits, grad, loss);
}

TEST(GradCheck, Embedding) {
  std::mt19937 rng(9);
  const int64_t vocab = 5, dim = 3, n = 6;
  const std::vector<int32_t> ids = {4, 1, 4, 0, 4, 2};  // repeated ids accumulate
  Vec table = random_vec(vocab * dim, rng), R = random_vec(n * dim, rng), out(n * dim);
  auto loss = [&] {
    ref::embedding_forward<double>(table.data(), dim, ids.data(), out.data(), n);
    return dot(out, R);
  };
  Vec dtable(vocab * dim, 0.0);
  ref::embedding_backward<double>(ids.data(), R.data(), dtable.data(), n, dim);
  // Row 3 is never used: its gradient is exactly zero.
  for (int64_t e = 0; e < dim; ++e) EXPECT_EQ(dtable[3 * dim + e], 0.0);
  expect_gradient("embedding dtable", table, dtable, loss);
}

TEST(GradCheck, LinearViaGemm) {
  std::mt19937 rng(10);
  const int64_t n = 3, in = 5, out = 4;
  Vec x = random_vec(n * in, rng), W = random_vec(out * in, rng), R = random_vec(n * out, rng);
  Vec y(n * out);
  auto loss = [&] {
    ref::linear_forward<double>(W.data(), out, in, x.data(), y.data(), n, 0.0);
    return dot(y, R);
  };
  Vec dx(n * in, 0.0), dW(out * in, 0.0);
  ref::linear_backward_input<double>(W.data(), out, in, R.data(), dx.data(), n);
  // dW[out, in] = dy^T x
  ref::gemm<double>(true, false, out, in, n, 1.0, R.data(), x.data(), 0.0, dW.data());
  expect_gradient("linear dx", x, dx, loss);
  expect_gradient("linear dW", W, dW, loss);

  // linear_forward with beta = 1 accumulates, linear_backward_input always accumulates.
  Vec y2(n * out, 2.0);
  ref::linear_forward<double>(W.data(), out, in, x.data(), y2.data(), n, 1.0);
  ref::linear_forward<double>(W.data(), out, in, x.data(), y.data(), n, 0.0);
  for (int64_t i = 0; i < n * out; ++i) EXPECT_NEAR(y2[i], y[i] + 2.0, 1e-12);
  Vec dx2(n * in, 1.0);
  ref::linear_backward_input<double>(W.data(), out, in, R.data(), dx2.data(), n);
  for (int64_t i = 0; i < n * in; ++i) EXPECT_NEAR(dx2[i], dx[i] + 1.0, 1e-12);
}

TEST(GradCheck, GemmTransposesAgree) {
  // op(A) op(B) must not depend on how the operands are stored.
  std::mt19937 rng(11);
  const int64_t M = 3, N = 4, K = 5;
  Vec A = random_vec(M * K, rng), B = random_vec(K * N, rng), At(K * M), Bt(N * K);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t p = 0; p < K; ++p) At[p * M + i] = A[i * K + p];
  for (int64_t p = 0; p < K; ++p)
    for (int64_t j = 0; j < N; ++j) Bt[j * K + p] = B[p * N + j];
  Vec C0(M * N), C(M * N);
  ref::gemm<double>(false, false, M, N, K, 1.5, A.data(), B.data(), 0.0, C0.data());
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t p = 0; p < K; ++p) s += A[i * K + p] * B[p * N + j];
      EXPECT_NEAR(C0[i * N + j], 1.5 * s, 1e-12);
    }
  }
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      ref::gemm<double>(ta, tb, M, N, K, 1.5, ta ? At.data() : A.data(), tb ? Bt.data() : B.data(), 0.0, C.data());
      for (int64_t i = 0; i < M * N; ++i) EXPECT_NEAR(C[i], C0[i], 1e-12) << ta << tb;
    }
  }
}

TEST(GradCheck, AdamWMatchesTextbook) {
  std::mt19937 rng(12);
  const int64_t n = 9;
  const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
  Vec p = random_vec(n, rng), m(n, 0.0), v(n, 0.0);
  Vec tp = p, tm(n, 0.0), tv(n, 0.0);
  for (int64_t step = 1; step <= 4; ++step) {
    Vec g = random_vec(n, rng);
    ref::adamw_step<double>(p.data(), g.data(), m.data(), v.data(), n, lr, b1, b2, eps, wd, step);
    // Loshchilov & Hutter, Algorithm 2 with eta = lr: theta -= lr (mhat / (sqrt(vhat) + eps) +
    // wd theta), moments bias-corrected by 1 - beta^t.
    for (int64_t i = 0; i < n; ++i) {
      tm[i] = b1 * tm[i] + (1 - b1) * g[i];
      tv[i] = b2 * tv[i] + (1 - b2) * g[i] * g[i];
      const double mhat = tm[i] / (1 - std::pow(b1, double(step)));
      const double vhat = tv[i] / (1 - std::pow(b2, double(step)));
      tp[i] = tp[i] - lr * (mhat / (std::sqrt(vhat) + eps) + wd * tp[i]);
    }
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(p[i], tp[i], 1e-14) << "step " << step << " param " << i;
      EXPECT_NEAR(m[i], tm[i], 1e-15);
      EXPECT_NEAR(v[i], tv[i], 1e-15);
    }
  }
  // The first step moves each parameter by about lr (Adam's normalized step) plus decay.
  Vec p1 = random_vec(n, rng), g1 = random_vec(n, rng), m1(n, 0.0), v1(n, 0.0), p0 = p1;
  ref::adamw_step<double>(p1.data(), g1.data(), m1.data(), v1.data(), n, lr, b1, b2, eps, 0.0, 1);
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(p0[i] - p1[i], lr * (g1[i] > 0 ? 1 : -1), 1e-6);
}

}  // namespace
