// llama2.c legacy checkpoints: generated files read back into Hugging Face layout (q/k rows
// permuted so rotate-half RoPE reproduces llama2.c's interleaved RoPE), corrupt headers and
// sizes, and the real stories260K checkpoint.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "io/bytes.h"
#include "io/model_file.h"
#include "test_io_util.h"

namespace pricer {
namespace {

using namespace test_io;

struct Header {
  int32_t dim, hidden, layers, heads, kv_heads, vocab, seq;
};

// The arrays of a llama2.c checkpoint in file order and layout, and its bytes.
struct Llama2c {
  Header h;
  std::vector<float> emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq, wcls;
  std::vector<uint8_t> bytes;
};

Llama2c make_llama2c(Header h, uint32_t seed) {
  std::mt19937 rng(seed);
  Llama2c m;
  m.h = h;
  const size_t V = static_cast<size_t>(std::abs(h.vocab)), D = h.dim, L = h.layers, F = h.hidden;
  const size_t hs = D / h.heads, kv = h.kv_heads * hs;
  m.emb = random_floats(V * D, rng);
  m.rms_att = random_floats(L * D, rng);
  m.wq = random_floats(L * D * D, rng);
  m.wk = random_floats(L * kv * D, rng);
  m.wv = random_floats(L * kv * D, rng);
  m.wo = random_floats(L * D * D, rng);
  m.rms_ffn = random_floats(L * D, rng);
  m.w1 = random_floats(L * F * D, rng);
  m.w2 = random_floats(L * D * F, rng);
  m.w3 = random_floats(L * F * D, rng);
  m.rms_final = random_floats(D, rng);
  m.freq = random_floats(static_cast<size_t>(h.seq) * hs, rng);
  if (h.vocab < 0) m.wcls = random_floats(V * D, rng);
  ByteWriter w;
  w.put_bytes(&h, sizeof(h));
  for (const auto* v : {&m.emb, &m.rms_att, &m.wq, &m.wk, &m.wv, &m.wo, &m.rms_ffn, &m.w1, &m.w2, &m.w3, &m.rms_final,
                        &m.freq, &m.wcls}) {
    w.put_bytes(v->data(), v->size() * 4);
  }
  m.bytes = std::move(w.out);
  return m;
}

std::vector<float> slice(const std::vector<float>& v, size_t layer, size_t per) {
  return std::vector<float>(v.begin() + static_cast<std::ptrdiff_t>(layer * per),
                            v.begin() + static_cast<std::ptrdiff_t>((layer + 1) * per));
}

// llama2.c's RoPE (run.c) on a vector of n = heads * head_size values at position pos.
void rope_llama2c(std::vector<float>& x, int head_size, int pos) {
  for (size_t i = 0; i < x.size(); i += 2) {
    const int hd = static_cast<int>(i) % head_size;
    const float freq = 1.0f / std::pow(10000.0f, hd / static_cast<float>(head_size));
    const float v = pos * freq, fcr = std::cos(v), fci = std::sin(v);
    const float v0 = x[i], v1 = x[i + 1];
    x[i] = v0 * fcr - v1 * fci;
    x[i + 1] = v0 * fci + v1 * fcr;
  }
}
// Hugging Face's rotate-half RoPE, theta 10000.
void rope_hf(std::vector<float>& x, int head_size, int pos) {
  const int half = head_size / 2;
  for (size_t h = 0; h < x.size() / head_size; ++h) {
    float* p = x.data() + h * head_size;
    for (int j = 0; j < half; ++j) {
      const float freq = 1.0f / std::pow(10000.0f, 2.0f * j / head_size);
      const float v = pos * freq, c = std::cos(v), s = std::sin(v);
      const float a = p[j], b = p[j + half];
      p[j] = a * c - b * s;
      p[j + half] = a * s + b * c;
    }
  }
}

std::vector<float> matvec(const std::vector<float>& w, size_t rows, size_t cols, const std::vector<float>& x) {
  std::vector<float> y(rows, 0.0f);
  for (size_t r = 0; r < rows; ++r) {
    for (size_t k = 0; k < cols; ++k) y[r] += w[r * cols + k] * x[k];
  }
  return y;
}

TEST(Llama2c, ReadsEveryArrayInHuggingFaceLayout) {
  const Header h{16, 24, 2, 4, 2, 32, 10};
  const Llama2c f = make_llama2c(h, 1);
  const ModelFile m = read_llama2c(f.bytes, "gen.bin");
  EXPECT_EQ(m.format, "llama2c");
  const ModelConfig& c = m.config;
  EXPECT_EQ(c.dim, 16);
  EXPECT_EQ(c.ffn_dim, 24);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.vocab_size, 32);
  EXPECT_EQ(c.max_seq_len, 10);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_id, 2);
  EXPECT_FALSE(m.tensors.contains("lm_head.weight"));
  EXPECT_EQ(m.tensors.at("model.embed_tokens.weight").f32(), f.emb);
  EXPECT_EQ(m.tensors.at("model.norm.weight").f32(), f.rms_final);
  for (size_t l = 0; l < 2; ++l) {
    auto t = [&](const char* s) { return m.tensors.at(io_detail::layer_tensor(static_cast<int64_t>(l), s)).f32(); };
    EXPECT_EQ(t("input_layernorm.weight"), slice(f.rms_att, l, 16));
    EXPECT_EQ(t("post_attention_layernorm.weight"), slice(f.rms_ffn, l, 16));
    EXPECT_EQ(t("self_attn.v_proj.weight"), slice(f.wv, l, 8 * 16));
    EXPECT_EQ(t("self_attn.o_proj.weight"), slice(f.wo, l, 16 * 16));
    EXPECT_EQ(t("mlp.gate_proj.weight"), slice(f.w1, l, 24 * 16));
    EXPECT_EQ(t("mlp.down_proj.weight"), slice(f.w2, l, 16 * 24));
    EXPECT_EQ(t("mlp.up_proj.weight"), slice(f.w3, l, 24 * 16));

    // q/k: llama2.c's interleaved RoPE on the file's rows equals rotate-half RoPE on ours,
    // up to the same fixed reordering of outputs for q and k (so attention scores agree).
    std::mt19937 rng(static_cast<uint32_t>(l));
    const auto x = random_floats(16, rng);
    auto q_file = matvec(slice(f.wq, l, 256), 16, 16, x), q_hf = matvec(t("self_attn.q_proj.weight"), 16, 16, x);
    auto k_file = matvec(slice(f.wk, l, 128), 8, 16, x), k_hf = matvec(t("self_attn.k_proj.weight"), 8, 16, x);
    rope_llama2c(q_file, 4, 5);
    rope_llama2c(k_file, 4, 2);
    rope_hf(q_hf, 4, 5);
    rope_hf(k_hf, 4, 2);
    for (int hh = 0; hh < 4; ++hh) {
      for (int i = 0; i < 2; ++i) {
        for (int j = 0; j < 2; ++j) {
          EXPECT_NEAR(q_hf[hh * 4 + i * 2 + j], q_file[hh * 4 + 2 * j + i], 1e-4f);
          if (hh < 2) {
            EXPECT_NEAR(k_hf[hh * 4 + i * 2 + j], k_file[hh * 4 + 2 * j + i], 1e-4f);
          }
        }
      }
    }
  }
}

