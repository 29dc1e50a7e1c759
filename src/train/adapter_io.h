#pragma once
// LoRA adapters in the formats people use, both ways:
//  - PEFT: <dir>/adapter_model.safetensors with
//    base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight [r, in] and .lora_B.weight
//    [out, r], plus <dir>/adapter_config.json (peft_type LORA, r, lora_alpha, target_modules, ...);
//  - GGUF LoRA as llama.cpp reads it: general.type = adapter, adapter.type = lora,
//    adapter.lora.alpha, tensors blk.N.attn_q.weight.lora_a (ne [in, r]) / .lora_b (ne [r, out]),
//    lora_b rows of q/k in llama.cpp's interleaved RoPE order, as its base weights are.
#include <string>

#include "model/llama.h"

namespace pricer {

void save_peft_adapter(const LlamaModel& model, const std::string& dir, const std::string& base_model_name);
void save_gguf_adapter(const LlamaModel& model, const std::string& path);

// The LoRA configuration stored with an adapter (PEFT directory or GGUF file). Throws Error
// naming the file on anything unreadable or inconsistent.
LoraConfig read_adapter_config(const std::string& path);
// Attaches the adapter at `path` to the model (replacing any adapters), checking every tensor's
// presence and shape against the model.
void load_adapter(LlamaModel& model, const std::string& path);

}  // namespace pricer
