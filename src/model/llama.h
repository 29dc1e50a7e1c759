#pragma once
// A Llama-family decoder (Hugging Face LlamaForCausalLM numerics) with LoRA adapters.
//
// Two training modes:
//  - QLoRA: the base (embedding, projections, norms, head) is frozen in any Weight format and
//    only the LoRA adapters (fp32 master weights) receive gradients; the input gradient flows
//    through the frozen projections via Backend::linear_backward_input.
//  - Full-parameter: every tensor is f32 and trainable (pretraining small models).
// Every op runs through a Backend, so the same code runs on the scalar reference kernels and the
// fast CPU kernels.
#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/backend.h"
#include "model/batch.h"
#include "model/config.h"
#include "model/param.h"
#include "quant/weight.h"

namespace pricer {

struct LoraConfig {
  int64_t rank = 8;
  float alpha = 16.0f;
  float dropout = 0.0f;  // on the adapter input only, as PEFT
  bool rslora = false;  // scale alpha / sqrt(rank) instead of alpha / rank
  std::array<bool, kNumProj> targets{};

  float scale() const;
  void validate(const std::string& source) const;
};

// "all" or a comma-separated list of q,k,v,o,gate,up,down (with or without the "_proj" suffix).
std::array<bool, kNumProj> parse_lora_targets(std::string_view list);

// One adapter: delta W = scale * B A, PEFT's lora_A.weight [rank, in] and lora_B.weight [out, rank].
struct LoraAdapter {
  int64_t in = 0, out = 0, rank = 0;
  std::vector<float> A, B;
  std::vector<float> dA, dB;  // gradients, accumulated until zero_grad
};

struct LayerWeights {
  std::vector<float> attn_norm, ffn_norm;  // input_layernorm, post_attention_layernorm
  std::array<Weight, kNumProj> proj;  // [out, in] each
  std::vector<float> bq, bk, bv;  // q/k/v biases; empty unless config.qkv_bias
};

// PEFT's trainable_token_indices: trainable copies of some token rows of the frozen embedding
// (and of the head: the same rows when tied, their own when not). PEFT stores the rows
// themselves, not differences ("trainable_tokens_delta" is a misnomer it keeps).
struct TrainableTokens {
  std::vector<int32_t> ids;  // ascending, unique
  std::vector<int32_t> slot;  // [vocab]: row index in the copies, or -1
  std::vector<float> embed, d_embed;  // [ids, dim]
  std::vector<float> head, d_head;  // [ids, dim]; empty when the head is tied
  std::vector<float> head_base;  // [ids, dim] the frozen head's rows, as it computes them
  bool empty() const { return ids.empty(); }
};

struct TrainOptions {
  bool checkpoint = false;  // keep only each layer's input; recompute the layer in backward
  // The last layer's output projection and MLP at every row, not only where the loss reads
  // (the same loss and gradients, more work: for tests that hold the two together).
  bool last_layer_every_row = false;
  uint64_t dropout_seed = 0;  // LoRA dropout masks are a pure function of (seed, step, place)
  uint64_t step = 0;
};

// The rotary inverse frequencies [head_dim / 2] of the config, with Llama 3 scaling applied
// exactly as transformers' _compute_llama3_parameters.
std::vector<float> rope_inv_freq(const ModelConfig& cfg);

// Keys and values of one sequence for incremental generation.
class KvCache {
 public:
  int64_t length() const { return len_; }
  int64_t capacity() const { return cap_; }
  void clear() { len_ = 0; }

 private:
  friend class LlamaModel;
  int64_t len_ = 0, cap_ = 0;
  std::vector<std::vector<float>> k_, v_;  // per layer [kv_heads, cap, head_dim]
};

class LlamaModel {
 public:
  // From Hugging Face canonical tensor names (model.embed_tokens.weight,
  // model.layers.N.self_attn.q_proj.weight, ..., lm_head.weight). 1-D tensors (norms, biases)
  // may come as [n, 1] or [1, n]. Throws Error naming `source` and the tensor on a missing,
  // unexpected or misshapen tensor.
  static LlamaModel from_weights(const ModelConfig& cfg, std::map<std::string, Weight> weights,
                                 const std::string& source);
  // Hugging Face's initialisation: N(0, stddev) for matrices, ones for norms, zero biases.
  static LlamaModel random(const ModelConfig& cfg, uint64_t seed, float stddev = 0.02f);

