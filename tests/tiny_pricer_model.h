#pragma once
// A tiny priced-product world for the predict and eval-model tests: a byte-level BPE tokenizer
// trained here (every number 0-999 one token), a random Llama with that vocab, saved as a GGUF
// with the tokenizer embedded (as `pricer pretrain` writes it), and a PEFT adapter with non-zero
// weights.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "io/model_file.h"
#include "model/llama.h"
#include "model/model_export.h"
#include "tokenizer/train_bpe.h"
#include "train/adapter_io.h"

namespace pricer::tiny {

inline const std::vector<std::string>& product_words() {
  static const std::vector<std::string> w = {"steel", "plastic", "deluxe", "mini", "pro",   "basic",
                                             "kit",   "spare",   "cable",  "lamp", "drill", "mug"};
  return w;
}

// "Item steel mini kit ..." texts with prices that follow the words.
struct Product {
  std::string text;
  double price;
};
inline std::vector<Product> products(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  const auto& words = product_words();
  std::uniform_int_distribution<size_t> w(0, words.size() - 1);
  std::vector<Product> out;
  for (int i = 0; i < n; ++i) {
    std::string text = "Item";
    double logp = 3.0;
    const int len = 3 + static_cast<int>(rng() % 6);
    for (int k = 0; k < len; ++k) {
      const size_t j = w(rng);
      text += " " + words[j];
      logp += (static_cast<double>(j % 5) - 2.0) * 0.3;
    }
    out.push_back({text, std::round(std::exp(logp) * 100) / 100});
  }
  return out;
}

inline TrainedBpe tokenizer_vocab() {
  std::vector<std::string> texts;
  for (const auto& p : products(200, 1)) {
    texts.push_back("What does this cost to the nearest dollar?\n\n" + p.text + "\n\nPrice is $" +
                    std::to_string(static_cast<int>(p.price)) + ".00");
  }
  BpeTrainOptions o;
  o.vocab_size = 1300;
  return train_bpe(texts, o);
}

inline ModelConfig model_config(const TrainedBpe& bpe, int64_t context = 96) {
  ModelConfig c;
  c.vocab_size = static_cast<int64_t>(bpe.tokens.size());
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.ffn_dim = 48;
  c.max_seq_len = context;
  c.rope_theta = 10000.0f;
  c.tied_embeddings = false;
  c.bos_id = bpe.bos_id;
  c.eos_id = bpe.eos_id;
  return c;
}

// One layer 256 wide: every matrix row is whole blocks of every export format, K-quants included.
inline ModelConfig block_model_config(const TrainedBpe& bpe, int64_t context) {
  ModelConfig c = model_config(bpe, context);
  c.dim = 256;
  c.n_layers = 1;
  c.head_dim = 64;
  c.ffn_dim = 256;
  return c;
}

// A model file as inference loads it, with a LoRA adapter (PEFT or GGUF) when one is given.
inline LlamaModel load_model(const std::string& path, const std::string& adapter = "") {
  ModelFile mf = load_model_file(path);
  LlamaModel m = LlamaModel::from_weights(mf.config, std::move(mf.tensors), mf.source);
  if (!adapter.empty()) load_adapter(m, adapter);
  return m;
}

inline std::vector<GgufKV> tokenizer_kvs(const TrainedBpe& bpe) {
  return {{"tokenizer.ggml.model", GgufValue::string("gpt2")},
          {"tokenizer.ggml.pre", GgufValue::string("llama-bpe")},
          {"tokenizer.ggml.tokens", GgufValue::string_array(bpe.tokens)},
          {"tokenizer.ggml.token_type", GgufValue::i32_array(bpe.token_types)},
          {"tokenizer.ggml.merges", GgufValue::string_array(bpe.merges)},
          {"tokenizer.ggml.bos_token_id", GgufValue::u32(static_cast<uint32_t>(bpe.bos_id))},
          {"tokenizer.ggml.eos_token_id", GgufValue::u32(static_cast<uint32_t>(bpe.eos_id))}};
}

inline void save_model(const LlamaModel& m, const TrainedBpe& bpe, const std::string& path) {
  GgufExportOptions go;
  go.extra = tokenizer_kvs(bpe);
  save_gguf(path, m.config(), export_tensors(m, false), go);
}

// Attaches LoRA adapters on every projection with B drawn at random (a fresh adapter has B = 0
// and would change nothing).
inline void add_nonzero_lora(LlamaModel& m, uint64_t seed, float scale = 0.5f) {
  LoraConfig lc;
  lc.rank = 4;
  lc.alpha = 8.0f;
  lc.targets = parse_lora_targets("all");
  m.add_lora(lc, seed);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> d(0.0f, scale);
  for (int64_t l = 0; l < m.config().n_layers; ++l) {
    for (int p = 0; p < kNumProj; ++p) {
      if (LoraAdapter* ad = m.lora(l, static_cast<Proj>(p))) {
        for (float& b : ad->B) b = d(rng);
      }
    }
  }
}

// Files of the world: base.gguf and adapter/ (PEFT) under dir.
struct World {
  std::filesystem::path dir, base, adapter;
  TrainedBpe bpe;
};

inline World make_world(const std::filesystem::path& dir, float stddev = 0.3f) {
  World w;
  w.dir = dir;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  w.bpe = tokenizer_vocab();
  LlamaModel m = LlamaModel::random(model_config(w.bpe), 11, stddev);
  w.base = dir / "base.gguf";
  save_model(m, w.bpe, w.base.string());
  add_nonzero_lora(m, 5);
  w.adapter = dir / "adapter";
  save_peft_adapter(m, w.adapter.string(), "tiny-base");
  return w;
}

inline std::filesystem::path temp_dir(const std::string& what) {
  return std::filesystem::temp_directory_path() /
         ("pricer_" + what + "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
}

}  // namespace pricer::tiny
