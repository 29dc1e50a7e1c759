// The Llama model on its own: gradients against finite differences (adapters, and every tensor in
// full-parameter mode), checkpointing, padding vs packing, determinism, the KV cache, NF4 bases,
// configuration and input validation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/threads.h"
#include "kernels/backend.h"
#include "model/llama.h"

namespace pricer {
namespace {

ModelConfig tiny_config(bool qkv_bias = false, bool tied = true) {
  ModelConfig c;
  c.vocab_size = 48;
  c.dim = 16;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 4;
  c.ffn_dim = 24;
  c.max_seq_len = 64;
  c.rope_theta = 500000.0f;
  c.rope_scaling = {.factor = 8.0f, .low_freq_factor = 1.0f, .high_freq_factor = 4.0f, .original_max_position = 16};
  c.tied_embeddings = tied;
  c.qkv_bias = qkv_bias;
  return c;
}

std::vector<Example> examples(int64_t vocab, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(vocab - 1));
  std::vector<Example> ex;
  const int64_t lens[] = {7, 11, 4}, prompts[] = {3, 6, 1};
  for (int i = 0; i < 3; ++i) {
    Example e;
    for (int64_t t = 0; t < lens[i]; ++t) e.tokens.push_back(tok(rng));
    e.prompt_len = prompts[i];
    ex.push_back(e);
  }
  return ex;
}

void fill_random(float* v, int64_t n, float scale, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> nd(0.0f, scale);
  for (int64_t i = 0; i < n; ++i) v[i] = nd(rng);
}

// Random non-zero biases and norm weights away from 1 so their gradients are exercised.
LlamaModel tiny_model(bool qkv_bias, bool tied, uint64_t seed = 3) {
  LlamaModel m = LlamaModel::random(tiny_config(qkv_bias, tied), seed, 0.3f);
  for (int64_t l = 0; l < m.config().n_layers; ++l) {
    LayerWeights& L = m.layer(l);
    for (auto* v : {&L.bq, &L.bk, &L.bv}) fill_random(v->data(), v->size(), 0.3f, seed + l + 100);
    for (float& w : L.attn_norm) w += 0.1f * std::sin(3.0f * w + l);
    fill_random(L.ffn_norm.data(), L.ffn_norm.size(), 0.2f, seed + l + 200);
    for (float& w : L.ffn_norm) w += 1.0f;
  }
  fill_random(m.final_norm().data(), m.config().dim, 0.2f, seed + 300);
  for (float& w : m.final_norm()) w += 1.0f;
  return m;
}

LoraConfig lora_all(int64_t rank = 3, float dropout = 0.0f) {
  LoraConfig lc;
  lc.rank = rank;
  lc.alpha = 6.0f;
  lc.dropout = dropout;
  lc.targets = parse_lora_targets("all");
  return lc;
}

// PEFT starts B at zero; the gradient checks want every adapter to matter.
void randomize_lora_b(LlamaModel& m, uint64_t seed) {
  for (Param& p : m.trainable_params()) {
    if (p.name.ends_with("lora_B.weight")) fill_random(p.value, p.size, 0.3f, seed++);
  }
}

std::vector<std::vector<float>> grads_of(LlamaModel& m) {
  std::vector<std::vector<float>> g;
  for (const Param& p : m.trainable_params()) g.emplace_back(p.grad, p.grad + p.size);
  return g;
}

double max_abs(const std::vector<float>& v) {
  double s = 0.0;
  for (float x : v) s = std::max(s, std::fabs(double(x)));
  return s;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double scale = max_abs(want);
  ASSERT_GT(scale, 0.0) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], rel * scale) << what << " at " << i;
  }
}