  const ModelConfig& config() const { return cfg_; }
  Weight& embedding() { return embed_; }
  const Weight& embedding() const { return embed_; }
  LayerWeights& layer(int64_t i) { return layers_.at(i); }
  const LayerWeights& layer(int64_t i) const { return layers_.at(i); }
  std::vector<float>& final_norm() { return norm_; }
  const std::vector<float>& final_norm() const { return norm_; }
  const Weight& head() const { return cfg_.tied_embeddings ? embed_ : head_; }

  // Re-stores the 7 projections of every layer in `dtype` (the frozen QLoRA base: nf4, bf16, f32).
  void convert_base(DType dtype);
  // Re-stores the token embedding (and with it a tied head), e.g. bf16 to halve its memory.
  void convert_embedding(DType dtype);

  // Attaches fresh adapters with PEFT's default init (A ~ U(+-1/sqrt(in)), B = 0).
  void add_lora(const LoraConfig& lc, uint64_t seed);
  bool has_lora() const { return lora_.rank > 0; }
  const LoraConfig& lora_config() const { return lora_; }
  LoraAdapter* lora(int64_t layer, Proj p);  // nullptr where p is not adapted
  const LoraAdapter* lora(int64_t layer, Proj p) const;

  // Makes the embedding (and head) rows of `ids` trainable, initialised from the frozen weights
  // (so the model is unchanged until trained); with or without LoRA adapters, not in full mode.
  void add_trainable_tokens(std::vector<int32_t> ids);
  bool has_trainable_tokens() const { return !tokens_.empty(); }
  void remove_trainable_tokens() { tokens_ = {}; }
  const TrainableTokens& trainable_tokens() const { return tokens_; }
  // The trained rows, for loading saved ones (same ids, same sizes) and for merging.
  std::vector<float>& token_embed_rows() { return tokens_.embed; }
  std::vector<float>& token_head_rows() { return tokens_.head; }

  // Makes every tensor trainable; all weights must be f32 and no adapters attached.
  void enable_full_training();
  bool full_training() const { return full_; }

  // Adapters and token rows (QLoRA) or every tensor (full mode), with gradient buffers.
  std::vector<Param> trainable_params();
  void zero_grad();

  // Mean cross-entropy over the masked positions; accumulates gradients of the trainable tensors.
  float forward_backward(const Batch& batch, Backend& be, const TrainOptions& opt = {});
  // The same loss without gradients or dropout.
  float loss(const Batch& batch, Backend& be);
  // Logits [rows.size(), vocab] at the given rows of the packed batch (targets and loss_mask
  // unused, may be empty).
  std::vector<float> logits(const Batch& batch, std::span<const int64_t> rows, Backend& be);

  KvCache make_cache(int64_t capacity) const;
  // Appends tokens to the cache and returns the logits [vocab] after the last of them.
  std::vector<float> prefill(KvCache& cache, std::span<const int32_t> tokens, Backend& be);
  std::vector<float> decode(KvCache& cache, int32_t token, Backend& be);
  // Several sequences in one pass, each with its own cache (so requests share the weight reads
  // and the head's matrix product): prompts into empty caches, packed back to back, or one token
  // each into caches of any length. Returns logits [n, vocab], row i after sequence i's last token.
  std::vector<float> prefill_many(std::span<KvCache* const> caches, std::span<const std::vector<int32_t>> prompts,
                                  Backend& be);
  std::vector<float> decode_many(std::span<KvCache* const> caches, std::span<const int32_t> tokens, Backend& be);

  struct Acts;  // saved activations of one layer
  struct Scratch;  // reusable work buffers

 private:
  struct LayerGrads {
    std::vector<float> attn_norm, ffn_norm, bq, bk, bv;
    std::array<std::vector<float>, kNumProj> proj;
  };
  struct Dropout {
    bool on = false;
    uint64_t seed = 0, step = 0;
    std::span<const int64_t> rows;  // a projection's input rows are these rows of the pass (empty: all)
  };

