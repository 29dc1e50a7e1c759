// LoRA adapters in PEFT and GGUF form (train/adapter_io.h): bitwise round trips, the names,
// shapes and keys other tools read, agreement with llama.cpp's weight layout, and clear errors
// for adapters that do not fit the model.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/gguf.h"
#include "io/safetensors.h"
#include "kernels/backend.h"
#include "model/model_export.h"
#include "train/adapter_io.h"
#include "train_test_util.h"

namespace pricer {
namespace {

using namespace train_test;

ModelConfig small_config() {
  ModelConfig c = tiny_config(96);
  c.bos_id = 1;
  c.eos_id = 2;
  c.dim = 32;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.ffn_dim = 48;
  return c;
}

// A model with adapters on `targets` whose A and B are all non-zero and distinct.
LlamaModel adapted(const std::string& targets, bool rslora = false, uint64_t seed = 5) {
  LlamaModel m = LlamaModel::random(small_config(), seed, 0.1f);
  LoraConfig lc;
  lc.rank = 4;
  lc.alpha = 12.0f;
  lc.dropout = 0.05f;
  lc.rslora = rslora;
  lc.targets = parse_lora_targets(targets);
  m.add_lora(lc, seed);
  float x = 0.01f;
  for (int64_t l = 0; l < 2; ++l)
    for (int p = 0; p < kNumProj; ++p)
      if (LoraAdapter* a = m.lora(l, static_cast<Proj>(p)))
        for (float& b : a->B) b = (x = std::fmod(x * 1.618f + 0.137f, 1.0f)) - 0.5f;
  return m;
}

class Adapters : public ::testing::Test {
 protected:
  ScratchDir dir_;
};

TEST_F(Adapters, PeftRoundTripIsBitwiseWithPeftNamesAndConfig) {
  const LlamaModel m = adapted("all");
  const std::string dir = dir_ / "peft";
  save_peft_adapter(m, dir, "org/base-model");
  LlamaModel back = LlamaModel::random(small_config(), 9, 0.1f);
  load_adapter(back, dir);
  EXPECT_EQ(adapter_tensors(back), adapter_tensors(m));
  const LoraConfig& lc = back.lora_config();
  EXPECT_EQ(lc.rank, 4);
  EXPECT_FLOAT_EQ(lc.alpha, 12.0f);
  EXPECT_FLOAT_EQ(lc.dropout, 0.05f);
  EXPECT_EQ(lc.targets, parse_lora_targets("all"));

  const auto st = SafetensorsFile::open(dir + "/adapter_model.safetensors");
  EXPECT_EQ(st.tensors().size(), 2u * 2u * kNumProj);
  const auto* qa = st.find("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
  const auto* db = st.find("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
  ASSERT_TRUE(qa && db);
  EXPECT_EQ(qa->shape, (std::vector<int64_t>{4, 32}));  // A [r, in]
  EXPECT_EQ(db->shape, (std::vector<int64_t>{32, 4}));  // B [out, r]
  EXPECT_EQ(st.find("base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight")->shape,
            (std::vector<int64_t>{16, 4}));
  const auto cfg = nlohmann::json::parse(slurp(dir + "/adapter_config.json"));
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["task_type"], "CAUSAL_LM");
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_EQ(cfg["lora_alpha"], 12.0);
  EXPECT_EQ(cfg["base_model_name_or_path"], "org/base-model");
  EXPECT_EQ(cfg["target_modules"],
            (nlohmann::json{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}));

  // A subset of targets and rsLoRA survive too; the file path works as well as the directory.
  const LlamaModel sub = adapted("q,v", true);
  save_peft_adapter(sub, dir_ / "sub", "base");
  load_adapter(back, dir_ / "sub/adapter_model.safetensors");
  EXPECT_EQ(adapter_tensors(back), adapter_tensors(sub));
  EXPECT_TRUE(back.lora_config().rslora);
  EXPECT_EQ(back.lora(0, Proj::K), nullptr);
  EXPECT_FLOAT_EQ(back.lora_config().scale(), sub.lora_config().scale());
}

TEST_F(Adapters, PeftHalfPrecisionAdaptersLoad) {
  // PEFT often saves bf16/fp16; values exactly representable in both come back unchanged.
  const LlamaModel m = adapted("q");
  save_peft_adapter(m, dir_ / "h", "base");
  SafetensorsWriter w;
  for (int64_t l = 0; l < 2; ++l) {
    for (char ab : {'A', 'B'}) {
      const std::string name =
          "base_model.model.model.layers." + std::to_string(l) + ".self_attn.q_proj.lora_" + ab + ".weight";
      const std::vector<int64_t> shape = ab == 'A' ? std::vector<int64_t>{4, 32} : std::vector<int64_t>{32, 4};
      std::vector<uint8_t> data(2 * 128);
      for (size_t i = 0; i < 128; ++i) {
        const float v = static_cast<float>(static_cast<int>(i % 17) - 8) / 16.0f;  // k/16: exact in bf16
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        const uint16_t h = static_cast<uint16_t>(bits >> 16);
        std::memcpy(data.data() + 2 * i, &h, 2);
      }
      w.add(name, "BF16", shape, data);
    }
  }
  w.write(dir_ / "h/adapter_model.safetensors");
  LlamaModel back = LlamaModel::random(small_config(), 9, 0.1f);
  load_adapter(back, dir_ / "h");
  EXPECT_FLOAT_EQ(back.lora(1, Proj::Q)->A[3], -5.0f / 16);
  EXPECT_FLOAT_EQ(back.lora(1, Proj::Q)->B[30], 5.0f / 16);
}

TEST_F(Adapters, GgufRoundTripIsBitwiseAndMatchesLlamaCppLayout) {
  const LlamaModel m = adapted("all", true);
  const std::string path = dir_ / "adapter.gguf";
  save_gguf_adapter(m, path);
  LlamaModel back = LlamaModel::random(small_config(), 9, 0.1f);
  load_adapter(back, path);
  EXPECT_EQ(adapter_tensors(back), adapter_tensors(m));
  EXPECT_FLOAT_EQ(back.lora_config().scale(), m.lora_config().scale()) << "rsLoRA as an equivalent alpha";

  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.get_string("general.type"), "adapter");
  EXPECT_EQ(f.get_string("adapter.type"), "lora");
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_FLOAT_EQ(static_cast<float>(f.get_float("adapter.lora.alpha")), m.lora_config().scale() * 4);
  const auto* a = f.find_tensor("blk.1.ffn_down.weight.lora_a");
  const auto* b = f.find_tensor("blk.1.ffn_down.weight.lora_b");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->ne, (std::vector<int64_t>{48, 4}));  // ggml ne: innermost first, [in, r]
  EXPECT_EQ(b->ne, (std::vector<int64_t>{4, 32}));  // [r, out]
  EXPECT_EQ(f.tensors().size(), 2u * 2u * kNumProj);

