#pragma once
// LoRA adapters in the formats people use, both ways:
//  - PEFT: <dir>/adapter_model.safetensors with
//    base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight [r, in] and .lora_B.weight
//    [out, r], plus <dir>/adapter_config.json (peft_type LORA, r, lora_alpha, target_modules, ...);
//  - GGUF LoRA as llama.cpp reads it: general.type = adapter, adapter.type = lora,
//    adapter.lora.alpha, tensors blk.N.attn_q.weight.lora_a (ne [in, r]) / .lora_b (ne [r, out]),
//    lora_b rows of q/k in llama.cpp's interleaved RoPE order, as its base weights are.
// Trained token rows (PEFT's trainable_token_indices) go with them: in PEFT form as
// ...embed_tokens.token_adapter.trainable_tokens_delta [ids, dim] (and lm_head's when untied) with
// trainable_token_indices in adapter_config.json; in GGUF form in a second file beside the
// adapter (token_rows_path), because llama.cpp's LoRA loader refuses any tensor that is not a
// lora_a/lora_b pair; adapter.gguf names that file (pricer.token_rows) so it is never lost
// silently. For llama.cpp, `pricer export --adapter` merges rows and adapters into one model.
#include <string>
#include <vector>

#include "io/gguf.h"
#include "model/llama.h"

namespace pricer {

// "dir/adapter.gguf" -> "dir/adapter.tokens.gguf"
std::string token_rows_path(const std::string& gguf_adapter_path);

void save_peft_adapter(const LlamaModel& model, const std::string& dir, const std::string& base_model_name);
// `extra` metadata is added to adapter.gguf (e.g. pricer.comparables for an adapter trained with them).
void save_gguf_adapter(const LlamaModel& model, const std::string& path, const std::vector<GgufKV>& extra = {});

// The LoRA configuration stored with an adapter (PEFT directory or GGUF file). Throws Error
// naming the file on anything unreadable or inconsistent.
LoraConfig read_adapter_config(const std::string& path);
// Attaches the adapter at `path` to the model (replacing any adapters), checking every tensor's
// presence and shape against the model.
void load_adapter(LlamaModel& model, const std::string& path);

}  // namespace pricer
