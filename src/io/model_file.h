#pragma once
// A model as loaded from disk, whatever the format: its architecture (ModelConfig) and its
// tensors under Hugging Face canonical names, in Hugging Face layout:
//   model.embed_tokens.weight                         [vocab, dim]
//   model.layers.N.self_attn.{q,k,v,o}_proj.weight    [out, in]
//   model.layers.N.self_attn.{q,k,v}_proj.bias        [1, out]   (Qwen2-style qkv bias)
//   model.layers.N.mlp.{gate,up,down}_proj.weight     [out, in]
//   model.layers.N.{input,post_attention}_layernorm.weight, model.norm.weight   [1, dim]
//   lm_head.weight                                    [vocab, dim]  (absent when tied)
// q/k rows are in Hugging Face's rotate-half RoPE order whatever the source's order was.
// Norms and biases are always f32; embeddings and the head keep their stored format.
//
// Formats: GGUF (by magic), a Hugging Face directory (config.json + model.safetensors or a
// sharded index), a single .safetensors file (config.json beside it), a legacy llama2.c .bin.
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "model/config.h"
#include "quant/weight.h"

namespace pricer {

struct ModelFile {
  std::string format;  // "gguf", "hf", "safetensors" or "llama2c"
  std::string source;  // the path it was loaded from (or the name given to an in-memory reader)
  ModelConfig config;
  std::map<std::string, Weight> tensors;
  // Descriptive metadata: config.json (+ safetensors __metadata__), or the GGUF entries (long
  // arrays summarised as {"array": type, "length": n}), or the llama2.c header.
  nlohmann::json metadata;
  // GGUF sources only: every metadata entry as read, so tokenizer.ggml.* can be carried into an
  // exported file.
  std::vector<GgufKV> gguf_metadata;
};

// Loads a model file or directory. base_dtype, when given, converts the 7 projection weights of
// every layer (not embeddings, norms or the head) to that format (e.g. NF4 for QLoRA).
ModelFile load_model_file(const std::string& path, std::optional<DType> base_dtype = std::nullopt);

// The first tensor holding a NaN or infinite value ("" when none), read row block by row block:
// a model that cannot price must be refused by name, not produce NaN prices.
std::string first_non_finite_tensor(const ModelFile& m);

// Format-specific entry points (the in-memory ones serve tests and fuzzing; `name` appears in
// error messages in place of a path).
ModelFile load_gguf_model(const GgufFile& file, std::optional<DType> base_dtype = std::nullopt);
ModelFile read_llama2c(std::span<const uint8_t> bytes, const std::string& name,
                       std::optional<DType> base_dtype = std::nullopt);
// A Hugging Face config.json, already parsed, to ModelConfig.
ModelConfig hf_config_from_json(const nlohmann::json& j, const std::string& name);
nlohmann::json hf_config_to_json(const ModelConfig& c);

// Checks the tensor set against the config: every expected tensor present with the expected
// shape, nothing unexpected. Throws Error naming `source` and the tensor.
void check_model_tensors(const ModelConfig& config, const std::map<std::string, Weight>& tensors,
                         const std::string& source);

// Meta/llama2.c/GGUF("llama") order the rows of each q/k head as interleaved RoPE pairs
// (row 2j + i holds element i of pair j); Hugging Face orders them rotate-half (row
// i * head_dim/2 + j). These convert whole rows of `row_bytes` bytes between the two orders.
std::vector<uint8_t> rope_rows_to_hf(std::span<const uint8_t> rows, int64_t n_heads, int64_t head_dim,
                                     size_t row_bytes);
std::vector<uint8_t> rope_rows_from_hf(std::span<const uint8_t> rows, int64_t n_heads, int64_t head_dim,
                                       size_t row_bytes);

// What the writers below do with each tensor beyond writing it as held.
struct TensorWriteOptions {
  // A tensor named here is written in that format, converted as it is written (one tensor at a
  // time, so a model is never held twice). Block formats need whole blocks per row.
  std::map<std::string, DType> dtypes;
  std::function<void(uint64_t bytes)> on_written;  // after each tensor's data is produced
};

// Exports to GGUF under llama.cpp's names and keys (general.architecture = config.architecture),
// q/k rows permuted back to the interleaved order llama.cpp expects for "llama".
struct GgufExportOptions {
  std::string name = "pricer";
  DType nf4_as = DType::F16;  // NF4 has no GGUF type: such tensors are written dequantized
  std::vector<GgufKV> extra;  // added after (and overriding) the model's own keys
  uint32_t alignment = 32;
  TensorWriteOptions write;  // norms and biases are f32 in GGUF whatever this says
};
void save_gguf(const std::string& path, const ModelConfig& config, const std::map<std::string, Weight>& tensors,
               const GgufExportOptions& options = {});

// Exports a Hugging Face directory: config.json and model.safetensors (F32/F16/BF16 weights kept
// as they are, any other format dequantized to `other_as`, F32 or BF16).
void save_hf_dir(const std::string& dir, const ModelConfig& config, const std::map<std::string, Weight>& tensors,
                 DType other_as = DType::F32, const TensorWriteOptions& write = {});

}  // namespace pricer
