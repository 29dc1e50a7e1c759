// `pricer info`: run the CLI on generated models and check what it reports.
#include <gtest/gtest.h>

#include <fstream>

#include "cli_test_util.h"
#include "test_io_util.h"

namespace pricer {
namespace {

using namespace test_io;
using cli_test::CliRun;
using cli_test::run_cli;

TEST(InfoCommand, ReportsArchitectureParametersAndMemory) {
  auto c = tiny_config();
  c.qkv_bias = true;
  const auto tensors = random_model(c, 31, DType::BF16);
  const auto dir = temp_dir("info");
  const std::string path = (dir / "m.gguf").string();
  save_gguf(path, c, tensors);

  const CliRun text = run_cli("info --tensors " + path);
  ASSERT_EQ(text.rc, 0) << text.out;
  EXPECT_NE(text.out.find("architecture llama, q/k/v bias"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("parameters   " + std::to_string(c.n_params())), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("model.layers.1.mlp.down_proj.weight"), std::string::npos);
  EXPECT_NE(text.out.find("4 heads, 2 kv heads, head dim 4"), std::string::npos) << text.out;

  const CliRun js = run_cli("info --json " + path);
  ASSERT_EQ(js.rc, 0) << js.out;
  const auto j = nlohmann::json::parse(js.out);
  EXPECT_EQ(j["format"], "gguf");
  EXPECT_EQ(j["parameters"], c.n_params());
  EXPECT_EQ(j["config"]["num_key_value_heads"], 2);
  EXPECT_EQ(j["tensors"].size(), tensors.size());
  EXPECT_EQ(j["tensors"]["model.layers.0.self_attn.q_proj.weight"]["dtype"], "bf16");
  EXPECT_EQ(j["tensors"]["model.layers.0.self_attn.k_proj.weight"]["shape"], nlohmann::json({8, 16}));
  // Memory: everything but the projections is the same in all three; projections at 4, 2 and
  // about half a byte per weight.
  int64_t proj = 0, other = 0;
  for (const auto& [name, w] : tensors) {
    if (name.ends_with("_proj.weight")) proj += w.numel();
    else other += w.numel() * 4;  // norms, biases and (f32) embeddings
  }
  const auto mem = j["memory_bytes"];
  EXPECT_EQ(mem["f32"], other + 4 * proj);
  EXPECT_EQ(mem["bf16"], other + 2 * proj);
  EXPECT_GT(mem["nf4"].get<int64_t>(), other + proj / 2);
  EXPECT_LT(mem["nf4"].get<int64_t>(), other + proj / 2 + proj / 32);
}

TEST(InfoCommand, HuggingFaceDirectoryAndLlama2cCheckpoint) {
  const auto c = tiny_config();
  const auto tensors = random_model(c, 32);
  const auto dir = temp_dir("info_formats");
  save_hf_dir((dir / "hf").string(), c, tensors);
  const CliRun hf = run_cli("info --json " + (dir / "hf").string());
  ASSERT_EQ(hf.rc, 0) << hf.out;
  const auto j = nlohmann::json::parse(hf.out);
  EXPECT_EQ(j["format"], "hf");
  EXPECT_EQ(j["parameters"], c.n_params());
  EXPECT_EQ(j["tensors"]["model.layers.1.mlp.up_proj.weight"]["shape"], nlohmann::json({c.ffn_dim, c.dim}));

  // The committed llama2.c checkpoint (tools/golden/make_io_fixtures.py): one layer, one kv head.
  const std::string bin = std::string(PRICER_SOURCE_DIR) + "/tests/data/io/meta_style.bin";
  const CliRun text = run_cli("info " + bin);
  ASSERT_EQ(text.rc, 0) << text.out;
  EXPECT_NE(text.out.find("(llama2c)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(", 1 kv heads,"), std::string::npos) << text.out;
  const CliRun js = run_cli("info --json " + bin);
  ASSERT_EQ(js.rc, 0) << js.out;
  const auto b = nlohmann::json::parse(js.out);
  EXPECT_EQ(b["format"], "llama2c");
  int64_t params = 0;
  for (const auto& [name, t] : b["tensors"].items())
    params += t["shape"][0].get<int64_t>() * t["shape"][1].get<int64_t>();
  EXPECT_EQ(b["parameters"], params);
  EXPECT_EQ(b["config"]["num_hidden_layers"], 1);
}

TEST(InfoCommand, CorruptFileIsACleanError) {
  const auto dir = temp_dir("bad");
  const std::string path = (dir / "broken.gguf").string();
  std::ofstream(path, std::ios::binary) << "GGUF\x03";
  const CliRun r = run_cli("info " + path);
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("pricer: error: " + path), std::string::npos) << r.out;
}

}  // namespace
}  // namespace pricer
