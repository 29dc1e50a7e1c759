// The model against goldens written by tools/golden/make_model_golden.py, an independent PyTorch
// implementation of Hugging Face's LlamaForCausalLM with PEFT LoRA: loss, logits at the completion
// positions and every adapter gradient must agree to 1e-4 relative, on both backends.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/backend.h"
#include "model/llama.h"

namespace pricer {
namespace {

struct Golden {
  nlohmann::json manifest;
  std::vector<char> blob;

  explicit Golden(const std::string& name) {
    const std::string base = std::string(PRICER_SOURCE_DIR) + "/tests/data/golden/" + name;
    std::ifstream js(base + ".json");
    if (!js) throw Error("cannot open " + base + ".json");
    manifest = nlohmann::json::parse(js);
    std::ifstream bin(base + ".bin", std::ios::binary);
    if (!bin) throw Error("cannot open " + base + ".bin");
    blob.assign(std::istreambuf_iterator<char>(bin), std::istreambuf_iterator<char>());
  }
  bool has(const std::string& name) const { return manifest["tensors"].contains(name); }
  std::vector<int64_t> shape(const std::string& name) const {
    return manifest["tensors"].at(name).at("shape").get<std::vector<int64_t>>();
  }
  template <class T>
  std::vector<T> get(const std::string& name) const {
    const auto& t = manifest["tensors"].at(name);
    int64_t n = 1;
    for (int64_t d : t.at("shape").get<std::vector<int64_t>>()) n *= d;
    const size_t off = t.at("offset").get<size_t>();
    if (off + n * sizeof(T) > blob.size()) throw Error("golden tensor " + name + " past the end");
    std::vector<T> v(n);
    std::memcpy(v.data(), blob.data() + off, n * sizeof(T));
    return v;
  }
};

ModelConfig config_of(const nlohmann::json& c) {
  ModelConfig cfg;
  cfg.vocab_size = c["vocab_size"];
  cfg.dim = c["dim"];
  cfg.n_layers = c["n_layers"];
  cfg.n_heads = c["n_heads"];
  cfg.n_kv_heads = c["n_kv_heads"];
  cfg.head_dim = c["head_dim"];
  cfg.ffn_dim = c["ffn_dim"];
  cfg.rms_eps = c["rms_eps"];
  cfg.rope_theta = c["rope_theta"];
  cfg.tied_embeddings = c["tied_embeddings"];
  cfg.qkv_bias = c["qkv_bias"];
  if (!c["rope_scaling"].is_null()) {
    const auto& rs = c["rope_scaling"];
    cfg.rope_scaling.factor = rs["factor"];
    cfg.rope_scaling.low_freq_factor = rs["low_freq_factor"];
    cfg.rope_scaling.high_freq_factor = rs["high_freq_factor"];
    cfg.rope_scaling.original_max_position = rs["original_max_position_embeddings"];
  }
  return cfg;
}

LlamaModel load_model(const Golden& g) {
  const ModelConfig cfg = config_of(g.manifest["config"]);
  std::map<std::string, Weight> weights;
  for (const auto& [name, info] : g.manifest["tensors"].items()) {
    if (!name.starts_with("model.") && !name.starts_with("lm_head.")) continue;
    const std::vector<int64_t> sh = g.shape(name);
    const std::vector<float> v = g.get<float>(name);
    weights[name] = Weight::from_f32(v.data(), sh[0], sh.size() > 1 ? sh[1] : 1, DType::F32);
  }
  LlamaModel m = LlamaModel::from_weights(cfg, std::move(weights), "golden");
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
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel,
                  const std::string& what) {
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
  EXPECT_LE(worst, rel * scale) << what << ": worst at " << at << " got " << got[at] << " want "
                                << want[at] << " (scale " << scale << ")";
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

INSTANTIATE_TEST_SUITE_P(
    Goldens, ModelGolden,
    ::testing::Combine(::testing::Values("llama3_lora", "qwen_bias_untied"), ::testing::Values("reference", "cpu")),
    [](const auto& info) { return std::get<0>(info.param) + "_" + std::get<1>(info.param); });

}  // namespace
}  // namespace pricer
