#pragma once
// Mixed weight formats as llama.cpp's quantizer makes them, for exports a phone runs: most
// matrices in a 4- or 5-bit K-quant and the ones the output is most sensitive to in 6 bits: the
// head (the embedding when the two are tied) and the value and down projections of the first and
// last eighth of the layers and of every third layer between (llama.cpp's Q4_K_M and Q5_K_M).
#include <cstdint>
#include <optional>
#include <string>

#include "quant/dtype.h"

namespace pricer {

struct QuantMix {
  const char* name;  // as --dtype spells it: "q4_k_m", "q5_k_m"
  DType base;  // most matrices
  DType wide;  // the sensitive ones
  uint32_t file_type;  // llama.cpp's general.file_type (llama_ftype) for the mix
};

// The mix called `name`, or nullopt when `name` is not one.
std::optional<QuantMix> quant_mix(const std::string& name);

// The format the matrix `tensor` (a Hugging Face name: "model.layers.3.mlp.down_proj.weight") gets
// in `mix`, in a model of `n_layers` layers whose head is its embedding when `tied`.
DType mixed_dtype(const QuantMix& mix, const std::string& tensor, int64_t n_layers, bool tied);
// (Rows that are not whole blocks of the chosen format: quant/ggml_blocks.h fitting_block_format.)

}  // namespace pricer
