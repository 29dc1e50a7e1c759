// safetensors files and Hugging Face model directories: round trips (single file, sharded,
// tied, Qwen2 biases, Llama 3 rope_scaling), config.json parsing, and corrupt headers.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "io/bytes.h"
#include "io/json_util.h"
#include "io/safetensors.h"
#include "test_io_util.h"

namespace pricer {
namespace {

using namespace test_io;
using nlohmann::json;

std::vector<uint8_t> floats(std::initializer_list<float> v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), std::data(v), b.size());
  return b;
}

TEST(Safetensors, WriterReaderRoundTrip) {
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.add("a", "F32", {2, 2}, floats({1, 2, 3, 4}));
  w.add("b", "BF16", {3}, std::vector<uint8_t>{1, 2, 3, 4, 5, 6});
  w.add("c", "I64", {}, std::vector<uint8_t>(8, 7));
  const auto bytes = w.to_bytes();
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);  // data buffer 8-byte aligned
  const auto f = SafetensorsFile::parse(bytes, "rt.safetensors");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  ASSERT_EQ(f.tensors().size(), 3u);
  const auto* a = f.find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, "F32");
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 2}));
  float x[4];
  std::memcpy(x, f.data(*a).data(), 16);
  EXPECT_EQ(x[3], 4.0f);
  EXPECT_EQ(f.data(*f.find("b"))[5], 6);
  EXPECT_EQ(f.find("c")->numel(), 1);
  EXPECT_EQ(f.data(*f.find("c")).size(), 8u);
}

// A safetensors file with a hand-written header (and `data` bytes of buffer).
std::vector<uint8_t> raw_file(const std::string& header, size_t data, int64_t claimed_len = -1) {
  ByteWriter w;
  w.put(static_cast<uint64_t>(claimed_len >= 0 ? static_cast<uint64_t>(claimed_len) : header.size()));
  w.put_bytes(header.data(), header.size());
  w.out.resize(w.out.size() + data, 0);
  return w.out;
}

void expect_bad(const std::vector<uint8_t>& b, const std::string& needle) {
  expect_error([&] { SafetensorsFile::parse(b, "bad.safetensors"); }, "bad.safetensors", needle);
}

TEST(Safetensors, CorruptHeaders) {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_EQ(SafetensorsFile::parse(raw_file(ok, 8), "ok").tensors().size(), 1u);  // control
  expect_bad({1, 2, 3}, "truncated");
  expect_bad(raw_file(ok, 8, 1 << 20), "header length");
  expect_bad(raw_file(ok, 8, int64_t{1} << 40), "100 MB");
  expect_bad(raw_file("{\"a\":", 0), "invalid JSON");
  expect_bad(raw_file("[1,2]", 0), "expected a JSON object");
  expect_bad(raw_file(ok, 4), "outside the data buffer");
  expect_bad(raw_file(ok, 12), "cover 8");
  expect_bad(raw_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "need 12 bytes");
  expect_bad(raw_file(R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8), "unknown dtype 'Q4'");
  expect_bad(raw_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "non-negative");
  expect_bad(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "begin 8 > end 0");
  expect_bad(raw_file(R"({"a":{"dtype":"F32","shape":[2]}})", 8), "data_offsets");
  expect_bad(raw_file(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8), "'dtype'");
  expect_bad(raw_file(R"({"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", 8), "absurd");
  expect_bad(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                      16),
             "duplicate JSON key 'a'");
  expect_bad(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                      12),
             "overlaps");
  expect_bad(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                      R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                      12),
             "leaves a gap");
  expect_bad(raw_file(R"({"__metadata__":{"k":1}})", 0), "__metadata__");
  expect_bad(raw_file(std::string(200, '[') + std::string(200, ']'), 0), "nested deeper");
  expect_bad(raw_file("{\"a\xff\":1}", 0), "invalid JSON");
}

TEST(Safetensors, EveryTruncationFailsCleanly) {
  SafetensorsWriter w;
  w.add("x", "F16", {3, 5}, std::vector<uint8_t>(30, 1));
  w.add("y", "F32", {2}, floats({1, 2}));
  const auto bytes = w.to_bytes();
  for (size_t len = 0; len < bytes.size(); ++len) {
    const std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len));
    expect_error([&] { SafetensorsFile::parse(prefix, "cut.safetensors"); }, "cut.safetensors");
  }
  // Flipped header bytes: an Error or (when a digit or letter changes harmlessly) a valid parse.
  for (size_t i = 0; i < bytes.size() - 38; ++i) {
    auto m = bytes;
    m[i] ^= 0x04;
    ok_or_error([&] { SafetensorsFile::parse(m, "flip.safetensors"); }, "flip.safetensors");
  }
}

// ---------------------------------------------------------------- config.json

