#pragma once
#include <cstdint>
#include <string_view>

namespace pricer {

// Storage formats of a weight matrix. NF4 is QLoRA's frozen base (bitsandbytes' definition,
// with double quantization); the GGUF block formats are kept as ggml lays them out.
enum class DType : uint8_t { F32, F16, BF16, NF4, Q8_0, Q4_0, Q4_K, Q6_K, Q5_K };

// Every format, narrowest blocks last, as listings name them.
inline constexpr DType kDTypes[] = {DType::NF4,  DType::BF16, DType::F16,  DType::F32, DType::Q8_0,
                                    DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// ggml's integer block formats (Q8_0, Q4_0 and the K-quants), as opposed to floats and NF4.
bool is_ggml_quant(DType t);

std::string_view dtype_name(DType t);
DType dtype_from_name(std::string_view name);  // throws Error on an unknown name

}  // namespace pricer
