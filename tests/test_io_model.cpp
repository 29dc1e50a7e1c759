// Model-level GGUF: export -> load round trips (Llama with q/k permutation, Qwen2 with biases,
// Llama 3 RoPE scaling, quantized and NF4 weights), the RoPE-order semantics, and tensor sets
// that contradict the configuration.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "io/gguf.h"
#include "quant/half.h"
#include "test_io_util.h"

namespace pricer {
namespace {

using namespace test_io;

TEST(GgufModel, LlamaRoundTripIsExact) {
  const auto c = tiny_config();
  const auto tensors = random_model(c, 1);
  const auto dir = temp_dir("rt");
  const std::string path = (dir / "m.gguf").string();
  save_gguf(path, c, tensors);
  const ModelFile m = load_model_file(path);
  EXPECT_EQ(m.format, "gguf");
  EXPECT_EQ(m.source, path);
  expect_same_config(c, m.config);
  expect_same_tensors(tensors, m.tensors);
  EXPECT_EQ(m.metadata["general.architecture"], "llama");
  EXPECT_EQ(m.metadata["llama.block_count"], 2);
}

TEST(GgufModel, MixedStorageFormatsRoundTrip) {
  auto c = tiny_config();
  c.tied_embeddings = true;
  const auto tensors = random_model(c, 2, DType::BF16, DType::F16);
  const auto dir = temp_dir("mixed");
  const std::string path = (dir / "m.gguf").string();
  save_gguf(path, c, tensors);
  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.find_tensor("output.weight"), nullptr);  // tied: no head tensor
  EXPECT_EQ(f.find_tensor("blk.1.ffn_up.weight")->type, GgmlType::BF16);
  EXPECT_EQ(f.find_tensor("token_embd.weight")->type, GgmlType::F16);
  EXPECT_EQ(f.find_tensor("blk.0.attn_norm.weight")->type, GgmlType::F32);
  EXPECT_EQ(f.find_tensor("blk.0.attn_q.weight")->ne, (std::vector<int64_t>{16, 16}));  // innermost first
  EXPECT_EQ(f.find_tensor("blk.0.ffn_down.weight")->ne, (std::vector<int64_t>{24, 16}));
  const ModelFile m = load_gguf_model(f);
  expect_same_config(c, m.config);
  expect_same_tensors(tensors, m.tensors);
}

TEST(GgufModel, BlockQuantizedRoundTrip) {
  auto c = tiny_config();
  c.dim = 32;
  c.ffn_dim = 64;
  c.head_dim = 8;  // rows of 32 and 64 elements: whole ggml blocks
  for (DType q : {DType::Q8_0, DType::Q4_0}) {
    const auto tensors = random_model(c, 13, q, DType::Q8_0);
    const auto dir = temp_dir(std::string(dtype_name(q)));
    const std::string path = (dir / "m.gguf").string();
    save_gguf(path, c, tensors);
    const GgufFile f = GgufFile::open(path);
    EXPECT_EQ(f.get_int("general.quantization_version"), 2);
    EXPECT_EQ(f.find_tensor("blk.0.attn_k.weight")->type, dtype_to_ggml(q));
    // q/k rows are permuted as whole rows of blocks; the round trip restores them exactly.
    const ModelFile m = load_gguf_model(f);
    expect_same_config(c, m.config);
    expect_same_tensors(tensors, m.tensors);
  }
}

TEST(GgufModel, Qwen2KeepsRowOrderAndBiases) {
  const auto c = tiny_config("qwen2");
  const auto tensors = random_model(c, 3);
  const auto dir = temp_dir("qwen");
  const std::string path = (dir / "m.gguf").string();
  save_gguf(path, c, tensors);
  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.get_string("general.architecture"), "qwen2");
  EXPECT_EQ(f.get_int("qwen2.attention.head_count_kv"), 2);
  // qwen2 uses rotate-half RoPE in llama.cpp too, so q is stored exactly as in HF.
  const auto raw = f.tensor_data(*f.find_tensor("blk.0.attn_q.weight"));
  const auto& q = tensors.at("model.layers.0.self_attn.q_proj.weight").f32();
  EXPECT_EQ(0, std::memcmp(raw.data(), q.data(), raw.size()));
  EXPECT_EQ(f.find_tensor("blk.1.attn_k.bias")->ne, (std::vector<int64_t>{8}));
  const ModelFile m = load_gguf_model(f);
  expect_same_config(c, m.config);
  expect_same_tensors(tensors, m.tensors);
}