  LlamaModel() = default;
  void init_derived();
  int64_t proj_in(Proj p) const;
  int64_t proj_out(Proj p) const;

  void proj_forward(Backend& be, int64_t l, Proj p, const float* x, float* y, int64_t T, Acts& acts, Scratch& s,
                    const Dropout& dr);
  // Projections of one input (q, k, v; gate, up): their base linears in one backend call, then
  // each one's bias and adapter.
  void projs_forward(Backend& be, int64_t l, std::span<const Proj> ps, const float* x, std::span<float* const> ys,
                     int64_t T, Acts& acts, Scratch& s, const Dropout& dr);
  // What follows a projection's base linear: its bias, and its LoRA adapter's x A^T B^T.
  void proj_extras(Backend& be, int64_t l, Proj p, const float* x, float* y, int64_t T, Acts& acts, Scratch& s,
                   const Dropout& dr);
  void proj_backward(Backend& be, int64_t l, Proj p, const float* x, const float* dy, float* dx, int64_t T,
                     const Acts& acts, Scratch& s, const Dropout& dr);
  // caches: none, or one per sequence of b (their new keys and values are appended). keep: the
  // rows whose output is needed (ascending; empty: all): the attention output projection and the
  // MLP, position by position, run only there, and the other rows of out are zero.
  void layer_forward(Backend& be, int64_t l, const float* x, float* out, const Batch& b, Acts& a, Scratch& s,
                     const Dropout& dr, std::span<KvCache* const> caches, std::span<const int64_t> keep = {});
  // keep as in layer_forward: dres must be zero outside it (what the loss does not read).
  void layer_backward(Backend& be, int64_t l, const float* x, float* dres, const Batch& b, const Acts& a, Scratch& s,
                      const Dropout& dr, std::span<const int64_t> keep = {});
  // The position-wise half of a layer on its n rows: out = h + down(silu(gate(hn)) * up(hn)).
  void mlp_forward(Backend& be, int64_t l, float* out, int64_t n, Acts& a, Scratch& s, const Dropout& dr);
  // Its backward: s.dh = dout + the gradient through the MLP, for a.h's n rows.
  void mlp_backward(Backend& be, int64_t l, const float* dout, int64_t n, const Acts& a, Scratch& s, const Dropout& dr);
  void cached_attention(Backend& be, int64_t l, const float* q, float* out, KvCache& cache);
  // Final norm + head at `rows` of the last hidden state h [T, dim]. With targets: returns the
  // summed loss and, when dh != nullptr, writes the gradient w.r.t. h (rows not listed untouched).
  float head_loss(Backend& be, const float* h, std::span<const int64_t> rows, const int32_t* targets,
                  std::span<const SoftTarget> soft, float grad_scale, float* dh, Scratch& s);
  std::vector<float> head_logits(Backend& be, const float* h, std::span<const int64_t> rows, Scratch& s);
  // rows: where the last hidden state will be read (elsewhere it is zero).
  const float* run_forward(Backend& be, const Batch& b, std::span<KvCache* const> caches,
                           std::span<const int64_t> rows);
  // One pass of b's sequences through their caches; logits after each sequence's last token.
  std::vector<float> forward_cached(std::span<KvCache* const> caches, const Batch& b, Backend& be);
  void embed_tokens(Backend& be, const int32_t* tokens, float* h, int64_t T) const;
  // The trained rows' share of the head: their logits replace the frozen head's, and in backward
  // their gradients and the correction of dhn (the frozen head's backward used its own rows).
  void token_rows_logits(const float* hn, float* logits, int64_t n) const;
  void token_rows_head_backward(const float* dlogits, const float* hn, float* dhn, int64_t n);

  ModelConfig cfg_;
  Weight embed_;
  std::vector<LayerWeights> layers_;
  std::vector<float> norm_;
  Weight head_;  // unused when tied
  std::vector<float> inv_freq_;

  LoraConfig lora_{.rank = 0};
  std::vector<std::array<LoraAdapter, kNumProj>> adapters_;  // [layer][proj]; rank 0 = none

  TrainableTokens tokens_;

  bool full_ = false;
  std::vector<LayerGrads> grads_;
  std::vector<float> d_embed_, d_norm_, d_head_;
};

}  // namespace pricer