// Central differences of `loss` against the analytic gradient, per tensor: along a direction
// mixing the gradient with a random one (a whole-tensor check), and at the largest entries.
template <class LossFn>
void check_gradients(LlamaModel& m, LossFn loss, const std::vector<std::vector<float>>& grads, float eps,
                     const std::string& what) {
  std::vector<Param> params = m.trainable_params();
  ASSERT_EQ(params.size(), grads.size());
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  for (size_t pi = 0; pi < params.size(); ++pi) {
    const Param& p = params[pi];
    const std::vector<float>& g = grads[pi];
    const double gnorm = std::sqrt(std::inner_product(g.begin(), g.end(), g.begin(), 0.0));
    ASSERT_GT(gnorm, 1e-4) << what << " " << p.name << ": gradient too small to check";
    std::vector<float> dir(p.size);
    for (int64_t i = 0; i < p.size; ++i) dir[i] = nd(rng);
    const double rnorm = std::sqrt(std::inner_product(dir.begin(), dir.end(), dir.begin(), 0.0));
    for (int64_t i = 0; i < p.size; ++i) dir[i] = float(g[i] / gnorm + dir[i] / rnorm);
    const std::vector<float> saved(p.value, p.value + p.size);
    auto at = [&](double t) {
      for (int64_t i = 0; i < p.size; ++i) p.value[i] = saved[i] + float(t) * dir[i];
      const double l = loss();
      std::copy(saved.begin(), saved.end(), p.value);
      return l;
    };
    const double fd = (at(eps) - at(-eps)) / (2.0 * eps);
    const double an = std::inner_product(g.begin(), g.end(), dir.begin(), 0.0);
    EXPECT_NEAR(fd, an, 1e-2 * std::fabs(an) + 2e-4) << what << " " << p.name << " (direction)";

    std::vector<int64_t> idx(p.size);
    std::iota(idx.begin(), idx.end(), 0);
    const int64_t k = std::min<int64_t>(2, p.size);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int64_t a, int64_t b) { return std::fabs(g[a]) > std::fabs(g[b]); });
    for (int64_t j = 0; j < k; ++j) {
      const int64_t i = idx[j];
      p.value[i] = saved[i] + eps;
      const double lp = loss();
      p.value[i] = saved[i] - eps;
      const double lm = loss();
      p.value[i] = saved[i];
      const double fde = (lp - lm) / (2.0 * eps);
      EXPECT_NEAR(fde, g[i], 2e-2 * std::fabs(g[i]) + 3e-4) << what << " " << p.name << "[" << i << "]";
    }
  }
}

// ---------------------------------------------------------------------------------------------

