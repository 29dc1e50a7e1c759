#pragma once
// A model's tensors under Hugging Face canonical names, ready for the GGUF or safetensors writers;
// optionally with the LoRA adapters merged into the projections (W + scale B A), which is how a
// fine-tuned model is shipped as one file.
#include <map>
#include <string>

#include "model/llama.h"
#include "quant/weight.h"

namespace pricer {

// merge_lora: projections with an adapter become f32 W + scale * B A (others keep their format),
// and trained token rows replace theirs in the embedding and head (which then become f32).
std::map<std::string, Weight> export_tensors(const LlamaModel& model, bool merge_lora);

}  // namespace pricer