TEST(Llama2c, UnsharedClassifierAndBaseDtype) {
  const Header h{8, 12, 1, 2, 2, -20, 4};
  const Llama2c f = make_llama2c(h, 2);
  const ModelFile m = read_llama2c(f.bytes, "cls.bin", DType::BF16);
  EXPECT_FALSE(m.config.tied_embeddings);
  EXPECT_EQ(m.config.vocab_size, 20);
  EXPECT_EQ(m.tensors.at("lm_head.weight").f32(), f.wcls);
  EXPECT_EQ(m.tensors.at("lm_head.weight").dtype(), DType::F32);
  EXPECT_EQ(m.tensors.at("model.layers.0.mlp.up_proj.weight").dtype(), DType::BF16);
  EXPECT_EQ(m.tensors.at("model.layers.0.input_layernorm.weight").dtype(), DType::F32);
  check_model_tensors(m.config, m.tensors, "cls.bin");
}

TEST(Llama2c, CorruptFilesFailCleanly) {
  const Header h{8, 12, 2, 2, 1, 16, 4};
  const Llama2c f = make_llama2c(h, 3);
  EXPECT_NO_THROW(read_llama2c(f.bytes, "ok.bin"));
  // Every truncation (and an extra trailing byte) is a size mismatch naming the file.
  for (size_t len = 0; len < f.bytes.size(); len += (len < 64 ? 1 : 37)) {
    const std::vector<uint8_t> prefix(f.bytes.begin(), f.bytes.begin() + static_cast<std::ptrdiff_t>(len));
    expect_error([&] { read_llama2c(prefix, "cut.bin"); }, "cut.bin");
  }
  auto longer = f.bytes;
  longer.push_back(0);
  expect_error([&] { read_llama2c(longer, "long.bin"); }, "long.bin", "implies");

  auto with_header = [&](Header hh) {
    auto b = f.bytes;
    std::memcpy(b.data(), &hh, sizeof(hh));
    return b;
  };
  auto bad = [&](Header hh, const std::string& needle) {
    expect_error([&] { read_llama2c(with_header(hh), "hdr.bin"); }, "hdr.bin", needle);
  };
  bad({0, 12, 2, 2, 1, 16, 4}, "hidden_size");
  bad({8, -12, 2, 2, 1, 16, 4}, "intermediate_size");
  bad({8, 12, 2, 3, 1, 16, 4}, "not a multiple of n_heads");
  bad({8, 12, 2, 2, 4, 16, 4}, "num_key_value_heads");
  bad({8, 12, 2, 2, 1, 0, 4}, "vocab_size");
  bad({8, 12, 2, 2, 1, 16, 0}, "max_position_embeddings");
  bad({8, 12, 2, 2, 1, 16, 5}, "implies");
  bad({4096, 14336, 32, 32, 8, 128256, 8192}, "implies");  // an 8B header on a tiny file
  bad({65536, 262144, 1024, 64, 64, 4194304, 16777216}, "parameters exceed");  // absurd
  bad({INT32_MAX, INT32_MAX, INT32_MAX, 1, 1, INT32_MIN, INT32_MAX}, "hdr.bin");
  auto ak42 = f.bytes;
  std::memcpy(ak42.data(), "24ka", 4);
  expect_error([&] { read_llama2c(ak42, "v1.bin"); }, "v1.bin", "versioned export");
  expect_error([&] { read_llama2c({}, "empty.bin"); }, "empty.bin", "truncated");
}

