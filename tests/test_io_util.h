#pragma once
// Shared helpers of the model-file tests: small generated models, temporary directories, and
// assertions that a reader fails cleanly.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/model_common.h"
#include "io/model_file.h"

namespace pricer::test_io {

inline ModelConfig tiny_config(const std::string& arch = "llama") {
  ModelConfig c;
  c.architecture = arch;
  c.vocab_size = 40;
  c.dim = 16;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 4;
  c.ffn_dim = 24;
  c.max_seq_len = 64;
  c.rms_eps = 1e-6f;
  c.rope_theta = 50000.0f;
  c.qkv_bias = arch == "qwen2";
  c.bos_id = 1;
  c.eos_id = 2;
  return c;
}

inline std::vector<float> random_floats(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Random tensors for every name the config implies; projections stored as proj_dtype.
inline std::map<std::string, Weight> random_model(const ModelConfig& c, uint32_t seed, DType proj_dtype = DType::F32,
                                                  DType embed_dtype = DType::F32) {
  std::mt19937 rng(seed);
  std::map<std::string, Weight> t;
  for (const auto& [name, shape] : io_detail::expected_shapes(c)) {
    const auto v = random_floats(static_cast<size_t>(shape.first * shape.second), rng, 0.5f);
    DType dt = DType::F32;
    if (name.ends_with("_proj.weight")) dt = proj_dtype;
    if (name == "model.embed_tokens.weight" || name == "lm_head.weight") dt = embed_dtype;
    t[name] = Weight::from_f32(v.data(), shape.first, shape.second, dt);
  }
  return t;
}

inline void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.architecture, b.architecture);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.dim, b.dim);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.ffn_dim, b.ffn_dim);
  EXPECT_EQ(a.max_seq_len, b.max_seq_len);
  EXPECT_FLOAT_EQ(a.rms_eps, b.rms_eps);
  EXPECT_FLOAT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_FLOAT_EQ(a.rope_scaling.factor, b.rope_scaling.factor);
  EXPECT_FLOAT_EQ(a.rope_scaling.low_freq_factor, b.rope_scaling.low_freq_factor);
  EXPECT_FLOAT_EQ(a.rope_scaling.high_freq_factor, b.rope_scaling.high_freq_factor);
  EXPECT_EQ(a.rope_scaling.original_max_position, b.rope_scaling.original_max_position);
  EXPECT_EQ(a.tied_embeddings, b.tied_embeddings);
  EXPECT_EQ(a.qkv_bias, b.qkv_bias);
  EXPECT_EQ(a.bos_id, b.bos_id);
  EXPECT_EQ(a.eos_id, b.eos_id);
}

// Same names, dtypes, shapes and bit-identical values.
inline void expect_same_tensors(const std::map<std::string, Weight>& a, const std::map<std::string, Weight>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, w] : a) {
    const auto it = b.find(name);
    ASSERT_NE(it, b.end()) << name;
    EXPECT_EQ(w.dtype(), it->second.dtype()) << name;
    ASSERT_EQ(w.rows(), it->second.rows()) << name;
    ASSERT_EQ(w.cols(), it->second.cols()) << name;
    const auto x = w.to_f32(), y = it->second.to_f32();
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(std::bit_cast<uint32_t>(x[i]), std::bit_cast<uint32_t>(y[i])) << name << " element " << i;
    }
  }
}

// Element-wise |a - b| <= tol * max|b| (a relative bound for re-quantized weights).
inline void expect_close(const std::vector<float>& a, const std::vector<float>& b, float tol) {
  ASSERT_EQ(a.size(), b.size());
  float mx = 0.0f;
  for (float x : b) mx = std::max(mx, std::fabs(x));
  for (size_t i = 0; i < a.size(); ++i) ASSERT_LE(std::fabs(a[i] - b[i]), tol * mx) << "element " << i;
}

// A fresh empty directory under the test temp dir.
inline std::filesystem::path temp_dir(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  auto p = std::filesystem::path(::testing::TempDir()) /
           ("pricer_io_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" + name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

// Runs f and requires it to throw pricer::Error whose message contains `needle` (and nothing
// else: any other exception fails the test).
inline void expect_error(const std::function<void()>& f, const std::string& needle, const std::string& needle2 = "") {
  try {
    f();
    ADD_FAILURE() << "expected pricer::Error containing '" << needle << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg;
    if (!needle2.empty()) {
      EXPECT_NE(msg.find(needle2), std::string::npos) << "message: " << msg;
    }
  }
}

// Runs f, which may succeed or throw pricer::Error (with `needle` in the message); any other
// exception escapes and fails the test.
inline bool ok_or_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    return true;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
    return false;
  }
}

inline std::string shared_dir() { return PRICER_SHARED_DIR; }

}  // namespace pricer::test_io