  // The delta the GGUF adapter applies equals the difference between the merged model and the
  // base as save_gguf writes them for llama.cpp (q/k rows in its interleaved RoPE order).
  const std::string base_path = dir_ / "base.gguf", merged_path = dir_ / "merged.gguf";
  save_gguf(base_path, m.config(), export_tensors(m, false));
  save_gguf(merged_path, m.config(), export_tensors(m, true));
  const GgufFile base = GgufFile::open(base_path), merged = GgufFile::open(merged_path);
  const float scale = static_cast<float>(f.get_float("adapter.lora.alpha")) / 4;
  auto floats = [](const GgufFile& g, const std::string& name) {
    const auto* t = g.find_tensor(name);
    EXPECT_TRUE(t) << name;
    const auto raw = g.tensor_data(*t);
    std::vector<float> v(raw.size() / 4);
    std::memcpy(v.data(), raw.data(), raw.size());
    return v;
  };
  for (const char* proj : {"attn_q", "attn_k", "attn_v", "ffn_gate"}) {
    SCOPED_TRACE(proj);
    const std::string w = std::string("blk.0.") + proj + ".weight";
    const auto W0 = floats(base, w), W1 = floats(merged, w), A = floats(f, w + ".lora_a"), B = floats(f, w + ".lora_b");
    const int64_t in = 32, out = static_cast<int64_t>(W0.size()) / in;
    double worst = 0;
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) {
        double d = 0;
        for (int64_t k = 0; k < 4; ++k) d += double(B[o * 4 + k]) * A[k * in + i];
        worst = std::max(worst, std::abs(W1[o * in + i] - W0[o * in + i] - scale * d));
      }
    EXPECT_LT(worst, 1e-5);
  }
}

// ---------------------------------------------------------------------------------------------
// Trained token rows (PEFT's trainable_token_indices) beside the adapters.

