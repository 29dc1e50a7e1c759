#pragma once
// The Hugging Face tensor names of a Llama-family model, spelt in one place for every reader,
// writer and test model: "model.layers.<l>.self_attn.q_proj.weight", "...mlp.down_proj.weight",
// "...input_layernorm.weight".
#include <cstdint>
#include <string>

#include "model/config.h"

namespace pricer {

inline constexpr const char* kHfEmbedding = "model.embed_tokens.weight";
inline constexpr const char* kHfHead = "lm_head.weight";  // absent when tied to the embedding

// "model.layers.<layer>." — what a layer's tensor names start with.
inline std::string hf_layer_prefix(int64_t layer) { return "model.layers." + std::to_string(layer) + "."; }

// "model.layers.<layer>.self_attn.q_proj" (or ".mlp.gate_proj"): add ".weight" or ".bias".
inline std::string hf_proj_name(int64_t layer, Proj p) {
  const bool attention = static_cast<int>(p) <= static_cast<int>(Proj::O);
  return hf_layer_prefix(layer) + (attention ? "self_attn." : "mlp.") + proj_name(p);
}

}  // namespace pricer
