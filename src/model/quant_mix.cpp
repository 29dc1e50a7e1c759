#include "model/quant_mix.h"

#include <cstdlib>

#include "quant/ggml_blocks.h"

namespace pricer {

namespace {

// llama.cpp's use_more_bits: the first and last eighth of the layers, and every third between.
bool more_bits(int64_t layer, int64_t n_layers) {
  return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

// N of "model.layers.N.<rest>", or -1 for a tensor outside the layers.
int64_t layer_of(const std::string& tensor) {
  const std::string prefix = "model.layers.";
  if (!tensor.starts_with(prefix)) return -1;
  char* end = nullptr;
  const long long n = std::strtoll(tensor.c_str() + prefix.size(), &end, 10);
  return end != tensor.c_str() + prefix.size() && *end == '.' ? n : -1;
}

}  // namespace

std::optional<QuantMix> quant_mix(const std::string& name) {
  if (name == "q4_k_m") return QuantMix{"q4_k_m", DType::Q4_K, DType::Q6_K, 15};
  return std::nullopt;
}

DType mixed_dtype(const QuantMix& mix, const std::string& tensor, int64_t n_layers, bool tied) {
  if (tensor == "lm_head.weight" || (tied && tensor == "model.embed_tokens.weight")) return mix.wide;
  const int64_t layer = layer_of(tensor);
  const bool sensitive = tensor.ends_with(".self_attn.v_proj.weight") || tensor.ends_with(".mlp.down_proj.weight");
  return layer >= 0 && sensitive && more_bits(layer, n_layers) ? mix.wide : mix.base;
}

DType mix_fallback(DType want, int64_t cols) {
  auto fits = [&](DType t) { return t == DType::F32 || cols % block_layout(t).elems == 0; };
  if (fits(want)) return want;
  if (want == DType::Q4_K && fits(DType::Q4_0)) return DType::Q4_0;
  if (want == DType::Q6_K && fits(DType::Q8_0)) return DType::Q8_0;
  return DType::F16;
}

}  // namespace pricer