// `adapted("q,v")` with rows {50, 3, 7} trained away from the base, tied or not.
LlamaModel with_token_rows(bool tied, const std::vector<int32_t>& ids = {50, 3, 7}) {
  ModelConfig c = small_config();
  c.tied_embeddings = tied;
  LlamaModel m = LlamaModel::random(c, 5, 0.1f);
  LoraConfig lc;
  lc.rank = 2;
  lc.alpha = 4.0f;
  lc.targets = parse_lora_targets("q,v");
  m.add_lora(lc, 5);
  m.add_trainable_tokens(ids);
  float x = 0.02f;
  for (float& v : m.token_embed_rows()) v = (x = std::fmod(x * 1.618f + 0.311f, 1.0f)) - 0.5f;
  for (float& v : m.token_head_rows()) v = (x = std::fmod(x * 1.618f + 0.311f, 1.0f)) - 0.5f;
  return m;
}

std::vector<float> last_logits(LlamaModel& m) {
  auto be = make_reference_backend();
  Batch b;
  b.tokens = {1, 7, 20, 3, 50};  // trained rows as inputs, and every logit row is read
  b.positions = {0, 1, 2, 3, 4};
  b.cu_seqlens = {0, 5};
  return m.logits(b, std::vector<int64_t>{4}, *be);
}

TEST_F(Adapters, TrainedTokenRowsRoundTripThroughPeftAndGguf) {
  for (bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    const LlamaModel m = with_token_rows(tied);
    const fs::path d = dir_ / (tied ? "tied" : "untied");
    // PEFT: PEFT's tensor names and config key.
    save_peft_adapter(m, (d / "peft").string(), "base");
    const auto cfg = nlohmann::json::parse(slurp(d / "peft/adapter_config.json"));
    EXPECT_EQ(cfg["trainable_token_indices"]["embed_tokens"], (nlohmann::json{3, 7, 50}));
    EXPECT_EQ(cfg["trainable_token_indices"].contains("lm_head"), !tied);
    const auto st = SafetensorsFile::open((d / "peft/adapter_model.safetensors").string());
    const auto* rows = st.find("base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta");
    ASSERT_TRUE(rows);
    EXPECT_EQ(rows->shape, (std::vector<int64_t>{3, 32}));
    EXPECT_EQ(st.find("base_model.model.lm_head.token_adapter.trainable_tokens_delta") != nullptr, !tied);
    // Loaded onto the same base: the same rows and the same predictions, bitwise.
    LlamaModel base = LlamaModel::random(m.config(), 5, 0.1f);
    LlamaModel back = base;
    load_adapter(back, (d / "peft").string());
    EXPECT_EQ(back.trainable_tokens().ids, m.trainable_tokens().ids);
    EXPECT_EQ(back.trainable_tokens().embed, m.trainable_tokens().embed);
    EXPECT_EQ(back.trainable_tokens().head, m.trainable_tokens().head);
    LlamaModel m_copy = m;
    const std::vector<float> want = last_logits(m_copy);
    EXPECT_EQ(last_logits(back), want);

    // GGUF: adapter.gguf stays a plain llama.cpp LoRA file; the rows go beside it.
    const std::string gguf = (d / "adapter.gguf").string();
    save_gguf_adapter(m, gguf);
    ASSERT_TRUE(fs::exists(d / "adapter.tokens.gguf"));
    const GgufFile f = GgufFile::open(gguf);
    for (const auto& t : f.tensors()) EXPECT_TRUE(t.name.ends_with(".lora_a") || t.name.ends_with(".lora_b")) << t.name;
    EXPECT_EQ(f.get_string("pricer.token_rows"), "adapter.tokens.gguf");
    LlamaModel gback = base;
    load_adapter(gback, gguf);
    EXPECT_EQ(gback.trainable_tokens().embed, m.trainable_tokens().embed);
    EXPECT_EQ(last_logits(gback), want);

    // Merged into the model: the rows replace theirs in the embedding and head.
    LlamaModel merged = LlamaModel::from_weights(m.config(), export_tensors(m, true), "merged");
    const std::vector<float> got = last_logits(merged);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5f) << i;
    LlamaModel plain = base;
    EXPECT_GT(std::abs(last_logits(plain)[7] - want[7]), 1e-3f) << "the rows must matter";

    // The rows' file is never lost silently, and a later save without rows removes it.
    fs::rename(d / "adapter.tokens.gguf", d / "moved.gguf");
    LlamaModel lost = base;
    try {
      load_adapter(lost, gguf);
      ADD_FAILURE() << "an adapter whose token rows are missing must not load";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("adapter.tokens.gguf"), std::string::npos) << e.what();
    }
    save_gguf_adapter(adapted("q,v"), (d / "moved.gguf").string());  // reuse the name: no rows now
    EXPECT_FALSE(fs::exists(d / "moved.tokens.gguf"));
  }
}