TEST(GgufModel, LlamaBiasesArePermutedWithTheirRows) {
  auto c = tiny_config();
  c.qkv_bias = true;
  const auto tensors = random_model(c, 4);
  const auto dir = temp_dir("bias");
  const std::string path = (dir / "m.gguf").string();
  save_gguf(path, c, tensors);
  const GgufFile f = GgufFile::open(path);
  const auto raw = f.tensor_data(*f.find_tensor("blk.0.attn_k.bias"));
  const auto& k = tensors.at("model.layers.0.self_attn.k_proj.bias").f32();
  float file_row3;  // head 0, pair j=1, element i=1 -> HF row 0*4 + 1*2 + 1 = 3; file row 2*1+1 = 3
  std::memcpy(&file_row3, raw.data() + 3 * 4, 4);
  EXPECT_EQ(file_row3, k[3]);
  float file_row1;  // file row 1 = pair 0, element 1 -> HF row 2
  std::memcpy(&file_row1, raw.data() + 1 * 4, 4);
  EXPECT_EQ(file_row1, k[2]);
  expect_same_tensors(tensors, load_gguf_model(f).tensors);
}

// RoPE on one head vector, the two conventions.
void rope_interleaved(float* x, int hd, int pos, float theta) {
  for (int j = 0; j < hd / 2; ++j) {
    const double a = pos * std::pow(theta, -2.0 * j / hd);
    const float x0 = x[2 * j], x1 = x[2 * j + 1];
    x[2 * j] = static_cast<float>(x0 * std::cos(a) - x1 * std::sin(a));
    x[2 * j + 1] = static_cast<float>(x0 * std::sin(a) + x1 * std::cos(a));
  }
}
void rope_rotate_half(float* x, int hd, int pos, float theta) {
  for (int j = 0; j < hd / 2; ++j) {
    const double a = pos * std::pow(theta, -2.0 * j / hd);
    const float x0 = x[j], x1 = x[j + hd / 2];
    x[j] = static_cast<float>(x0 * std::cos(a) - x1 * std::sin(a));
    x[j + hd / 2] = static_cast<float>(x0 * std::sin(a) + x1 * std::cos(a));
  }
}

std::vector<float> matvec(const std::vector<float>& w, int64_t rows, int64_t cols, const std::vector<float>& x) {
  std::vector<float> y(static_cast<size_t>(rows), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < cols; ++k) y[r] += w[r * cols + k] * x[k];
  }
  return y;
}

