#pragma once
#include <cstdint>
#include <string_view>

namespace pricer {

// Storage formats of a weight matrix. NF4 is QLoRA's frozen base (bitsandbytes' definition,
// with double quantization); the GGUF block formats are kept as ggml lays them out.
enum class DType : uint8_t { F32, F16, BF16, NF4, Q8_0, Q4_0, Q4_K, Q6_K };

std::string_view dtype_name(DType t);
DType dtype_from_name(std::string_view name);  // throws Error on an unknown name

}  // namespace pricer
