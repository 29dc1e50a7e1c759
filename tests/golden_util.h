#pragma once
// The committed model goldens in tests/data/golden, written by the PyTorch scripts in tools/golden/:
// <name>.json (config, tensor shapes and byte offsets, expected values) and <name>.bin (the tensors).
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/llama.h"

namespace pricer::golden {

inline const std::string kDir = std::string(PRICER_SOURCE_DIR) + "/tests/data/golden/";

struct Golden {
  nlohmann::json manifest;
  std::vector<char> blob;

  explicit Golden(const std::string& name) {
    const std::string base = kDir + name;
    std::ifstream js(base + ".json");
    if (!js) throw Error("cannot open " + base + ".json");
    manifest = nlohmann::json::parse(js);
    std::ifstream bin(base + ".bin", std::ios::binary);
    if (!bin) throw Error("cannot open " + base + ".bin");
    blob.assign(std::istreambuf_iterator<char>(bin), std::istreambuf_iterator<char>());
  }
  bool has(const std::string& name) const { return manifest["tensors"].contains(name); }
  std::vector<int64_t> shape(const std::string& name) const {
    return manifest["tensors"].at(name).at("shape").get<std::vector<int64_t>>();
  }
  template <class T>
  std::vector<T> get(const std::string& name) const {
    const auto& t = manifest["tensors"].at(name);
    int64_t n = 1;
    for (int64_t d : t.at("shape").get<std::vector<int64_t>>()) n *= d;
    const size_t off = t.at("offset").get<size_t>();
    if (off + n * sizeof(T) > blob.size()) throw Error("golden tensor " + name + " past the end");
    std::vector<T> v(n);
    std::memcpy(v.data(), blob.data() + off, n * sizeof(T));
    return v;
  }
};

// The manifest's "config" as the model's.
inline ModelConfig config_of(const nlohmann::json& c) {
  ModelConfig cfg;
  cfg.vocab_size = c["vocab_size"];
  cfg.dim = c["dim"];
  cfg.n_layers = c["n_layers"];
  cfg.n_heads = c["n_heads"];
  cfg.n_kv_heads = c["n_kv_heads"];
  cfg.head_dim = c["head_dim"];
  cfg.ffn_dim = c["ffn_dim"];
  cfg.rms_eps = c["rms_eps"];
  cfg.rope_theta = c["rope_theta"];
  cfg.tied_embeddings = c["tied_embeddings"];
  cfg.qkv_bias = c["qkv_bias"];
  if (!c["rope_scaling"].is_null()) {
    const auto& rs = c["rope_scaling"];
    cfg.rope_scaling.factor = rs["factor"];
    cfg.rope_scaling.low_freq_factor = rs["low_freq_factor"];
    cfg.rope_scaling.high_freq_factor = rs["high_freq_factor"];
    cfg.rope_scaling.original_max_position = rs["original_max_position_embeddings"];
  }
  return cfg;
}

// The base model (the model.* and lm_head.* tensors, in F32) with config `cfg`, no adapters.
inline LlamaModel base_model(const Golden& g, const ModelConfig& cfg) {
  std::map<std::string, Weight> weights;
  for (const auto& [name, info] : g.manifest["tensors"].items()) {
    if (!name.starts_with("model.") && !name.starts_with("lm_head.")) continue;
    const std::vector<int64_t> sh = g.shape(name);
    const std::vector<float> v = g.get<float>(name);
    weights[name] = Weight::from_f32(v.data(), sh[0], sh.size() > 1 ? sh[1] : 1, DType::F32);
  }
  return LlamaModel::from_weights(cfg, std::move(weights), "golden");
}

}  // namespace pricer::golden