// What llama.cpp computes from the exported file (interleaved RoPE on its q/k rows) gives the
// same attention scores as the Hugging Face model computes with rotate-half RoPE.
TEST(GgufModel, ExportedRowOrderGivesTheSameAttentionScores) {
  const auto c = tiny_config();
  const auto tensors = random_model(c, 5);
  const auto dir = temp_dir("rope");
  const std::string path = (dir / "m.gguf").string();
  save_gguf(path, c, tensors);
  const GgufFile f = GgufFile::open(path);
  auto file_f32 = [&](const char* name) {
    const auto d = f.tensor_data(*f.find_tensor(name));
    std::vector<float> v(d.size() / 4);
    std::memcpy(v.data(), d.data(), d.size());
    return v;
  };
  const auto wq_file = file_f32("blk.1.attn_q.weight"), wk_file = file_f32("blk.1.attn_k.weight");
  const auto& wq_hf = tensors.at("model.layers.1.self_attn.q_proj.weight").f32();
  const auto& wk_hf = tensors.at("model.layers.1.self_attn.k_proj.weight").f32();
  std::mt19937 rng(9);
  const auto x1 = random_floats(16, rng), x2 = random_floats(16, rng);
  const int hd = 4, pq = 7, pk = 3;
  auto qf = matvec(wq_file, 16, 16, x1), kf = matvec(wk_file, 8, 16, x2);
  auto qh = matvec(wq_hf, 16, 16, x1), kh = matvec(wk_hf, 8, 16, x2);
  EXPECT_NE(qf, qh);  // the permutation really moved rows
  for (int h = 0; h < 4; ++h) {
    rope_interleaved(qf.data() + h * hd, hd, pq, c.rope_theta);
    rope_rotate_half(qh.data() + h * hd, hd, pq, c.rope_theta);
  }
  for (int h = 0; h < 2; ++h) {
    rope_interleaved(kf.data() + h * hd, hd, pk, c.rope_theta);
    rope_rotate_half(kh.data() + h * hd, hd, pk, c.rope_theta);
  }
  for (int h = 0; h < 4; ++h) {
    const int kvh = h / 2;
    float sf = 0, sh = 0;
    for (int d = 0; d < hd; ++d) {
      sf += qf[h * hd + d] * kf[kvh * hd + d];
      sh += qh[h * hd + d] * kh[kvh * hd + d];
    }
    EXPECT_NEAR(sf, sh, 1e-4f * (1.0f + std::fabs(sh))) << "head " << h;
  }
}

TEST(GgufModel, Llama3RopeScalingRoundTripsAndIsReadFromRopeFreqsAlone) {
  auto c = tiny_config();
  c.head_dim = 8;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.rope_theta = 500000.0f;
  c.max_seq_len = 131072;
  c.rope_scaling.factor = 8.0f;
  c.rope_scaling.low_freq_factor = 1.0f;
  c.rope_scaling.high_freq_factor = 4.0f;
  c.rope_scaling.original_max_position = 8192;
  const auto tensors = random_model(c, 6);
  const auto dir = temp_dir("llama3");
  const std::string path = (dir / "m.gguf").string();
  save_gguf(path, c, tensors);
  const GgufFile f = GgufFile::open(path);
  const auto* rf = f.find_tensor("rope_freqs.weight");
  ASSERT_NE(rf, nullptr);
  EXPECT_EQ(rf->ne, (std::vector<int64_t>{4}));
  const ModelFile m = load_gguf_model(f);
  expect_same_config(c, m.config);
  expect_same_tensors(tensors, m.tensors);

  // As llama.cpp's converter writes it: only rope_freqs.weight, no pricer.* keys.
  GgufWriter w;
  for (const auto& kv : f.metadata()) {
    if (!kv.key.starts_with("pricer.")) w.add(kv.key, kv.value);
  }
  for (const auto& t : f.tensors()) {
    const auto d = f.tensor_data(t);
    w.add_tensor(t.name, t.ne, t.type, std::vector<uint8_t>(d.begin(), d.end()));
  }
  const ModelFile m2 = load_gguf_model(GgufFile::parse(w.to_bytes(), "llamacpp.gguf"));
  expect_same_config(c, m2.config);

  // Factors that are no Llama 3 curve are refused, not guessed at.
  GgufWriter bad;
  for (const auto& kv : f.metadata()) {
    if (!kv.key.starts_with("pricer.")) bad.add(kv.key, kv.value);
  }
  for (const auto& t : f.tensors()) {
    const auto d = f.tensor_data(t);
    std::vector<uint8_t> b(d.begin(), d.end());
    if (t.name == "rope_freqs.weight") {
      const float odd[4] = {1.0f, 3.0f, 2.0f, 8.0f};
      std::memcpy(b.data(), odd, 16);
    }
    bad.add_tensor(t.name, t.ne, t.type, std::move(b));
  }
  expect_error([&] { load_gguf_model(GgufFile::parse(bad.to_bytes(), "odd.gguf")); }, "odd.gguf", "rope_freqs.weight");
}

