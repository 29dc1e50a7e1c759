// The model against goldens written by tools/golden/make_model_golden.py, an independent PyTorch
// implementation of Hugging Face's LlamaForCausalLM with PEFT LoRA: loss, logits at the completion
// positions and every adapter gradient must agree to 1e-4 relative, on both backends.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "golden_util.h"
#include "kernels/backend.h"
#include "model/llama.h"

namespace pricer {
namespace {

using namespace golden;

LlamaModel load_model(const Golden& g) {
  LlamaModel m = base_model(g, config_of(g.manifest["config"]));
  const auto& lj = g.manifest["lora"];
  LoraConfig lc;
  lc.rank = lj["rank"];
  lc.alpha = lj["alpha"];
  lc.rslora = lj["rslora"];
  std::string targets;
  for (const auto& t : lj["targets"]) {
    if (!targets.empty()) targets += ',';
    targets += t.get<std::string>();
  }
  lc.targets = parse_lora_targets(targets);
  m.add_lora(lc, 0);
  EXPECT_NEAR(lc.scale(), lj["scale"].get<float>(), 1e-6f);
  for (Param& p : m.trainable_params()) {
    const std::vector<float> v = g.get<float>("lora." + p.name);
    EXPECT_EQ(static_cast<int64_t>(v.size()), p.size) << p.name;
    std::copy(v.begin(), v.end(), p.value);
  }
  return m;
}

Batch load_batch(const Golden& g) {
  Batch b;
  b.tokens = g.get<int32_t>("batch.tokens");
  b.positions = g.get<int32_t>("batch.positions");
  b.cu_seqlens = g.get<int32_t>("batch.cu_seqlens");
  b.targets = g.get<int32_t>("batch.targets");
  const std::vector<int32_t> mask = g.get<int32_t>("batch.loss_mask");
  b.loss_mask.assign(mask.begin(), mask.end());
  return b;
}

// Relative to the largest reference magnitude: entries near zero are judged on the tensor's scale.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 0.0;
  for (float w : want) scale = std::max(scale, std::fabs(double(w)));
  ASSERT_GT(scale, 0.0) << what << ": reference is all zero, the check would prove nothing";
  double worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::fabs(double(got[i]) - want[i]);
    if (d > worst) worst = d, at = i;
  }
  EXPECT_LE(worst, rel * scale) << what << ": worst at " << at << " got " << got[at] << " want " << want[at]
                                << " (scale " << scale << ")";
}

class ModelGolden : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {
 protected:
  std::unique_ptr<Backend> backend() const {
    return std::get<1>(GetParam()) == "cpu" ? make_cpu_backend() : make_reference_backend();
  }
};

TEST_P(ModelGolden, BatchMatchesMakeBatch) {
  const Golden g(std::get<0>(GetParam()));
  std::vector<Example> ex;
  for (const auto& e : g.manifest["examples"]) ex.push_back({e["tokens"], e["prompt_len"]});
  const Batch built = make_batch(ex, BatchMode::Packing, 0);
  const Batch want = load_batch(g);
  EXPECT_EQ(built.tokens, want.tokens);
  EXPECT_EQ(built.positions, want.positions);
  EXPECT_EQ(built.cu_seqlens, want.cu_seqlens);
  EXPECT_EQ(built.loss_mask, want.loss_mask);
  for (size_t t = 0; t < want.targets.size(); ++t) {
    if (want.loss_mask[t]) {
      EXPECT_EQ(built.targets[t], want.targets[t]) << "row " << t;
    }
  }
}

TEST_P(ModelGolden, LossLogitsAndAdapterGradients) {
  const Golden g(std::get<0>(GetParam()));
  auto be = backend();
  LlamaModel m = load_model(g);
  const Batch b = load_batch(g);
  const double want_loss = g.manifest["loss"];

  std::vector<int64_t> rows;
  for (int64_t t = 0; t < b.size(); ++t) {
    if (b.loss_mask[t]) rows.push_back(t);
  }
  expect_close(m.logits(b, rows, *be), g.get<float>("logits"), 1e-4, "logits");
  EXPECT_NEAR(m.loss(b, *be), want_loss, 1e-4 * want_loss);

  m.zero_grad();
  const float loss = m.forward_backward(b, *be);
  EXPECT_NEAR(loss, want_loss, 1e-4 * want_loss);
  int checked = 0;
  for (const Param& p : m.trainable_params()) {
    expect_close(std::vector<float>(p.grad, p.grad + p.size), g.get<float>("grad." + p.name), 1e-4, p.name);
    ++checked;
  }
  int64_t n_adapters = 0;
  for (const auto& [name, info] : g.manifest["tensors"].items()) n_adapters += name.starts_with("grad.");
  EXPECT_EQ(checked, n_adapters);

  // Checkpointing recomputes the same layers: the gradients are identical, not just close.
  std::vector<std::vector<float>> plain;
  for (const Param& p : m.trainable_params()) plain.emplace_back(p.grad, p.grad + p.size);
  m.zero_grad();
  EXPECT_EQ(m.forward_backward(b, *be, TrainOptions{.checkpoint = true}), loss);
  size_t i = 0;
  for (const Param& p : m.trainable_params()) {
    EXPECT_EQ(std::vector<float>(p.grad, p.grad + p.size), plain[i++]) << p.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Goldens, ModelGolden,
                         ::testing::Combine(::testing::Values("llama3_lora", "qwen_bias_untied"),
                                            ::testing::Values("reference", "cpu")),
                         [](const auto& info) { return std::get<0>(info.param) + "_" + std::get<1>(info.param); });

}  // namespace
}  // namespace pricer
