#include "model/quant_mix.h"

#include "model/hf_names.h"

namespace pricer {

namespace {

// llama.cpp's use_more_bits: the first and last eighth of the layers, and every third between.
bool more_bits(int64_t layer, int64_t n_layers) {
  return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

}  // namespace

std::optional<QuantMix> quant_mix(const std::string& name) {
  if (name == "q4_k_m") return QuantMix{"q4_k_m", DType::Q4_K, DType::Q6_K, 15};
  if (name == "q5_k_m") return QuantMix{"q5_k_m", DType::Q5_K, DType::Q6_K, 17};
  return std::nullopt;
}

DType mixed_dtype(const QuantMix& mix, const std::string& tensor, int64_t n_layers, bool tied) {
  if (tensor == kHfHead || (tied && tensor == kHfEmbedding)) return mix.wide;
  for (int64_t l = 0; l < n_layers; ++l)
    for (Proj p : {Proj::V, Proj::Down})
      if (tensor == hf_proj_name(l, p) + ".weight") return more_bits(l, n_layers) ? mix.wide : mix.base;
  return mix.base;
}

}  // namespace pricer