TEST(GgufModel, Nf4IsExportedDequantized) {
  const auto c = tiny_config();
  const auto tensors = random_model(c, 8, DType::NF4);
  const auto dir = temp_dir("nf4");
  for (DType as : {DType::F16, DType::F32}) {
    const std::string path = (dir / (std::string(dtype_name(as)) + ".gguf")).string();
    GgufExportOptions opt;
    opt.nf4_as = as;
    save_gguf(path, c, tensors, opt);
    const ModelFile m = load_model_file(path);
    const Weight& w = m.tensors.at("model.layers.0.mlp.up_proj.weight");
    EXPECT_EQ(w.dtype(), as);
    const auto got = w.to_f32();
    const auto want = tensors.at("model.layers.0.mlp.up_proj.weight").to_f32();
    for (size_t i = 0; i < want.size(); ++i) {
      const float expect = as == DType::F16 ? f16_to_f32(f32_to_f16(want[i])) : want[i];
      ASSERT_EQ(got[i], expect) << i;
    }
    // Loading with an NF4 base quantizes again: close to, not identical with, the source values
    // (double quantization of the block scales is not idempotent).
    const ModelFile q = load_model_file(path, DType::NF4);
    const Weight& o = q.tensors.at("model.layers.1.self_attn.o_proj.weight");
    EXPECT_EQ(o.dtype(), DType::NF4);
    expect_close(o.to_f32(), tensors.at("model.layers.1.self_attn.o_proj.weight").to_f32(), 0.01f);
  }
}

TEST(GgufModel, ExtraKeysAreCarried) {
  const auto c = tiny_config();
  GgufExportOptions opt;
  opt.name = "tiny-test";
  std::vector<std::string> vocab;
  for (int i = 0; i < 40; ++i) vocab.push_back("tok" + std::to_string(i));
  opt.extra.push_back({"tokenizer.ggml.model", GgufValue::string("gpt2")});
  opt.extra.push_back({"tokenizer.ggml.tokens", GgufValue::string_array(vocab)});
  opt.extra.push_back({"adapter.lora.alpha", GgufValue::f32(16.0f)});
  const auto dir = temp_dir("extra");
  const std::string path = (dir / "m.gguf").string();
  save_gguf(path, c, random_model(c, 10), opt);
  const ModelFile m = load_model_file(path);
  EXPECT_EQ(m.metadata["general.name"], "tiny-test");
  EXPECT_EQ(m.metadata["adapter.lora.alpha"], 16.0);
  bool found = false;
  for (const auto& kv : m.gguf_metadata) {
    if (kv.key == "tokenizer.ggml.tokens") {
      found = true;
      EXPECT_EQ(kv.value.strings, vocab);
    }
  }
  EXPECT_TRUE(found);
}

// A GGUF with the model's keys and the given tensors, as a test would want to corrupt it.
std::vector<uint8_t> model_gguf(const ModelConfig& c, const std::map<std::string, Weight>& tensors,
                                const std::function<void(GgufWriter&, const GgufFile&)>& edit) {
  const auto dir = temp_dir("base");
  const std::string path = (dir / "base.gguf").string();
  save_gguf(path, c, tensors);
  const GgufFile f = GgufFile::open(path);
  GgufWriter w;
  edit(w, f);
  return w.to_bytes();
}

void copy_all(GgufWriter& w, const GgufFile& f, const std::string& skip_tensor = "", const std::string& skip_key = "") {
  for (const auto& kv : f.metadata()) {
    if (kv.key != skip_key) w.add(kv.key, kv.value);
  }
  for (const auto& t : f.tensors()) {
    if (t.name == skip_tensor) continue;
    const auto d = f.tensor_data(t);
    w.add_tensor(t.name, t.ne, t.type, std::vector<uint8_t>(d.begin(), d.end()));
  }
}

