#pragma once
// Internal helpers shared by the format readers and writers of src/io (not a public interface).
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "io/model_file.h"

namespace pricer::io_detail {

using Shape = std::pair<int64_t, int64_t>;  // (rows, cols) of a Weight; 1-D tensors are (1, n)

std::string shape_str(Shape s);
std::string layer_tensor(int64_t layer, const char* suffix);  // "model.layers.<layer>.<suffix>"

// Every tensor the config implies, with its shape (lm_head only when untied).
std::map<std::string, Shape> expected_shapes(const ModelConfig& c);

// Builds a Weight from stored little-endian bytes of type `type` (F32 copied through an aligned
// buffer, every other format adopted raw).
Weight weight_from_bytes(DType type, int64_t rows, int64_t cols, std::span<const uint8_t> bytes);

// Adds a loaded tensor under its Hugging Face name, checking the name and shape against
// `expected`: norms and biases become f32; the 7 projections become base_dtype when given.
void add_model_tensor(ModelFile& m, const std::map<std::string, Shape>& expected, const std::string& name, Weight w,
                      std::optional<DType> base_dtype, const std::string& where);

// The bytes of a weight in format `as` (converting through f32 when it is held otherwise).
std::vector<uint8_t> weight_bytes(const Weight& w, DType as);

// Hugging Face rope_scaling "llama3": the per-frequency divisors llama.cpp stores as
// rope_freqs.weight (1 for high frequencies, factor for low ones, smoothed between).
std::vector<float> llama3_rope_factors(const ModelConfig& c);

// Hugging Face loaders (hf_model.cpp): a model directory, or one .safetensors file with its
// config.json beside it.
ModelFile load_hf_dir(const std::string& dir, std::optional<DType> base_dtype);
ModelFile load_safetensors_model(const std::string& path, std::optional<DType> base_dtype);

}  // namespace pricer::io_detail
