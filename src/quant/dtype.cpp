#include "quant/dtype.h"

#include <string>

#include "core/error.h"

namespace pricer {

namespace {
constexpr std::string_view kNames[] = {"f32", "f16", "bf16", "nf4", "q8_0", "q4_0", "q4_k", "q6_k", "q5_k"};
}

std::string_view dtype_name(DType t) { return kNames[static_cast<int>(t)]; }

bool is_ggml_quant(DType t) {
  return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K;
}

DType dtype_from_name(std::string_view name) {
  for (int i = 0; i < static_cast<int>(std::size(kNames)); ++i) {
    if (kNames[i] == name) return static_cast<DType>(i);
  }
  throw Error("unknown dtype '" + std::string(name) +
              "' (expected f32, f16, bf16, nf4, q8_0, q4_0, q4_k, q5_k or q6_k)");
}

}  // namespace pricer
