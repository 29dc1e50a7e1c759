// AdamW and SGD against their formulas (PyTorch semantics), gradient clipping and the state blob.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/backend.h"
#include "train/optimizer.h"

namespace pricer {
namespace {

struct Tensors {
  std::vector<float> w = {0.5f, -1.25f, 2.0f, 0.0f, -0.75f}, gw = {0.1f, -0.2f, 0.3f, -0.4f, 0.05f};
  std::vector<float> n = {1.0f, 0.9f}, gn = {-0.3f, 0.6f};
  std::vector<Param> params() {
    return {{"layer.weight", w.data(), gw.data(), int64_t(w.size()), true},
            {"norm.weight", n.data(), gn.data(), int64_t(n.size()), false}};
  }
  // Gradients change each step so the moments are exercised.
  void next_grads(int step) {
    for (size_t i = 0; i < gw.size(); ++i) gw[i] = float(std::sin(1.3 * step + i));
    for (size_t i = 0; i < gn.size(); ++i) gn[i] = float(std::cos(0.7 * step + i));
  }
};

std::unique_ptr<Backend> backend(const std::string& name) {
  return name == "cpu" ? make_cpu_backend() : make_reference_backend();
}

class OptimizerTest : public ::testing::TestWithParam<std::string> {};

TEST_P(OptimizerTest, AdamWMatchesTheFormula) {
  auto be = backend(GetParam());
  Tensors t;
  const float lr = 0.01f, wd = 0.1f, b1 = 0.8f, b2 = 0.95f, eps = 1e-6f;
  Optimizer opt(OptimizerConfig{.beta1 = b1, .beta2 = b2, .eps = eps}, make_param_groups(t.params(), wd));
  ASSERT_EQ(opt.groups().size(), 2u);
  EXPECT_EQ(opt.groups()[0].params[0].name, "layer.weight");
  EXPECT_EQ(opt.groups()[1].weight_decay, 0.0f);
  std::vector<double> w(t.w.begin(), t.w.end()), n(t.n.begin(), t.n.end());
  std::vector<double> mw(w.size()), vw(w.size()), mn(n.size()), vn(n.size());
  auto expect = [&](std::vector<double>& p, std::vector<double>& m, std::vector<double>& v, const std::vector<float>& g,
                    double decay, int step) {
    for (size_t i = 0; i < p.size(); ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * double(g[i]) * g[i];
      const double mh = m[i] / (1 - std::pow(b1, step)), vh = v[i] / (1 - std::pow(b2, step));
      p[i] = p[i] * (1 - lr * decay) - lr * mh / (std::sqrt(vh) + eps);
    }
  };
  for (int step = 1; step <= 4; ++step) {
    t.next_grads(step);
    opt.step(*be, lr);
    expect(w, mw, vw, t.gw, wd, step);
    expect(n, mn, vn, t.gn, 0.0, step);
    for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(t.w[i], w[i], 1e-6) << "step " << step << " w" << i;
    for (size_t i = 0; i < n.size(); ++i) EXPECT_NEAR(t.n[i], n[i], 1e-6) << "step " << step << " n" << i;
  }
  EXPECT_EQ(opt.steps(), 4);
}

TEST_P(OptimizerTest, SgdWithAndWithoutMomentum) {
  auto be = backend(GetParam());
  for (float mom : {0.0f, 0.9f}) {
    Tensors t;
    const float lr = 0.05f, wd = 0.01f;
    Optimizer opt(OptimizerConfig{.kind = OptimizerKind::SGD, .momentum = mom}, make_param_groups(t.params(), wd));
    std::vector<double> w(t.w.begin(), t.w.end()), buf(w.size(), 0.0);
    for (int step = 1; step <= 3; ++step) {
      t.next_grads(step);
      opt.step(*be, lr);
      for (size_t i = 0; i < w.size(); ++i) {
        double d = t.gw[i] + wd * w[i];
        if (mom > 0) d = buf[i] = (step == 1 ? d : mom * buf[i] + d);  // torch: buf = d at first
        w[i] -= lr * d;
        EXPECT_NEAR(t.w[i], w[i], 1e-6) << "momentum " << mom << " step " << step;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, OptimizerTest, ::testing::Values("reference", "cpu"));

TEST(ClipGradNorm, ScalesOnlyAboveTheLimit) {
  Tensors t;
  const auto groups = make_param_groups(t.params(), 0.0f);
  double ss = 0.0;
  for (float g : t.gw) ss += double(g) * g;
  for (float g : t.gn) ss += double(g) * g;
  const float norm = float(std::sqrt(ss));
  const std::vector<float> before = t.gw;

  EXPECT_FLOAT_EQ(clip_grad_norm(groups, 0.0f), norm);  // measure only
  EXPECT_EQ(t.gw, before);
  EXPECT_FLOAT_EQ(clip_grad_norm(groups, 10.0f * norm), norm);  // under the limit: untouched
  EXPECT_EQ(t.gw, before);
  EXPECT_FLOAT_EQ(clip_grad_norm(groups, 0.25f * norm), norm);  // returns the pre-clip norm
  const float coef = 0.25f * norm / (norm + 1e-6f);
  for (size_t i = 0; i < before.size(); ++i) EXPECT_FLOAT_EQ(t.gw[i], before[i] * coef);
  EXPECT_NEAR(clip_grad_norm(groups, 0.0f), 0.25f * norm, 1e-5f);
}

TEST(OptimizerState, ResumeIsBitwise) {
  for (OptimizerKind kind : {OptimizerKind::AdamW, OptimizerKind::SGD}) {
    auto be = make_cpu_backend();
    const OptimizerConfig cfg{.kind = kind, .momentum = 0.5f};
    Tensors a;
    Optimizer oa(cfg, make_param_groups(a.params(), 0.05f));
    for (int s = 1; s <= 2; ++s) {
      a.next_grads(s);
      oa.step(*be, 0.01f);
    }
    const std::vector<uint8_t> blob = oa.save_state();
    Tensors b = a;  // the parameters as a checkpoint would restore them
    Optimizer ob(cfg, make_param_groups(b.params(), 0.05f));
    ob.load_state(blob, "opt.bin");
    EXPECT_EQ(ob.steps(), 2);
    EXPECT_EQ(ob.save_state(), blob);
    for (int s = 3; s <= 5; ++s) {
      a.next_grads(s);
      b.next_grads(s);
      oa.step(*be, 0.01f);
      ob.step(*be, 0.01f);
    }
    EXPECT_EQ(a.w, b.w);
    EXPECT_EQ(a.n, b.n);
    // A fresh optimizer (no state) takes a different path: the check above can fail.
    Tensors c = a;
    Optimizer oc(cfg, make_param_groups(c.params(), 0.05f));
    c.next_grads(6);
    a.next_grads(6);
    oc.step(*be, 0.01f);
    oa.step(*be, 0.01f);
    EXPECT_NE(a.w, c.w);
  }
}

TEST(OptimizerState, CorruptBlobsAreRejected) {
  Tensors t;
  Optimizer opt(OptimizerConfig{}, make_param_groups(t.params(), 0.0f));
  opt.step(*make_reference_backend(), 0.1f);
  const std::vector<uint8_t> good = opt.save_state();
  auto rejects = [&](std::vector<uint8_t> blob, const std::string& needle) {
    Tensors u;
    Optimizer o(OptimizerConfig{}, make_param_groups(u.params(), 0.0f));
    try {
      o.load_state(blob, "opt.bin");
      ADD_FAILURE() << "accepted a blob that should fail with '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("opt.bin"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_EQ(o.steps(), 0) << "a failed load must leave the optimizer unchanged";
  };
  for (size_t cut : {size_t{0}, size_t{5}, size_t{20}, good.size() / 2, good.size() - 1}) {
    rejects(std::vector<uint8_t>(good.begin(), good.begin() + cut), cut < 8 ? "" : "truncated");
  }
  std::vector<uint8_t> b = good;
  b[0] = 'X';
  rejects(b, "magic");
  b = good;
  b[12] = 2;  // SGD
  rejects(b, "kind");
  b = good;
  b.push_back(0);
  rejects(b, "trailing");
  b = good;
  b[32 + 4] = 'X';  // first parameter name
  rejects(b, "expected 'layer.weight'");
  b = good;
  b[32] = 0xff;  // name length far beyond the blob
  b[33] = 0xff;
  b[34] = 0xff;
  rejects(b, "truncated");
  Tensors u;
  Optimizer sgd(OptimizerConfig{.kind = OptimizerKind::SGD}, make_param_groups(u.params(), 0.0f));
  EXPECT_THROW(sgd.load_state(good, "opt.bin"), Error);
}

}  // namespace
}  // namespace pricer