TEST(HfConfig, ParsesLlamaAndQwenFields) {
  const json llama = {{"model_type", "llama"},
                      {"vocab_size", 128256},
                      {"hidden_size", 2048},
                      {"intermediate_size", 8192},
                      {"num_hidden_layers", 16},
                      {"num_attention_heads", 32},
                      {"num_key_value_heads", 8},
                      {"head_dim", 64},
                      {"max_position_embeddings", 131072},
                      {"rms_norm_eps", 1e-5},
                      {"rope_theta", 500000.0},
                      {"tie_word_embeddings", true},
                      {"bos_token_id", 128000},
                      {"eos_token_id", {128001, 128008, 128009}},
                      {"rope_scaling",
                       {{"factor", 32.0},
                        {"high_freq_factor", 4.0},
                        {"low_freq_factor", 1.0},
                        {"original_max_position_embeddings", 8192},
                        {"rope_type", "llama3"}}}};
  const ModelConfig c = hf_config_from_json(llama, "config.json");
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.eos_id, 128001);
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 32.0f);
  EXPECT_EQ(c.rope_scaling.original_max_position, 8192);
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
  EXPECT_NO_THROW(c.validate("config.json"));
  expect_same_config(c, hf_config_from_json(hf_config_to_json(c), "again"));

  json qwen = {{"model_type", "qwen2"},       {"vocab_size", 151936},    {"hidden_size", 896},
               {"intermediate_size", 4864},   {"num_hidden_layers", 24}, {"num_attention_heads", 14},
               {"num_key_value_heads", 2},    {"rope_scaling", nullptr}, {"head_dim", nullptr},
               {"tie_word_embeddings", true}, {"rms_norm_eps", 1e-6},    {"rope_theta", 1000000.0}};
  const ModelConfig q = hf_config_from_json(qwen, "qwen/config.json");
  EXPECT_EQ(q.architecture, "qwen2");
  EXPECT_TRUE(q.qkv_bias);
  EXPECT_EQ(q.head_dim, 64);
  EXPECT_EQ(q.bos_id, -1);
  EXPECT_EQ(q.rope_scaling.factor, 1.0f);
  expect_same_config(q, hf_config_from_json(hf_config_to_json(q), "again"));

  auto bad = [&](json j, const std::string& needle) {
    expect_error([&] { hf_config_from_json(j, "cfg.json"); }, "cfg.json", needle);
  };
  json j = llama;
  j["model_type"] = "gpt2";
  bad(j, "'gpt2' is not supported");
  j = llama;
  j["hidden_size"] = "2048";
  bad(j, "key 'hidden_size': expected an integer");
  j = llama;
  j.erase("num_hidden_layers");
  bad(j, "key 'num_hidden_layers': missing");
  j = llama;
  j["rope_scaling"]["rope_type"] = "yarn";
  bad(j, "'yarn' is not supported");
  j = llama;
  j["hidden_act"] = "gelu";
  bad(j, "gelu");
  j = llama;
  j["tie_word_embeddings"] = 1;
  bad(j, "expected true or false");
  j = llama;
  j["eos_token_id"] = -5;
  bad(j, "token id");
}

// ---------------------------------------------------------------- Hugging Face directories

TEST(HfDir, RoundTripKeepsFormatsAndValues) {
  for (const char* arch : {"llama", "qwen2"}) {
    auto c = tiny_config(arch);
    c.tied_embeddings = std::string(arch) == "qwen2";
    const auto tensors = random_model(c, 21, DType::BF16, DType::F16);
    const auto dir = temp_dir(arch);
    save_hf_dir(dir.string(), c, tensors);
    EXPECT_TRUE(std::filesystem::exists(dir / "config.json"));
    const ModelFile m = load_model_file(dir.string());
    EXPECT_EQ(m.format, "hf");
    expect_same_config(c, m.config);
    expect_same_tensors(tensors, m.tensors);
    EXPECT_EQ(m.metadata["model_type"], arch);
    EXPECT_EQ(m.metadata["__metadata__"]["format"], "pt");
    // The lone file works too, with config.json beside it.
    const ModelFile single = load_model_file((dir / "model.safetensors").string());
    EXPECT_EQ(single.format, "safetensors");
    expect_same_tensors(tensors, single.tensors);
  }
}

TEST(HfDir, QuantizedWeightsAreWrittenDequantized) {
  const auto c = tiny_config();
  const auto tensors = random_model(c, 22, DType::NF4);
  const auto dir = temp_dir("nf4");
  save_hf_dir(dir.string(), c, tensors, DType::F32);
  const ModelFile m = load_model_file(dir.string());
  const auto& w = m.tensors.at("model.layers.1.mlp.gate_proj.weight");
  EXPECT_EQ(w.dtype(), DType::F32);
  EXPECT_EQ(w.to_f32(), tensors.at("model.layers.1.mlp.gate_proj.weight").to_f32());
  // And come back as NF4 when asked for an NF4 base: quantized again, so close to the values
  // (double quantization of the block scales is not idempotent).
  const ModelFile q = load_model_file(dir.string(), DType::NF4);
  EXPECT_EQ(q.tensors.at("model.layers.1.mlp.gate_proj.weight").dtype(), DType::NF4);
  expect_close(q.tensors.at("model.layers.1.mlp.gate_proj.weight").to_f32(), w.to_f32(), 0.01f);
  EXPECT_EQ(q.tensors.at("model.embed_tokens.weight").dtype(), DType::F32);
}

