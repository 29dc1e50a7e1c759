// What save_gguf writes, held against the GGUF specification and llama.cpp's loader: the header,
// every key llama.cpp reads for a llama model with the exact value type it insists on (its
// loader throws "key ... has wrong type" on any other), llama.cpp's tensor names with ggml's
// innermost-first shapes, and aligned tensor data. The tables here are written from the spec and
// llama.cpp's LLM_KV_NAMES / LLM_TENSOR_NAMES, not from the writer.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "io/gguf.h"
#include "test_io_util.h"

namespace pricer {
namespace {

using namespace test_io;

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

GgufFile export_and_open(const ModelConfig& c, const std::map<std::string, Weight>& t, const std::string& name,
                         const GgufExportOptions& opt = {}) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("pricer_gguf_spec_" + name + "_" + std::to_string(::getpid()) + ".gguf"))
                               .string();
  save_gguf(path, c, t, opt);
  // The file's first bytes: magic "GGUF", version 3, then the tensor and key counts (u64).
  const auto raw = file_bytes(path);
  EXPECT_GE(raw.size(), 24u);
  EXPECT_EQ(std::memcmp(raw.data(), "GGUF", 4), 0);
  uint32_t version = 0;
  std::memcpy(&version, raw.data() + 4, 4);
  EXPECT_EQ(version, 3u);
  GgufFile f = GgufFile::parse(raw, path);
  uint64_t n_tensors = 0, n_kv = 0;
  std::memcpy(&n_tensors, raw.data() + 8, 8);
  std::memcpy(&n_kv, raw.data() + 16, 8);
  EXPECT_EQ(n_tensors, f.tensors().size());
  EXPECT_EQ(n_kv, f.metadata().size());
  std::filesystem::remove(path);
  return f;
}

void expect_key(const GgufFile& f, const std::string& key, GgufType type) {
  const GgufValue* v = f.find(key);
  ASSERT_NE(v, nullptr) << "missing key " << key;
  EXPECT_EQ(v->type, type) << key << " is " << gguf_type_name(v->type) << ", llama.cpp expects "
                           << gguf_type_name(type);
}

TEST(GgufSpec, LlamaKeysAndTypesAsLlamaCppReadsThem) {
  ModelConfig c = tiny_config();
  c.tied_embeddings = false;
  const GgufFile f = export_and_open(c, random_model(c, 3), "llama");
  expect_key(f, "general.architecture", GgufType::String);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  expect_key(f, "general.name", GgufType::String);
  const std::map<std::string, int64_t> u32_keys = {
      {"llama.context_length", c.max_seq_len},    {"llama.embedding_length", c.dim},
      {"llama.block_count", c.n_layers},          {"llama.feed_forward_length", c.ffn_dim},
      {"llama.attention.head_count", c.n_heads},  {"llama.attention.head_count_kv", c.n_kv_heads},
      {"llama.rope.dimension_count", c.head_dim}, {"llama.vocab_size", c.vocab_size},
      {"tokenizer.ggml.bos_token_id", c.bos_id},  {"tokenizer.ggml.eos_token_id", c.eos_id}};
  for (const auto& [key, want] : u32_keys) {
    expect_key(f, key, GgufType::U32);
    EXPECT_EQ(f.get_int(key), want) << key;
  }
  expect_key(f, "llama.attention.layer_norm_rms_epsilon", GgufType::F32);
  EXPECT_FLOAT_EQ(static_cast<float>(f.get_float("llama.attention.layer_norm_rms_epsilon")), c.rms_eps);
  expect_key(f, "llama.rope.freq_base", GgufType::F32);
  EXPECT_FLOAT_EQ(static_cast<float>(f.get_float("llama.rope.freq_base")), c.rope_theta);
  // Default alignment: general.alignment is absent (the spec's default is 32).
  EXPECT_FALSE(f.has("general.alignment"));
  EXPECT_EQ(f.alignment(), 32u);
}

TEST(GgufSpec, TensorNamesShapesAndAlignment) {
  for (bool tied : {false, true}) {
    ModelConfig c = tiny_config();
    c.tied_embeddings = tied;
    const GgufFile f = export_and_open(c, random_model(c, 4), tied ? "tied" : "untied");
    // name -> ne (innermost first: a [out, in] matrix is {in, out}; vectors are 1-D).
    const int64_t q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
    std::map<std::string, std::vector<int64_t>> want = {{"token_embd.weight", {c.dim, c.vocab_size}},
                                                        {"output_norm.weight", {c.dim}}};
    if (!tied) want["output.weight"] = {c.dim, c.vocab_size};
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      want[b + "attn_norm.weight"] = {c.dim};
      want[b + "attn_q.weight"] = {c.dim, q};
      want[b + "attn_k.weight"] = {c.dim, kv};
      want[b + "attn_v.weight"] = {c.dim, kv};
      want[b + "attn_output.weight"] = {q, c.dim};
      want[b + "ffn_norm.weight"] = {c.dim};
      want[b + "ffn_gate.weight"] = {c.dim, c.ffn_dim};
      want[b + "ffn_up.weight"] = {c.dim, c.ffn_dim};
      want[b + "ffn_down.weight"] = {c.ffn_dim, c.dim};
    }
    std::set<std::string> seen;
    EXPECT_EQ(f.data_start() % 32, 0u);
    for (const GgufTensorInfo& t : f.tensors()) {
      EXPECT_TRUE(seen.insert(t.name).second) << "duplicate " << t.name;
      ASSERT_TRUE(want.count(t.name)) << "unexpected tensor " << t.name;
      EXPECT_EQ(t.ne, want[t.name]) << t.name;
      EXPECT_EQ(t.type, GgmlType::F32) << t.name;
      EXPECT_EQ(t.offset % 32, 0u) << t.name << " data not aligned";
      EXPECT_EQ(t.nbytes, static_cast<uint64_t>(t.numel()) * 4) << t.name;
    }
    EXPECT_EQ(seen.size(), want.size());
  }
}

TEST(GgufSpec, QuantizedTensorsCarryTheQuantizationVersionAndCustomAlignmentIsDeclared) {
  ModelConfig c = tiny_config();
  c.dim = 32;
  c.head_dim = 8;
  c.ffn_dim = 64;
  GgufExportOptions opt;
  opt.alignment = 64;
  const GgufFile f = export_and_open(c, random_model(c, 5, DType::Q8_0), "q8", opt);
  expect_key(f, "general.quantization_version", GgufType::U32);
  EXPECT_EQ(f.get_int("general.quantization_version"), 2);
  expect_key(f, "general.alignment", GgufType::U32);
  EXPECT_EQ(f.get_int("general.alignment"), 64);
  EXPECT_EQ(f.data_start() % 64, 0u);
  for (const GgufTensorInfo& t : f.tensors()) {
    EXPECT_EQ(t.offset % 64, 0u) << t.name;
    if (t.name.find("attn_q") != std::string::npos) {
      EXPECT_EQ(t.type, GgmlType::Q8_0);
      EXPECT_EQ(t.nbytes, static_cast<uint64_t>(t.numel() / 32 * 34));  // ggml's block_q8_0: f16 scale + 32 int8
    }
  }
}

}  // namespace
}  // namespace pricer
