// Committed files written by an independent implementation (tools/golden/make_io_fixtures.py,
// numpy): a GGUF laid out as llama.cpp's converter does (its own q/k permutation), a llama2.c
// checkpoint in Meta row order, and a Qwen2 Hugging Face directory. Each must load to exactly
// the Hugging Face-layout values the script started from.
#include <gtest/gtest.h>

#include <cmath>

#include "test_io_util.h"

namespace pricer {
namespace {

using namespace test_io;

const std::string kData = std::string(PRICER_SOURCE_DIR) + "/tests/data/io/";

// The script's tensor order (its hf_tensors()): the index i in value().
std::vector<std::string> hf_order(bool qkv_bias, bool tied) {
  std::vector<std::string> n = {"model.embed_tokens.weight"};
  const std::string p = "model.layers.0.";
  for (const char* s : {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                        "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                        "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"}) {
    n.push_back(p + s);
  }
  if (qkv_bias) {
    for (const char* s : {"self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"})
      n.push_back(p + s);
  }
  n.push_back("model.norm.weight");
  if (!tied) n.push_back("lm_head.weight");
  return n;
}

void expect_script_values(const ModelFile& m, bool qkv_bias, bool tied) {
  const auto order = hf_order(qkv_bias, tied);
  ASSERT_EQ(m.tensors.size(), order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    const Weight& w = m.tensors.at(order[i]);
    const auto v = w.to_f32();
    const float sign = i % 2 == 0 ? 1.0f : -1.0f;
    for (size_t k = 0; k < v.size(); ++k) {
      const float want = static_cast<float>(k + 1) * sign * std::ldexp(1.0f, -static_cast<int>(i % 8));
      ASSERT_EQ(v[k], want) << order[i] << " element " << k << " (row " << k / w.cols() << ")";
    }
  }
}

TEST(IoFixtures, LlamaCppStyleGguf) {
  const ModelFile m = load_model_file(kData + "llamacpp_style.gguf");
  const ModelConfig& c = m.config;
  EXPECT_EQ(c.vocab_size, 8);
  EXPECT_EQ(c.dim, 8);
  EXPECT_EQ(c.n_heads, 2);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.ffn_dim, 12);
  EXPECT_EQ(c.max_seq_len, 32);
  EXPECT_EQ(m.tensors.at("model.layers.0.self_attn.q_proj.weight").dtype(), DType::F16);
  EXPECT_EQ(m.tensors.at("model.layers.0.mlp.down_proj.weight").dtype(), DType::F32);
  expect_script_values(m, false, false);
}

TEST(IoFixtures, MetaOrderLlama2c) {
  const ModelFile m = load_model_file(kData + "meta_style.bin");
  EXPECT_FALSE(m.config.tied_embeddings);
  EXPECT_EQ(m.config.n_kv_heads, 1);
  expect_script_values(m, false, false);
}

TEST(IoFixtures, Qwen2Directory) {
  const ModelFile m = load_model_file(kData + "hf_qwen2");
  EXPECT_EQ(m.config.architecture, "qwen2");
  EXPECT_TRUE(m.config.qkv_bias);
  EXPECT_TRUE(m.config.tied_embeddings);
  EXPECT_EQ(m.config.eos_id, 2);
  EXPECT_FLOAT_EQ(m.config.rope_theta, 1e6f);
  EXPECT_EQ(m.tensors.at("model.layers.0.self_attn.q_proj.weight").dtype(), DType::BF16);
  EXPECT_EQ(m.tensors.at("model.layers.0.self_attn.k_proj.weight").dtype(), DType::F16);
  EXPECT_EQ(m.tensors.at("model.layers.0.self_attn.q_proj.bias").dtype(), DType::F32);
  expect_script_values(m, true, true);
}

// The three sources describe the same network: exported to GGUF and back, the Llama ones agree.
TEST(IoFixtures, FormatsAgreeThroughExport) {
  const ModelFile g = load_model_file(kData + "llamacpp_style.gguf");
  const ModelFile b = load_model_file(kData + "meta_style.bin");
  for (const auto& [name, w] : g.tensors) EXPECT_EQ(w.to_f32(), b.tensors.at(name).to_f32()) << name;
  const auto dir = temp_dir("export");
  save_gguf((dir / "g.gguf").string(), g.config, g.tensors);
  expect_script_values(load_model_file((dir / "g.gguf").string()), false, false);
  save_hf_dir((dir / "hf").string(), b.config, b.tensors);
  expect_script_values(load_model_file((dir / "hf").string()), false, false);
}

}  // namespace
}  // namespace pricer