TEST(Llama2c, LoadsThroughTheDispatcher) {
  const Header h{8, 12, 1, 2, 2, 16, 4};
  const Llama2c f = make_llama2c(h, 4);
  const auto dir = temp_dir("disk");
  const auto path = dir / "model.bin";
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(f.bytes.data()), static_cast<std::streamsize>(f.bytes.size()));
  const ModelFile m = load_model_file(path.string());
  EXPECT_EQ(m.source, path.string());
  EXPECT_EQ(m.format, "llama2c");
  EXPECT_EQ(m.tensors.at("model.embed_tokens.weight").f32(), f.emb);
  std::filesystem::resize_file(path, f.bytes.size() - 4);
  expect_error([&] { load_model_file(path.string()); }, path.string(), "truncated");
}

TEST(Llama2c, Stories260K) {
  const std::string path = shared_dir() + "/fixtures/stories260K/stories260K.bin";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "fixture absent: " << path;
  const ModelFile m = load_model_file(path);
  const ModelConfig& c = m.config;
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.ffn_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_seq_len, 512);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(m.tensors.size(), 2u + 5u * 9u);
  EXPECT_EQ(m.tensors.at("model.layers.4.self_attn.k_proj.weight").rows(), 32);
  EXPECT_EQ(m.tensors.at("model.layers.4.mlp.down_proj.weight").cols(), 172);

  // Against the raw file: the embedding starts right after the 28-byte header, and layer 0's
  // wq follows the embedding and the 5 x 64 attention norms, rows in interleaved order.
  MappedFile raw(path);
  const auto b = raw.bytes();
  std::vector<float> emb(512 * 64);
  std::memcpy(emb.data(), b.data() + 28, emb.size() * 4);
  EXPECT_EQ(m.tensors.at("model.embed_tokens.weight").f32(), emb);
  std::vector<float> wq(64 * 64);
  std::memcpy(wq.data(), b.data() + 28 + (512 * 64 + 5 * 64) * 4, wq.size() * 4);
  const auto& q = m.tensors.at("model.layers.0.self_attn.q_proj.weight").f32();
  for (int h = 0; h < 8; ++h) {
    for (int i = 0; i < 2; ++i) {
      for (int j = 0; j < 4; ++j) {
        for (int k = 0; k < 64; k += 21) {
          EXPECT_EQ(q[(h * 8 + i * 4 + j) * 64 + k], wq[(h * 8 + 2 * j + i) * 64 + k]);
        }
      }
    }
  }
}

}  // namespace
}  // namespace pricer
