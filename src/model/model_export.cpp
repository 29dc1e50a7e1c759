#include "model/model_export.h"

#include <algorithm>

#include "kernels/backend.h"
#include "model/hf_names.h"

namespace pricer {

namespace {

Weight vec(const std::vector<float>& v) {
  return Weight::from_f32(v.data(), 1, static_cast<int64_t>(v.size()), DType::F32);
}

// `w` with its rows `ids` replaced by `rows` [ids, cols] (trained token rows merged).
Weight with_rows(const Weight& w, const std::vector<int32_t>& ids, const std::vector<float>& rows) {
  std::vector<float> all = w.to_f32();
  const int64_t cols = w.cols();
  for (size_t j = 0; j < ids.size(); ++j)
    std::copy_n(rows.data() + static_cast<int64_t>(j) * cols, cols, all.data() + ids[j] * cols);
  return Weight::from_f32(all.data(), w.rows(), cols, DType::F32);
}

}  // namespace

std::map<std::string, Weight> export_tensors(const LlamaModel& model, bool merge_lora) {
  const ModelConfig& c = model.config();
  std::map<std::string, Weight> out;
  out[kHfEmbedding] = model.embedding();
  if (!c.tied_embeddings) out[kHfHead] = model.head();
  if (merge_lora && model.has_trainable_tokens()) {
    const TrainableTokens& t = model.trainable_tokens();
    out[kHfEmbedding] = with_rows(model.embedding(), t.ids, t.embed);
    if (!c.tied_embeddings) out[kHfHead] = with_rows(model.head(), t.ids, t.head);
  }
  out["model.norm.weight"] = vec(const_cast<LlamaModel&>(model).final_norm());
  auto be = make_cpu_backend();
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& lw = model.layer(l);
    const std::string p = hf_layer_prefix(l);
    out[p + "input_layernorm.weight"] = vec(lw.attn_norm);
    out[p + "post_attention_layernorm.weight"] = vec(lw.ffn_norm);
    if (c.qkv_bias) {
      out[p + "self_attn.q_proj.bias"] = vec(lw.bq);
      out[p + "self_attn.k_proj.bias"] = vec(lw.bk);
      out[p + "self_attn.v_proj.bias"] = vec(lw.bv);
    }
    for (int i = 0; i < kNumProj; ++i) {
      const Proj pr = static_cast<Proj>(i);
      const Weight& w = lw.proj[i];
      const LoraAdapter* a = merge_lora ? model.lora(l, pr) : nullptr;
      if (!a) {
        out[hf_proj_name(l, pr) + ".weight"] = w;
        continue;
      }
      std::vector<float> merged = w.to_f32();
      // W[out, in] += scale * B[out, r] A[r, in]
      be->gemm(false, false, a->out, a->in, a->rank, model.lora_config().scale(), a->B.data(), a->A.data(), 1.0f,
               merged.data());
      out[hf_proj_name(l, pr) + ".weight"] = Weight::from_f32(merged.data(), a->out, a->in, DType::F32);
    }
  }
  return out;
}

}  // namespace pricer