TEST(ModelConfig, ValidateNamesTheProblem) {
  ModelConfig c = tiny_config();
  EXPECT_NO_THROW(c.validate("cfg.json"));
  auto fails_with = [](ModelConfig bad, const std::string& key) {
    try {
      bad.validate("cfg.json");
      ADD_FAILURE() << "no error for " << key;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cfg.json"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  };
  ModelConfig b = c;
  b.vocab_size = 0;
  fails_with(b, "vocab_size");
  b = c;
  b.n_kv_heads = 3;
  fails_with(b, "num_key_value_heads");
  b = c;
  b.head_dim = 5;
  fails_with(b, "head_dim");
  b = c;
  b.ffn_dim = int64_t{1} << 40;
  fails_with(b, "intermediate_size");
  b = c;
  b.n_layers = 1024;
  b.dim = 32768;
  b.ffn_dim = 131072;
  fails_with(b, "parameters");
  b = c;
  b.rms_eps = -1.0f;
  fails_with(b, "rms_norm_eps");
  b = c;
  b.rope_scaling.high_freq_factor = 0.5f;
  fails_with(b, "rope_scaling");
  EXPECT_STREQ(proj_name(Proj::Gate), "gate_proj");
  EXPECT_STREQ(proj_name(Proj::Down), "down_proj");
}

TEST(ModelConfig, ParamCountMatchesTheTensors) {
  for (bool bias : {false, true}) {
    for (bool tied : {false, true}) {
      LlamaModel m = tiny_model(bias, tied);
      m.enable_full_training();
      int64_t n = 0;
      for (const Param& p : m.trainable_params()) n += p.size;
      EXPECT_EQ(n, m.config().n_params()) << "bias " << bias << " tied " << tied;
    }
  }
}

TEST(Rope, Llama3ScalingBands) {
  ModelConfig c = tiny_config();
  c.head_dim = 16;
  c.n_heads = 1;
  c.n_kv_heads = 1;
  ModelConfig plain = c;
  plain.rope_scaling.factor = 1.0f;
  const std::vector<float> base = rope_inv_freq(plain), scaled = rope_inv_freq(c);
  ASSERT_EQ(base.size(), 8u);
  for (size_t i = 0; i < base.size(); ++i) {
    EXPECT_NEAR(base[i], std::pow(500000.0, -double(2 * i) / 16.0), 1e-6 * base[i]);
    const double wavelen = 2 * M_PI / base[i];
    if (wavelen < 16.0 / 4.0) {
      EXPECT_EQ(scaled[i], base[i]) << i;  // high frequencies untouched
    } else if (wavelen > 16.0) {
      EXPECT_NEAR(scaled[i], base[i] / 8.0f, 1e-6 * base[i]) << i;  // low ones slowed by factor
    } else {
      EXPECT_LT(scaled[i], base[i]);
      EXPECT_GT(scaled[i], base[i] / 8.0f);
    }
  }
}

TEST(Batch, PaddingAndPackingLayouts) {
  const std::vector<Example> ex = examples(48, 1);
  const Batch pack = make_batch(ex, BatchMode::Packing, 0);
  const Batch pad = make_batch(ex, BatchMode::Padding, 47);
  EXPECT_EQ(pack.size(), 22);
  EXPECT_EQ(pad.size(), 33);
  EXPECT_EQ(pack.cu_seqlens, (std::vector<int32_t>{0, 7, 18, 22}));
  EXPECT_EQ(pad.cu_seqlens, (std::vector<int32_t>{0, 11, 22, 33}));
  // Completion tokens: 7-3 + 11-6 + 4-1 = 12 in both layouts; pads are never counted.
  EXPECT_EQ(pack.n_loss_tokens(), 12);
  EXPECT_EQ(pad.n_loss_tokens(), 12);
  EXPECT_EQ(pad.tokens[10], 47);
  EXPECT_EQ(pad.loss_mask[10], 0);
  EXPECT_EQ(pack.positions[7], 0);
  EXPECT_EQ(pack.targets[2], ex[0].tokens[3]);
  EXPECT_EQ(pack.loss_mask[1], 0);
  EXPECT_EQ(pack.loss_mask[2], 1);

  Batch bad = pack;
  bad.tokens[5] = 48;
  EXPECT_THROW(bad.validate(48, 64, "b"), Error);
  bad = pack;
  bad.cu_seqlens = {0, 9, 7, 22};
  EXPECT_THROW(bad.validate(48, 64, "b"), Error);
  bad = pack;
  bad.positions.pop_back();
  EXPECT_THROW(bad.validate(48, 64, "b"), Error);
  bad = pack;
  bad.positions[3] = 64;
  EXPECT_THROW(bad.validate(48, 64, "b"), Error);
  std::vector<Example> one = {{{5}, 1}};
  EXPECT_THROW(make_batch(one, BatchMode::Packing, 0), Error);
}

TEST(LlamaModel, FromWeightsRejectsBadMaps) {
  LlamaModel src = tiny_model(true, false);
  const ModelConfig cfg = src.config();
  auto full_map = [&] {
    std::map<std::string, Weight> w;
    auto vec = [](const std::vector<float>& v) { return Weight::from_f32(v.data(), int64_t(v.size()), 1, DType::F32); };
    w["model.embed_tokens.weight"] = src.embedding();
    w["lm_head.weight"] = src.head();
    w["model.norm.weight"] = vec(src.final_norm());
    for (int64_t l = 0; l < cfg.n_layers; ++l) {
      const LayerWeights& L = src.layer(l);
      const std::string pre = "model.layers." + std::to_string(l) + ".";
      w[pre + "input_layernorm.weight"] = vec(L.attn_norm);
      w[pre + "post_attention_layernorm.weight"] = vec(L.ffn_norm);
      for (int p = 0; p < kNumProj; ++p) {
        const std::string mod = p <= int(Proj::O) ? "self_attn." : "mlp.";
        w[pre + mod + proj_name(Proj(p)) + ".weight"] = L.proj[p];
      }
      w[pre + "self_attn.q_proj.bias"] = vec(L.bq);
      w[pre + "self_attn.k_proj.bias"] = vec(L.bk);
      w[pre + "self_attn.v_proj.bias"] = vec(L.bv);
    }
    return w;
  };
  auto expect_error = [&](std::map<std::string, Weight> w, const std::string& needle) {
    try {
      LlamaModel::from_weights(cfg, std::move(w), "model.safetensors");
      ADD_FAILURE() << "no error, expected one naming " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
    }
  };
  // The complete map round-trips into an identical model.
  LlamaModel copy = LlamaModel::from_weights(cfg, full_map(), "model.safetensors");
  const Batch b = make_batch(examples(48, 2), BatchMode::Packing, 0);
  auto ref = make_reference_backend();
  EXPECT_EQ(copy.loss(b, *ref), src.loss(b, *ref));

  auto w = full_map();
  w.erase("model.layers.1.mlp.up_proj.weight");
  expect_error(std::move(w), "model.layers.1.mlp.up_proj.weight");
  w = full_map();
  w["model.layers.0.self_attn.k_proj.weight"] = src.layer(0).proj[int(Proj::Q)];
  expect_error(std::move(w), "model.layers.0.self_attn.k_proj.weight");
  w = full_map();
  w["model.layers.0.self_attn.q_proj.bias"] = src.layer(0).proj[int(Proj::Q)];
  expect_error(std::move(w), "model.layers.0.self_attn.q_proj.bias");
  w = full_map();
  w["model.layers.7.mlp.up_proj.weight"] = src.layer(0).proj[int(Proj::Up)];
  expect_error(std::move(w), "model.layers.7.mlp.up_proj.weight");
  w = full_map();
  w.erase("lm_head.weight");
  expect_error(std::move(w), "lm_head.weight");
}

TEST(LlamaModel, LoraInitLeavesTheBaseModelUnchanged) {
  LlamaModel base = tiny_model(false, true);
  LlamaModel adapted = base;
  adapted.add_lora(lora_all(4), 9);
  const Batch b = make_batch(examples(48, 4), BatchMode::Packing, 0);
  auto ref = make_reference_backend();
  EXPECT_EQ(adapted.loss(b, *ref), base.loss(b, *ref));
  for (int64_t l = 0; l < 2; ++l) {
    const LoraAdapter* down = adapted.lora(l, Proj::Down);
    ASSERT_NE(down, nullptr);
    EXPECT_EQ(down->in, 24);
    const float bound = 1.0f / std::sqrt(24.0f);
    EXPECT_LE(max_abs(down->A), bound);
    EXPECT_GT(max_abs(down->A), 0.5f * bound);
    EXPECT_EQ(max_abs(down->B), 0.0);
  }
  LoraConfig lc = lora_all(4);
  lc.targets = parse_lora_targets("q,v_proj");
  EXPECT_TRUE(lc.targets[int(Proj::Q)] && lc.targets[int(Proj::V)] && !lc.targets[int(Proj::K)]);
  EXPECT_THROW(parse_lora_targets("q,attn"), Error);
  EXPECT_FLOAT_EQ(lc.scale(), 1.5f);
  lc.rslora = true;
  EXPECT_FLOAT_EQ(lc.scale(), 3.0f);
}

TEST(LlamaModel, AdapterGradientsMatchFiniteDifferences) {
  auto ref = make_reference_backend();
  for (bool bias : {false, true}) {
    LlamaModel m = tiny_model(bias, !bias);
    m.add_lora(lora_all(3), 5);
    randomize_lora_b(m, 40);
    const Batch b = make_batch(examples(48, 5), BatchMode::Packing, 0);
    m.zero_grad();
    m.forward_backward(b, *ref);
    check_gradients(
        m, [&] { return double(m.loss(b, *ref)); }, grads_of(m), 1e-2f, bias ? "bias/untied" : "tied");
  }
}

TEST(LlamaModel, TrainableTokenRowsStartAsTheBaseAndHaveExactGradients) {
  auto ref = make_reference_backend();
  const Batch b = make_batch(examples(48, 5), BatchMode::Packing, 0);
  // Rows that occur in the batch as inputs and as targets, so both paths carry gradient.
  std::vector<int32_t> ids;
  for (size_t t = 0; t < b.tokens.size(); t += 3) ids.push_back(b.tokens[t]);
  for (bool tied : {true, false}) {
    for (bool with_lora : {false, true}) {
      const std::string what = std::string(tied ? "tied" : "untied") + (with_lora ? " + lora" : "");
      LlamaModel base = tiny_model(false, tied);
      LlamaModel m = base;
      if (with_lora) {
        m.add_lora(lora_all(3), 5);
        randomize_lora_b(m, 40);
      }
      const float before = m.loss(b, *ref);
      m.add_trainable_tokens(ids);
      EXPECT_EQ(m.loss(b, *ref), before) << what << ": fresh rows must leave the model unchanged";
      const std::vector<Param> ps = m.trainable_params();
      ASSERT_EQ(ps.size(), (with_lora ? 28u : 0u) + (tied ? 1u : 2u)) << what;
      // Move the rows away from the base so that the head's correction term is exercised.
      for (const Param& p : ps)
        if (p.name.find("token_adapter") != std::string::npos) fill_random(p.value, p.size, 0.3f, 77);
      m.zero_grad();
      m.forward_backward(b, *ref);
      check_gradients(
          m, [&] { return double(m.loss(b, *ref)); }, grads_of(m), 1e-2f, what);
    }
  }
  // Rows touch only their tokens: a token outside the set keeps the frozen logit.
  LlamaModel m = tiny_model(false, false);
  const std::vector<float> base_logits = m.logits(b, std::vector<int64_t>{0}, *ref);
  m.add_trainable_tokens({5, 2, 5});
  EXPECT_EQ(m.trainable_tokens().ids, (std::vector<int32_t>{2, 5}));
  for (const Param& p : m.trainable_params()) fill_random(p.value, p.size, 0.3f, 78);
  const std::vector<float> got = m.logits(b, std::vector<int64_t>{0}, *ref);
  for (int64_t v = 0; v < 48; ++v) {
    if (v == 2 || v == 5) {
      EXPECT_NE(got[v], base_logits[v]);
    } else if (b.tokens[0] != 2 && b.tokens[0] != 5) {
      EXPECT_EQ(got[v], base_logits[v]) << v;
    }
  }
  EXPECT_THROW(m.add_trainable_tokens({48}), Error);
  EXPECT_THROW(m.add_trainable_tokens({}), Error);
  LlamaModel full = tiny_model(false, true);
  full.enable_full_training();
  EXPECT_THROW(full.add_trainable_tokens({1}), Error);
}

TEST(LlamaModel, DropoutIsDeterministicAndDifferentiable) {
  auto ref = make_reference_backend();
  LlamaModel m = tiny_model(false, true);
  m.add_lora(lora_all(3, 0.3f), 5);
  randomize_lora_b(m, 60);
  const Batch b = make_batch(examples(48, 6), BatchMode::Packing, 0);
  const TrainOptions opt{.dropout_seed = 17, .step = 4};
  m.zero_grad();
  const float l1 = m.forward_backward(b, *ref, opt);
  const auto g = grads_of(m);
  // The masks depend on the step; at a given step the loss is a smooth function of the adapters.
  m.zero_grad();
  EXPECT_EQ(m.forward_backward(b, *ref, opt), l1);
  EXPECT_EQ(grads_of(m), g);
  TrainOptions other = opt;
  other.step = 5;
  EXPECT_NE(m.forward_backward(b, *ref, other), l1);
  EXPECT_NE(m.loss(b, *ref), l1);  // evaluation runs without dropout
  check_gradients(
      m, [&] { return double(m.forward_backward(b, *ref, opt)); }, g, 2e-3f, "dropout");
  // Checkpointing regenerates the same masks.
  m.zero_grad();
  TrainOptions ck = opt;
  ck.checkpoint = true;
  EXPECT_EQ(m.forward_backward(b, *ref, ck), l1);
  EXPECT_EQ(grads_of(m), g);
}

// The loss reads the last layer only at the completion rows, so its output projection and MLP
// run there alone: the same loss and gradients as the layer run at every row, with dropout masks
// drawn as the full pass draws them, with checkpointing, on both backends.
TEST(LlamaModel, LastLayerRunsOnlyWhereTheLossReadsWithTheSameGradients) {
  const Batch b = make_batch(examples(48, 9), BatchMode::Packing, 0);
  int64_t loss_rows = 0;
  for (int64_t t = 0; t < b.size(); ++t) loss_rows += b.loss_mask[t] ? 1 : 0;
  ASSERT_GT(loss_rows, 1);
  ASSERT_LT(loss_rows, b.size());
  for (const bool fast : {false, true}) {
    auto be = fast ? make_cpu_backend() : make_reference_backend();
    for (const bool full : {false, true}) {
      LlamaModel m = tiny_model(full, !full);
      if (full) {
        m.enable_full_training();
      } else {
        m.add_lora(lora_all(3, 0.3f), 5);
        randomize_lora_b(m, 61);
      }
      for (const bool checkpoint : {false, true}) {
        const TrainOptions opt{.checkpoint = checkpoint, .dropout_seed = 17, .step = 2};
        TrainOptions every = opt;
        every.last_layer_every_row = true;
        m.zero_grad();
        const float l_all = m.forward_backward(b, *be, every);
        const auto g_all = grads_of(m);
        m.zero_grad();
        const float l_keep = m.forward_backward(b, *be, opt);
        const auto g_keep = grads_of(m);
        const std::string what = std::string(fast ? "cpu" : "reference") + (full ? " full" : " lora+dropout") +
                                 (checkpoint ? " checkpointed" : "");
        EXPECT_NEAR(l_keep, l_all, 1e-6f * std::fabs(l_all)) << what;
        ASSERT_EQ(g_keep.size(), g_all.size());
        for (size_t i = 0; i < g_all.size(); ++i) {
          const double scale = std::max(1e-3, max_abs(g_all[i]));
          for (size_t j = 0; j < g_all[i].size(); ++j)
            ASSERT_NEAR(g_keep[i][j], g_all[i][j], 2e-5 * scale) << what << " param " << i << " [" << j << "]";
        }
      }
    }
  }
}

TEST(LlamaModel, FullParameterGradientsMatchFiniteDifferences) {
  auto ref = make_reference_backend();
  for (bool bias : {false, true}) {
    LlamaModel m = tiny_model(bias, !bias);
    m.enable_full_training();
    const Batch b = make_batch(examples(48, 7), BatchMode::Packing, 0);
    m.zero_grad();
    m.forward_backward(b, *ref);
    const auto g = grads_of(m);
    check_gradients(
        m, [&] { return double(m.loss(b, *ref)); }, g, 1e-2f, bias ? "full bias/untied" : "full tied");
    m.zero_grad();
    m.forward_backward(b, *ref, TrainOptions{.checkpoint = true});
    EXPECT_EQ(grads_of(m), g) << "checkpointing changed the gradients";
  }
}

TEST(LlamaModel, SoftTargetsAreCrossEntropyAgainstADistributionWithExactGradients) {
  auto ref = make_reference_backend();
  LlamaModel m = tiny_model(false, true);
  m.enable_full_training();
  Batch b = make_batch(examples(48, 8), BatchMode::Packing, 0);
  std::vector<int64_t> rows;
  for (int64_t t = 0; t < b.size(); ++t)
    if (b.loss_mask[t]) rows.push_back(t);
  ASSERT_GE(rows.size(), 2u);
  // A one-hot soft target is the hard target: same loss, same gradients.
  m.zero_grad();
  const float hard = m.forward_backward(b, *ref);
  const auto g_hard = grads_of(m);
  Batch onehot = b;
  onehot.soft_targets.push_back({rows[0], {b.targets[rows[0]]}, {1.0f}});
  m.zero_grad();
  EXPECT_NEAR(m.forward_backward(onehot, *ref), hard, 1e-6);
  const auto g_onehot = grads_of(m);
  ASSERT_EQ(g_onehot.size(), g_hard.size());
  for (size_t i = 0; i < g_hard.size(); ++i)
    for (size_t j = 0; j < g_hard[i].size(); ++j) ASSERT_NEAR(g_onehot[i][j], g_hard[i][j], 1e-6) << i << "," << j;

  // A spread label moves loss and gradients, and they agree with finite differences of loss().
  Batch soft = b;
  soft.soft_targets.push_back({rows[0], {1, 2, b.targets[rows[0]]}, {0.25f, 0.25f, 0.5f}});
  soft.soft_targets.push_back({rows[1], {3, 4}, {0.5f, 0.5f}});
  m.zero_grad();
  const float l = m.forward_backward(soft, *ref);
  EXPECT_NE(l, hard);
  EXPECT_NEAR(m.loss(soft, *ref), l, 1e-6);
  const auto g = grads_of(m);
  check_gradients(
      m, [&] { return double(m.loss(soft, *ref)); }, g, 1e-2f, "soft targets");

  // Bad soft targets are refused with the row named.
  Batch bad = b;
  bad.soft_targets.push_back({rows[0], {1, 2}, {0.5f, 0.6f}});
  EXPECT_THROW(m.loss(bad, *ref), Error);
  bad.soft_targets = {{0, {1}, {1.0f}}};
  if (!b.loss_mask[0]) {
    EXPECT_THROW(m.loss(bad, *ref), Error);
  }
  bad.soft_targets = {{rows[0], {1}, {1.0f}}, {rows[0], {2}, {1.0f}}};
  EXPECT_THROW(m.loss(bad, *ref), Error);
}

TEST(LlamaModel, GradientsAccumulateUntilZeroed) {
  auto ref = make_reference_backend();
  LlamaModel m = tiny_model(false, true);
  m.add_lora(lora_all(2), 5);
  randomize_lora_b(m, 70);
  const Batch b = make_batch(examples(48, 8), BatchMode::Packing, 0);
  m.zero_grad();
  m.forward_backward(b, *ref);
  const auto once = grads_of(m);
  m.forward_backward(b, *ref);
  const auto twice = grads_of(m);
  for (size_t i = 0; i < once.size(); ++i) {
    for (size_t j = 0; j < once[i].size(); ++j) ASSERT_FLOAT_EQ(twice[i][j], 2.0f * once[i][j]);
  }
}

TEST(LlamaModel, PaddingAndPackingAgree) {
  for (const char* backend : {"reference", "cpu"}) {
    auto be = std::string(backend) == "cpu" ? make_cpu_backend() : make_reference_backend();
    LlamaModel m = tiny_model(true, false);
    m.add_lora(lora_all(3), 5);
    randomize_lora_b(m, 80);
    const auto ex = examples(48, 9);
    m.zero_grad();
    const float lpack = m.forward_backward(make_batch(ex, BatchMode::Packing, 0), *be);
    const auto gpack = grads_of(m);
    m.zero_grad();
    const float lpad = m.forward_backward(make_batch(ex, BatchMode::Padding, 47), *be);
    const auto gpad = grads_of(m);
    EXPECT_NEAR(lpad, lpack, 1e-6 * lpack) << backend;
    for (size_t i = 0; i < gpack.size(); ++i) expect_close(gpad[i], gpack[i], 1e-5, backend);
  }
}

TEST(LlamaModel, DeterministicForASeedAndThreadCount) {
  auto cpu = make_cpu_backend();
  const int saved = threads();
  for (int n : {1, 2}) {
    set_threads(n);
    std::vector<std::vector<float>> first;
    for (int run = 0; run < 2; ++run) {
      LlamaModel m = tiny_model(false, true, 21);
      m.add_lora(lora_all(3, 0.1f), 22);
      randomize_lora_b(m, 23);
      m.zero_grad();
      m.forward_backward(make_batch(examples(48, 10), BatchMode::Packing, 0), *cpu,
                         TrainOptions{.dropout_seed = 5, .step = 1});
      if (run == 0) {
        first = grads_of(m);
      } else {
        EXPECT_EQ(grads_of(m), first) << n << " threads";
      }
    }
  }
  set_threads(saved);
}

TEST(LlamaModel, KvCacheMatchesTheFullForward) {
  for (const char* backend : {"reference", "cpu"}) {
    auto be = std::string(backend) == "cpu" ? make_cpu_backend() : make_reference_backend();
    for (bool bias : {false, true}) {
      LlamaModel m = tiny_model(bias, !bias);
      m.add_lora(lora_all(2), 5);
      randomize_lora_b(m, 90);
      const std::vector<int32_t> toks = {3, 17, 42, 8, 8, 30, 1, 0, 45, 12, 19, 7};
      Batch b = make_batch(std::vector<Example>{{toks, 1}}, BatchMode::Packing, 0);
      std::vector<int64_t> rows(toks.size());
      std::iota(rows.begin(), rows.end(), 0);
      const std::vector<float> full = m.logits(b, rows, *be);
      const int64_t V = m.config().vocab_size;
      auto row = [&](int64_t t) { return std::vector<float>(full.begin() + t * V, full.begin() + (t + 1) * V); };

      KvCache cache = m.make_cache(16);
      expect_close(m.prefill(cache, std::span(toks).first(5), *be), row(4), 1e-5, "prefill");
      for (size_t t = 5; t < 9; ++t) expect_close(m.decode(cache, toks[t], *be), row(t), 1e-5, "decode");
      // More than one token into a non-empty cache goes one at a time.
      expect_close(m.prefill(cache, std::span(toks).subspan(9), *be), row(11), 1e-5, "second prefill");
      EXPECT_EQ(cache.length(), 12);
      EXPECT_THROW(m.prefill(cache, std::span(toks).first(5), *be), Error);  // overflows 16
      cache.clear();
      expect_close(m.decode(cache, toks[0], *be), row(0), 1e-5, "after clear");
    }
  }
}

TEST(LlamaModel, SequencesSharingAPassMatchTheirOwnCaches) {
  for (const char* backend : {"reference", "cpu"}) {
    auto be = std::string(backend) == "cpu" ? make_cpu_backend() : make_reference_backend();
    LlamaModel m = tiny_model(true, false);
    m.add_lora(lora_all(2), 5);
    randomize_lora_b(m, 91);
    const int64_t V = m.config().vocab_size;
    const std::vector<std::vector<int32_t>> prompts = {{3, 17, 42}, {8}, {30, 1, 0, 45, 12, 19}};
    const std::vector<std::vector<int32_t>> next = {{5, 9}, {44, 2}, {7, 7}};
    // Alone: each sequence with its own cache, one after another.
    std::vector<std::vector<float>> alone;
    for (size_t i = 0; i < prompts.size(); ++i) {
      KvCache c = m.make_cache(12);
      alone.push_back(m.prefill(c, prompts[i], *be));
      for (int32_t t : next[i]) alone.push_back(m.decode(c, t, *be));
    }
    // Together: one pass for the three prompts, then one per step for the three next tokens.
    std::vector<KvCache> caches;
    for (size_t i = 0; i < prompts.size(); ++i) caches.push_back(m.make_cache(12));
    std::vector<KvCache*> ptrs = {&caches[0], &caches[1], &caches[2]};
    std::vector<std::vector<float>> together(alone.size());
    auto keep = [&](const std::vector<float>& lg, size_t step) {
      for (size_t i = 0; i < 3; ++i) together[i * 3 + step].assign(lg.begin() + i * V, lg.begin() + (i + 1) * V);
    };
    keep(m.prefill_many(ptrs, prompts, *be), 0);
    for (size_t step = 0; step < 2; ++step) {
      const std::vector<int32_t> toks = {next[0][step], next[1][step], next[2][step]};
      keep(m.decode_many(ptrs, toks, *be), step + 1);
    }
    for (size_t i = 0; i < alone.size(); ++i) expect_close(together[i], alone[i], 1e-5, backend);
    EXPECT_EQ(caches[2].length(), 8);
    // Mixing a prompt into a decoding pass, or one cache twice, is refused before anything runs.
    KvCache fresh = m.make_cache(12);
    std::vector<KvCache*> mixed = {&caches[0], &fresh};
    EXPECT_THROW(m.decode_many(mixed, std::vector<int32_t>{1, 2}, *be), Error);
    std::vector<KvCache*> twice = {&caches[0], &caches[0]};
    EXPECT_THROW(m.decode_many(twice, std::vector<int32_t>{1, 2}, *be), Error);
    EXPECT_EQ(caches[0].length(), 5);
  }
}

TEST(LlamaModel, Nf4BaseEqualsItsDequantizedTwin) {
  ModelConfig c = tiny_config();
  c.dim = 64;
  c.ffn_dim = 128;
  c.head_dim = 16;
  LlamaModel base = LlamaModel::random(c, 31, 0.05f);
  LlamaModel nf4 = base;
  nf4.convert_base(DType::NF4);
  LlamaModel twin = nf4;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    for (Weight& w : twin.layer(l).proj) {
      EXPECT_EQ(w.dtype(), DType::NF4);
      const std::vector<float> f = w.to_f32();
      w = Weight::from_f32(f.data(), w.rows(), w.cols(), DType::F32);
    }
  }
  // The embedding (and the tied head with it) in bf16, its twin holding the rounded values in f32.
  nf4.convert_embedding(DType::BF16);
  EXPECT_EQ(nf4.embedding().dtype(), DType::BF16);
  const std::vector<float> emb = nf4.embedding().to_f32();
  twin.embedding() = Weight::from_f32(emb.data(), c.vocab_size, c.dim, DType::F32);
  for (LlamaModel* m : {&nf4, &twin}) {
    m->add_lora(lora_all(4), 8);
    randomize_lora_b(*m, 100);
  }
  const Batch b = make_batch(examples(48, 11), BatchMode::Packing, 0);
  std::vector<int64_t> rows(b.size());
  std::iota(rows.begin(), rows.end(), 0);
  for (const char* backend : {"reference", "cpu"}) {
    auto be = std::string(backend) == "cpu" ? make_cpu_backend() : make_reference_backend();
    const std::vector<float> lq = nf4.logits(b, rows, *be), lt = twin.logits(b, rows, *be);
    expect_close(lq, lt, 1e-5, backend);
    // The quantization itself is visible: the f32 original differs far more than that.
    const std::vector<float> lo = base.logits(b, rows, *be);
    double diff = 0.0;
    for (size_t i = 0; i < lo.size(); ++i) diff = std::max(diff, std::fabs(double(lo[i]) - lt[i]));
    EXPECT_GT(diff, 1e-3 * max_abs(lt));
    nf4.zero_grad();
    twin.zero_grad();
    EXPECT_NEAR(nf4.forward_backward(b, *be), twin.forward_backward(b, *be), 1e-5);
    const auto gq = grads_of(nf4), gt = grads_of(twin);
    for (size_t i = 0; i < gq.size(); ++i) expect_close(gq[i], gt[i], 1e-4, "nf4 grad");
  }
  EXPECT_THROW(nf4.enable_full_training(), Error);
  LlamaModel q = base;
  q.convert_base(DType::BF16);
  EXPECT_THROW(q.enable_full_training(), Error);
}

}  // namespace
}  // namespace pricer