TEST_F(Adapters, PeftTokenIndicesThatDoNotFitAreRejected) {
  const LlamaModel m = with_token_rows(false);
  const fs::path d = dir_ / "p";
  save_peft_adapter(m, d.string(), "base");
  const std::string cfg_path = (d / "adapter_config.json").string();
  auto cfg = nlohmann::json::parse(slurp(cfg_path));
  auto expect_error = [&](const nlohmann::json& indices, const std::string& part) {
    auto c = cfg;
    c["trainable_token_indices"] = indices;
    std::ofstream(cfg_path) << c.dump();
    LlamaModel back = LlamaModel::random(m.config(), 5, 0.1f);
    try {
      load_adapter(back, d.string());
      ADD_FAILURE() << "loaded " << indices.dump();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_error({{"embed_tokens", {3, 7, 50}}, {"lm_head", {3, 7}}}, "same token rows");
  expect_error({{"embed_tokens", {3, 7, 96}}, {"lm_head", {3, 7, 96}}}, "outside the vocabulary");
  expect_error({{"embed_tokens", {3, 3, 50}}}, "listed twice");
  expect_error({{"embed_tokens", {3, 7}}}, "wrong shape");
  expect_error({{"conv", {3}}}, "only embed_tokens and lm_head");
  expect_error({{"embed_tokens", {"a"}}}, "non-integer");
  // Rows that are not numbers never reach a forward pass.
  LlamaModel bad = with_token_rows(true);
  bad.token_embed_rows()[40] = std::nanf("");
  save_gguf_adapter(bad, dir_ / "nan.gguf");
  LlamaModel back_nan = LlamaModel::random(bad.config(), 5, 0.1f);
  try {
    load_adapter(back_nan, dir_ / "nan.gguf");
    ADD_FAILURE() << "non-finite token rows loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token row 1 holds a non-finite value"), std::string::npos) << e.what();
  }
  // The list form names the embedding's rows; an untied head PEFT did not train keeps the base's.
  auto c = cfg;
  c["trainable_token_indices"] = {3, 7, 50};
  std::ofstream(cfg_path) << c.dump();
  LlamaModel base = LlamaModel::random(m.config(), 5, 0.1f);
  LlamaModel back = base;
  load_adapter(back, d.string());
  EXPECT_EQ(back.trainable_tokens().embed, m.trainable_tokens().embed);
  LlamaModel fresh = base;
  fresh.add_trainable_tokens({3, 7, 50});
  EXPECT_EQ(back.trainable_tokens().head, fresh.trainable_tokens().head);
}

// ---------------------------------------------------------------------------------------------
// Adapters that do not fit: clear errors naming the file and the tensor.