TEST(GgufModel, TensorsContradictingTheConfigAreRefused) {
  const auto c = tiny_config();
  const auto tensors = random_model(c, 11);
  auto load = [](const std::vector<uint8_t>& b) { load_gguf_model(GgufFile::parse(b, "x.gguf")); };

  // Missing tensor.
  load(model_gguf(c, tensors, [](GgufWriter& w, const GgufFile& f) { copy_all(w, f); }));  // control
  expect_error([&] { load(model_gguf(c, tensors, [](auto& w, auto& f) { copy_all(w, f, "blk.1.ffn_up.weight"); })); },
               "x.gguf", "model.layers.1.mlp.up_proj.weight' is missing");
  // Wrong shape: an extra row of q.
  expect_error(
      [&] {
        load(model_gguf(c, tensors, [](auto& w, auto& f) {
          copy_all(w, f, "blk.0.attn_q.weight");
          w.add_tensor("blk.0.attn_q.weight", {16, 17}, GgmlType::F32, std::vector<uint8_t>(16 * 17 * 4));
        }));
      },
      "tensor 'blk.0.attn_q.weight'", "contradicts the configuration");
  // A layer beyond block_count, and a name llama.cpp does not use.
  expect_error(
      [&] {
        load(model_gguf(c, tensors, [](auto& w, auto& f) {
          copy_all(w, f);
          w.add_tensor("blk.2.attn_norm.weight", {16}, GgmlType::F32, std::vector<uint8_t>(64));
        }));
      },
      "blk.2.attn_norm.weight", "unexpected");
  expect_error(
      [&] {
        load(model_gguf(c, tensors, [](auto& w, auto& f) {
          copy_all(w, f);
          w.add_tensor("blk.01.attn_norm.weight", {16}, GgmlType::F32, std::vector<uint8_t>(64));
        }));
      },
      "blk.01.attn_norm.weight", "not a tensor");
  // Unsupported element type and architecture; absurd config values.
  expect_error(
      [&] {
        load(model_gguf(c, tensors, [](auto& w, auto& f) {
          copy_all(w, f, "blk.0.ffn_gate.weight");
          w.add_tensor("blk.0.ffn_gate.weight", {16, 24}, static_cast<GgmlType>(26), std::vector<uint8_t>(16 * 24 * 4));
        }));
      },
      "blk.0.ffn_gate.weight", "i32 is not supported");
  expect_error(
      [&] {
        load(model_gguf(c, tensors, [](auto& w, auto& f) {
          copy_all(w, f);
          w.add("general.architecture", GgufValue::string("gpt2"));
        }));
      },
      "general.architecture", "not supported");
  expect_error(
      [&] {
        load(model_gguf(c, tensors, [](auto& w, auto& f) {
          copy_all(w, f);
          w.add("llama.attention.head_count_kv", GgufValue::u32(3));
        }));
      },
      "x.gguf", "num_key_value_heads");
  expect_error(
      [&] {
        load(model_gguf(c, tensors,
                        [](auto& w, auto& f) { copy_all(w, f, "", "llama.attention.layer_norm_rms_epsilon"); }));
      },
      "llama.attention.layer_norm_rms_epsilon", "missing");
  expect_error(
      [&] {
        load(model_gguf(c, tensors, [](auto& w, auto& f) {
          copy_all(w, f);
          w.add("llama.block_count", GgufValue::string("two"));
        }));
      },
      "llama.block_count", "expected an integer");
}

TEST(GgufModel, ExportRefusesInconsistentModels) {
  const auto c = tiny_config();
  auto tensors = random_model(c, 12);
  const auto dir = temp_dir("refuse");
  tensors.erase("model.norm.weight");
  expect_error([&] { save_gguf((dir / "a.gguf").string(), c, tensors); }, "model.norm.weight", "missing");
  EXPECT_FALSE(std::filesystem::exists(dir / "a.gguf"));
}

TEST(ModelFile, UnknownFormatsAreNamed) {
  const auto dir = temp_dir("unknown");
  expect_error([&] { load_model_file((dir / "nothing").string()); }, "nothing", "no such file");
  expect_error([&] { load_model_file(dir.string()); }, dir.string(), "config.json");
  const auto txt = dir / "model.txt";
  std::ofstream(txt) << "hello";
  expect_error([&] { load_model_file(txt.string()); }, "model.txt", "unrecognised model format");
}

}  // namespace
}  // namespace pricer
