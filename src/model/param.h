#pragma once
// A trainable tensor as the optimizer sees it: a flat f32 value array with its gradient.
#include <cstdint>
#include <string>

namespace pricer {

struct Param {
  std::string name;  // Hugging Face / PEFT tensor name
  float* value = nullptr;
  float* grad = nullptr;
  int64_t size = 0;
  bool decay = true;  // false for norms and biases (no weight decay on them)
};

}  // namespace pricer