void expect_load_error(LlamaModel& m, const std::string& path, const std::vector<std::string>& parts) {
  try {
    load_adapter(m, path);
    ADD_FAILURE() << "loaded " << path;
  } catch (const Error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST_F(Adapters, PeftAdaptersThatDoNotFitAreRejected) {
  const LlamaModel m = adapted("q,v");
  save_peft_adapter(m, dir_ / "good", "base");
  const std::string st = dir_ / "bad/adapter_model.safetensors";
  auto rewrite = [&](const std::string& skip, const std::string& reshape, const std::string& dtype) {
    fs::create_directories(dir_ / "bad");
    fs::copy_file(dir_ / "good/adapter_config.json", dir_ / "bad/adapter_config.json",
                  fs::copy_options::overwrite_existing);
    const auto in = SafetensorsFile::open(dir_ / "good/adapter_model.safetensors");
    SafetensorsWriter w;
    for (const auto& t : in.tensors()) {
      if (t.name == skip) continue;
      const auto data = in.data(t);
      std::vector<int64_t> shape = t.shape;
      if (t.name == reshape) std::swap(shape[0], shape[1]);
      w.add(t.name, t.name == reshape && !dtype.empty() ? dtype : t.dtype, shape,
            std::vector<uint8_t>(data.begin(), data.end()));
    }
    w.write(st);
  };
  const std::string vb = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight";
  LlamaModel target = LlamaModel::random(small_config(), 9, 0.1f);
  rewrite(vb, "", "");
  expect_load_error(target, dir_ / "bad", {st, "missing tensor " + vb});
  rewrite("", vb, "");
  expect_load_error(target, dir_ / "bad", {st, vb, "wrong shape", "[16, 4]"});
  rewrite("", vb, "I32");
  expect_load_error(target, dir_ / "bad", {st, vb});

  // An adapter made for another model (other widths).
  ModelConfig wide = small_config();
  wide.dim = 64;
  wide.head_dim = 16;
  LlamaModel other = LlamaModel::random(wide, 3, 0.1f);
  expect_load_error(other, dir_ / "good", {"q_proj.lora_A.weight", "wrong shape"});

  // Broken adapter_config.json.
  const std::string cfg = dir_ / "good/adapter_config.json";
  const std::string good_cfg = slurp(cfg);
  write_file_atomic(cfg, "{\"peft_type\": \"LORA\", \"target_modules\": [\"q_proj\"]}");
  expect_load_error(target, dir_ / "good", {cfg, "r missing"});
  write_file_atomic(cfg, "{\"peft_type\": \"PREFIX_TUNING\", \"r\": 4, \"target_modules\": [\"q_proj\"]}");
  expect_load_error(target, dir_ / "good", {cfg, "not LORA"});
  write_file_atomic(cfg, "{\"r\": 4, \"target_modules\": [\"q_proj\", \"lm_head\"]}");
  EXPECT_THROW(load_adapter(target, dir_ / "good"), Error);
  write_file_atomic(cfg, "{\"r\": 4,");
  expect_load_error(target, dir_ / "good", {cfg, "invalid JSON"});
  write_file_atomic(cfg, "{\"r\": 4, \"r\": 8, \"target_modules\": [\"q_proj\"]}");
  expect_load_error(target, dir_ / "good", {cfg, "duplicate JSON key 'r'"});
  fs::remove(cfg);
  expect_load_error(target, dir_ / "good", {cfg, "cannot open"});
  write_file_atomic(cfg, good_cfg);
  fs::remove(dir_ / "good/adapter_model.safetensors");
  expect_load_error(target, dir_ / "good", {"adapter_model.safetensors", "not found"});
}

TEST_F(Adapters, AdaptersHoldingNonFiniteValuesAreRefusedByName) {
  LlamaModel m = adapted("q,v");
  m.lora(1, Proj::V)->B[5] = std::numeric_limits<float>::infinity();
  save_peft_adapter(m, dir_ / "peft", "base");
  save_gguf_adapter(m, dir_ / "inf.gguf");
  LlamaModel target = LlamaModel::random(small_config(), 9, 0.1f);
  expect_load_error(target, dir_ / "peft",
                    {"adapter_model.safetensors", "layers.1.self_attn.v_proj.lora_B", "non-finite value (element 5)"});
  expect_load_error(target, dir_ / "inf.gguf", {"inf.gguf", "blk.1.attn_v.weight.lora_b", "non-finite"});
}

TEST_F(Adapters, GgufAdaptersThatDoNotFitAreRejected) {
  const LlamaModel m = adapted("q,k");
  const GgufFile good = [&] {
    save_gguf_adapter(m, dir_ / "good.gguf");
    return GgufFile::open(dir_ / "good.gguf");
  }();
  auto rewrite = [&](const std::string& path, const std::string& skip, const std::string& reshape,
                     const std::string& type) {
    GgufWriter w;
    for (const auto& kv : good.metadata())
      w.add(kv.key, kv.key == "general.type" && !type.empty() ? GgufValue::string(type) : kv.value);
    for (const auto& t : good.tensors()) {
      if (t.name == skip) continue;
      std::vector<int64_t> ne = t.ne;
      if (t.name == reshape) std::swap(ne[0], ne[1]);
      const auto data = good.tensor_data(t);
      w.add_tensor(t.name, ne, t.type, std::vector<uint8_t>(data.begin(), data.end()));
    }
    w.write(path);
  };
  LlamaModel target = LlamaModel::random(small_config(), 9, 0.1f);
  const std::string bad = dir_ / "bad.gguf";
  rewrite(bad, "blk.1.attn_k.weight.lora_b", "", "");
  expect_load_error(target, bad, {bad, "missing tensor blk.1.attn_k.weight.lora_b"});
  rewrite(bad, "", "blk.0.attn_q.weight.lora_b", "");
  expect_load_error(target, bad, {bad, "blk.0.attn_q.weight.lora_b", "wrong shape"});
  rewrite(bad, "", "", "model");
  expect_load_error(target, bad, {bad, "not a GGUF LoRA adapter"});
  write_file_atomic(bad, slurp(dir_ / "good.gguf").substr(0, 200));
  expect_load_error(target, bad, {bad});
}

}  // namespace
}  // namespace pricer