void write_json(const std::filesystem::path& p, const json& j) { std::ofstream(p) << j.dump(); }

TEST(HfDir, ShardedCheckpoints) {
  const auto c = tiny_config();
  const auto tensors = random_model(c, 23);
  const auto dir = temp_dir("sharded");
  write_json(dir / "config.json", hf_config_to_json(c));
  SafetensorsWriter s1, s2;
  json map = json::object();
  int i = 0;
  for (const auto& [name, w] : tensors) {
    const bool first = i++ % 2 == 0;
    const auto& f = w.f32();
    std::vector<uint8_t> b(f.size() * 4);
    std::memcpy(b.data(), f.data(), b.size());
    const std::vector<int64_t> shape =
        w.rows() == 1 ? std::vector<int64_t>{w.cols()} : std::vector<int64_t>{w.rows(), w.cols()};
    (first ? s1 : s2).add(name, "F32", shape, b);
    map[name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  // Older checkpoints carry RoPE buffers; they are skipped.
  s2.add("model.layers.0.self_attn.rotary_emb.inv_freq", "F32", {2}, floats({1, 0.5f}));
  map["model.layers.0.self_attn.rotary_emb.inv_freq"] = "model-00002-of-00002.safetensors";
  s1.write((dir / "model-00001-of-00002.safetensors").string());
  s2.write((dir / "model-00002-of-00002.safetensors").string());
  write_json(dir / "model.safetensors.index.json", {{"metadata", {{"total_size", 1}}}, {"weight_map", map}});
  const ModelFile m = load_model_file(dir.string());
  expect_same_tensors(tensors, m.tensors);

  auto index_with = [&](const std::string& tensor, const std::string& file) {
    json m2 = map;
    m2[tensor] = file;
    write_json(dir / "model.safetensors.index.json", {{"weight_map", m2}});
  };
  index_with("model.norm.weight", "../model-00001-of-00002.safetensors");
  expect_error([&] { load_model_file(dir.string()); }, "model.safetensors.index.json", "not a plain file name");
  const std::string other = map["model.norm.weight"] == "model-00001-of-00002.safetensors"
                                ? "model-00002-of-00002.safetensors"
                                : "model-00001-of-00002.safetensors";
  index_with("model.norm.weight", other);
  expect_error([&] { load_model_file(dir.string()); }, "model.norm.weight", "does not hold it");
  index_with("model.norm.weight", "missing.safetensors");
  expect_error([&] { load_model_file(dir.string()); }, "missing.safetensors", "cannot open");
  json m3 = map;
  m3.erase("lm_head.weight");
  write_json(dir / "model.safetensors.index.json", {{"weight_map", m3}});
  expect_error([&] { load_model_file(dir.string()); }, dir.string(), "'lm_head.weight' is missing");
}

TEST(HfDir, ContradictionsAreNamed) {
  const auto c = tiny_config();
  const auto dir = temp_dir("contra");
  save_hf_dir(dir.string(), c, random_model(c, 24));
  // The config says 3 layers but the weights hold 2.
  json j = hf_config_to_json(c);
  j["num_hidden_layers"] = 3;
  write_json(dir / "config.json", j);
  expect_error([&] { load_model_file(dir.string()); }, dir.string(), "model.layers.2");
  j = hf_config_to_json(c);
  j["intermediate_size"] = 32;
  write_json(dir / "config.json", j);
  expect_error([&] { load_model_file(dir.string()); }, "model.safetensors", "contradicts the configuration");
  j = hf_config_to_json(c);
  j["num_hidden_layers"] = 1;
  write_json(dir / "config.json", j);
  expect_error([&] { load_model_file(dir.string()); }, "model.layers.1", "unexpected tensor");
  std::ofstream(dir / "config.json") << "{\"model_type\": \"llama\", \"model_type\": \"llama\"}";
  expect_error([&] { load_model_file(dir.string()); }, "config.json", "duplicate JSON key");
  std::filesystem::remove(dir / "model.safetensors");
  write_json(dir / "config.json", hf_config_to_json(c));
  expect_error([&] { load_model_file(dir.string()); }, dir.string(), "no model.safetensors");
  const auto lone = temp_dir("lone");
  std::ofstream(lone / "w.safetensors") << "x";
  expect_error([&] { load_model_file((lone / "w.safetensors").string()); }, "w.safetensors", "config.json beside it");
}

}  // namespace
}  // namespace pricer
