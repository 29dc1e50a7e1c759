#include "model/llama.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"
#include "core/random.h"
#include "core/threads.h"
#include "model/hf_names.h"

namespace pricer {

namespace {

constexpr Proj kAllProj[kNumProj] = {Proj::Q, Proj::K, Proj::V, Proj::O, Proj::Gate, Proj::Up, Proj::Down};

// Key of the dropout mask of one adapter at one training step.
uint64_t dropout_key(uint64_t seed, uint64_t step, int64_t layer, Proj p) {
  return mix64(mix64(seed) ^
               mix64(step * 0x100000001b3ull + static_cast<uint64_t>(layer) * kNumProj + static_cast<uint64_t>(p)));
}

// dst (=|+=) src * mask / (1 - p) over n rows of `width`, mask[i] = hash(key, i) >= p with i the
// element's index in the whole pass: row r is the pass's row rows[r] when rows are given (a layer
// computed at some rows only draws the masks the full pass would). Recomputable in backward, so
// the masks never need storing.
void apply_dropout(const float* src, float* dst, int64_t n, int64_t width, std::span<const int64_t> rows, uint64_t key,
                   float p, bool accumulate) {
  const uint64_t threshold = static_cast<uint64_t>(static_cast<double>(p) * 0x1p24);
  const float keep_scale = 1.0f / (1.0f - p);
  // Each element's mask is its own hash: the rows split over the threads with the same result.
#pragma omp parallel for num_threads(threads()) schedule(static) if (n * width > 65536)
  for (int64_t r = 0; r < n; ++r) {
    const uint64_t first = static_cast<uint64_t>((rows.empty() ? r : rows[r]) * width);
    for (int64_t c = 0; c < width; ++c) {
      const int64_t i = r * width + c;
      const bool keep = (mix64(key + first + static_cast<uint64_t>(c)) >> 40) >= threshold;
      const float v = keep ? src[i] * keep_scale : 0.0f;
      dst[i] = accumulate ? dst[i] + v : v;
    }
  }
}

// out[r] = x[rows[r]] for rows of `width`.
void gather_rows(const float* x, std::span<const int64_t> rows, int64_t width, std::vector<float>& out) {
  out.resize(rows.size() * width);
  for (size_t r = 0; r < rows.size(); ++r) std::copy_n(x + rows[r] * width, width, out.data() + r * width);
}

// y = 0 at its n rows, then y[rows[r]] = x[r].
void scatter_rows(const float* x, std::span<const int64_t> rows, int64_t width, float* y, int64_t n) {
  std::fill(y, y + n * width, 0.0f);
  for (size_t r = 0; r < rows.size(); ++r) std::copy_n(x + r * width, width, y + rows[r] * width);
}

void add_into(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void zero(std::vector<float>& v, size_t n) { v.assign(n, 0.0f); }

std::vector<float> vector_of(const Weight& w, int64_t n, const std::string& source, const std::string& name) {
  require(w.numel() == n && (w.rows() == 1 || w.cols() == 1),
          source + ": tensor " + name + " has shape [" + std::to_string(w.rows()) + ", " + std::to_string(w.cols()) +
              "], expected [" + std::to_string(n) + "]");
  return w.to_f32();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// LoRA configuration

float LoraConfig::scale() const {
  return rslora ? alpha / std::sqrt(static_cast<float>(rank)) : alpha / static_cast<float>(rank);
}

void LoraConfig::validate(const std::string& source) const {
  require(rank >= 1 && rank <= 4096, source + ": lora rank " + std::to_string(rank) + " outside [1, 4096]");
  require(std::isfinite(alpha) && alpha > 0.0f, source + ": lora alpha must be > 0");
  require(std::isfinite(dropout) && dropout >= 0.0f && dropout < 1.0f,
          source + ": lora dropout " + std::to_string(dropout) + " outside [0, 1)");
  require(std::any_of(targets.begin(), targets.end(), [](bool b) { return b; }),
          source + ": lora has no target modules");
}

std::array<bool, kNumProj> parse_lora_targets(std::string_view list) {
  std::array<bool, kNumProj> t{};
  if (list == "all") {
    t.fill(true);
    return t;
  }
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string_view::npos) end = list.size();
    std::string item(list.substr(start, end - start));
    if (item.ends_with("_proj")) item.resize(item.size() - 5);
    bool found = false;
    for (Proj p : kAllProj) {
      std::string n = proj_name(p);
      if (n.substr(0, n.size() - 5) == item) t[static_cast<int>(p)] = found = true;
    }
    require(found, "lora target '" + item + "' is not one of q, k, v, o, gate, up, down (or all)");
    start = end + 1;
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// RoPE

std::vector<float> rope_inv_freq(const ModelConfig& cfg) {
  const int64_t half = cfg.head_dim / 2;
  std::vector<float> inv(half);
  for (int64_t i = 0; i < half; ++i) {
    inv[i] = 1.0f / std::pow(cfg.rope_theta, static_cast<float>(2 * i) / static_cast<float>(cfg.head_dim));
  }
  const RopeScaling& rs = cfg.rope_scaling;
  if (rs.factor <= 1.0f) return inv;
  const double old_ctx = static_cast<double>(rs.original_max_position);
  const double low_wavelen = old_ctx / rs.low_freq_factor;
  const double high_wavelen = old_ctx / rs.high_freq_factor;
  for (float& f : inv) {
    const float wavelen = 2.0f * std::numbers::pi_v<float> / f;
    // Long wavelengths are slowed by factor, short ones kept, the band between interpolated.
    const float scaled = wavelen > low_wavelen ? f / rs.factor : f;
    const float smooth =
        static_cast<float>((old_ctx / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor));
    const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
    f = medium ? (1.0f - smooth) * scaled / rs.factor + smooth * scaled : scaled;
  }
  return inv;
}

// ---------------------------------------------------------------------------------------------
// Buffers

struct LlamaModel::Acts {
  std::vector<float> xn, rstd1, q, k, v, att, lse, h, hn, rstd2, g, u;
  std::vector<float> att_keep;  // att at the kept rows, when a layer's output is needed at some only
  std::array<std::vector<float>, kNumProj> xa;  // adapter outputs x A^T [T, rank]
};

struct LlamaModel::Scratch {
  std::vector<float> out;  // [T, dim] recomputed layer output (discarded)
  std::vector<float> dh, dtmp;  // [T, dim]
  std::vector<float> datt, dq, dk, dv;  // attention widths
  std::vector<float> a, da, dg, du;  // [T, ffn]
  std::vector<float> xd;  // dropped adapter input [T, max(dim, ffn)]
  std::vector<float> dxa;  // [T, rank]
  std::vector<float> hsel, hnsel, rstd_sel, dhnsel, dhsel, logits, losses;
  std::vector<float> x_keep, out_keep, dres_keep, datt_keep, dh_all;  // rows of a layer run at some only
  std::vector<int32_t> tsel;
};

// ---------------------------------------------------------------------------------------------
// Construction

int64_t LlamaModel::proj_in(Proj p) const {
  switch (p) {
    case Proj::O: return cfg_.n_heads * cfg_.head_dim;
    case Proj::Down: return cfg_.ffn_dim;
    default: return cfg_.dim;
  }
}

int64_t LlamaModel::proj_out(Proj p) const {
  switch (p) {
    case Proj::Q: return cfg_.n_heads * cfg_.head_dim;
    case Proj::K:
    case Proj::V: return cfg_.n_kv_heads * cfg_.head_dim;
    case Proj::Gate:
    case Proj::Up: return cfg_.ffn_dim;
    default: return cfg_.dim;
  }
}

void LlamaModel::init_derived() { inv_freq_ = rope_inv_freq(cfg_); }

LlamaModel LlamaModel::from_weights(const ModelConfig& cfg, std::map<std::string, Weight> weights,
                                    const std::string& source) {
  cfg.validate(source);
  LlamaModel m;
  m.cfg_ = cfg;
  auto take = [&](const std::string& name) -> Weight {
    auto it = weights.find(name);
    require(it != weights.end(), source + ": missing tensor " + name);
    Weight w = std::move(it->second);
    weights.erase(it);
    return w;
  };
  auto take_matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    Weight w = take(name);
    require(w.rows() == rows && w.cols() == cols,
            source + ": tensor " + name + " has shape [" + std::to_string(w.rows()) + ", " + std::to_string(w.cols()) +
                "], expected [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
    return w;
  };
  auto take_vector = [&](const std::string& name, int64_t n) { return vector_of(take(name), n, source, name); };
  m.embed_ = take_matrix(kHfEmbedding, cfg.vocab_size, cfg.dim);
  m.layers_.resize(cfg.n_layers);
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    LayerWeights& L = m.layers_[l];
    const std::string pre = hf_layer_prefix(l);
    L.attn_norm = take_vector(pre + "input_layernorm.weight", cfg.dim);
    L.ffn_norm = take_vector(pre + "post_attention_layernorm.weight", cfg.dim);
    for (Proj p : kAllProj) {
      L.proj[static_cast<int>(p)] = take_matrix(hf_proj_name(l, p) + ".weight", m.proj_out(p), m.proj_in(p));
    }
    if (cfg.qkv_bias) {
      L.bq = take_vector(hf_proj_name(l, Proj::Q) + ".bias", m.proj_out(Proj::Q));
      L.bk = take_vector(hf_proj_name(l, Proj::K) + ".bias", m.proj_out(Proj::K));
      L.bv = take_vector(hf_proj_name(l, Proj::V) + ".bias", m.proj_out(Proj::V));
    }
  }
  m.norm_ = take_vector("model.norm.weight", cfg.dim);
  if (cfg.tied_embeddings) {
    weights.erase(kHfHead);  // some checkpoints store the tied copy as well
  } else {
    m.head_ = take_matrix(kHfHead, cfg.vocab_size, cfg.dim);
  }
  for (const auto& [name, w] : weights) {
    // Older checkpoints carry the rotary table as a buffer; it is recomputed from the config.
    require(name.ends_with("rotary_emb.inv_freq"), source + ": unexpected tensor " + name);
  }
  m.init_derived();
  return m;
}

LlamaModel LlamaModel::random(const ModelConfig& cfg, uint64_t seed, float stddev) {
  cfg.validate("random model config");
  LlamaModel m;
  m.cfg_ = cfg;
  Rng rng(mix64(seed), 1);  // counter-based
  auto matrix = [&](int64_t rows, int64_t cols) {
    std::vector<float> w(static_cast<size_t>(rows * cols));
    for (float& x : w) x = static_cast<float>(rng.normal()) * stddev;
    return Weight::from_f32(w.data(), rows, cols, DType::F32);
  };
  m.embed_ = matrix(cfg.vocab_size, cfg.dim);
  m.layers_.resize(cfg.n_layers);
  for (LayerWeights& L : m.layers_) {
    L.attn_norm.assign(cfg.dim, 1.0f);
    L.ffn_norm.assign(cfg.dim, 1.0f);
    for (Proj p : kAllProj) L.proj[static_cast<int>(p)] = matrix(m.proj_out(p), m.proj_in(p));
    if (cfg.qkv_bias) {
      L.bq.assign(m.proj_out(Proj::Q), 0.0f);
      L.bk.assign(m.proj_out(Proj::K), 0.0f);
      L.bv.assign(m.proj_out(Proj::V), 0.0f);
    }
  }
  m.norm_.assign(cfg.dim, 1.0f);
  if (!cfg.tied_embeddings) m.head_ = matrix(cfg.vocab_size, cfg.dim);
  m.init_derived();
  return m;
}

void LlamaModel::convert_base(DType dtype) {
  require(!full_ || dtype == DType::F32,
          "full-parameter training needs f32 weights, not " + std::string(dtype_name(dtype)));
  for (LayerWeights& L : layers_) {
    for (Weight& w : L.proj) {
      if (w.dtype() == dtype) continue;
      const std::vector<float> f = w.to_f32();
      w = Weight::from_f32(f.data(), w.rows(), w.cols(), dtype);
    }
  }
}

void LlamaModel::convert_embedding(DType dtype) {
  require(!full_ || dtype == DType::F32,
          "full-parameter training needs f32 weights, not " + std::string(dtype_name(dtype)));
  if (embed_.dtype() == dtype) return;
  const std::vector<float> f = embed_.to_f32();
  embed_ = Weight::from_f32(f.data(), embed_.rows(), embed_.cols(), dtype);
}

void LlamaModel::add_lora(const LoraConfig& lc, uint64_t seed) {
  lc.validate("lora config");
  require(!full_, "LoRA adapters cannot be added to a model in full-parameter training");
  lora_ = lc;
  adapters_.assign(cfg_.n_layers, {});
  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    for (Proj p : kAllProj) {
      if (!lc.targets[static_cast<int>(p)]) continue;
      LoraAdapter& ad = adapters_[l][static_cast<int>(p)];
      ad.in = proj_in(p);
      ad.out = proj_out(p);
      ad.rank = lc.rank;
      // PEFT: kaiming_uniform_(a=sqrt(5)) on A is U(-1/sqrt(in), 1/sqrt(in)); B starts at zero
      // so the adapted model equals the base at step 0.
      Rng rng(mix64(mix64(seed) ^ mix64(static_cast<uint64_t>(l * kNumProj + static_cast<int>(p)))), 1);
      const float bound = 1.0f / std::sqrt(static_cast<float>(ad.in));
      ad.A.resize(ad.rank * ad.in);
      for (float& a : ad.A) a = (2.0f * rng.uniform_float() - 1.0f) * bound;
      ad.B.assign(ad.out * ad.rank, 0.0f);
      ad.dA.assign(ad.A.size(), 0.0f);
      ad.dB.assign(ad.B.size(), 0.0f);
    }
  }
}

LoraAdapter* LlamaModel::lora(int64_t layer, Proj p) {
  if (!has_lora() || layer < 0 || layer >= cfg_.n_layers) return nullptr;
  LoraAdapter& ad = adapters_[layer][static_cast<int>(p)];
  return ad.rank > 0 ? &ad : nullptr;
}

const LoraAdapter* LlamaModel::lora(int64_t layer, Proj p) const {
  return const_cast<LlamaModel*>(this)->lora(layer, p);
}

void LlamaModel::add_trainable_tokens(std::vector<int32_t> ids) {
  require(!full_, "trainable token rows are for a frozen base; full-parameter training trains them all");
  require(!ids.empty(), "trainable tokens: no token ids");
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  const int64_t V = cfg_.vocab_size, D = cfg_.dim, n = static_cast<int64_t>(ids.size());
  for (int32_t id : ids)
    require(id >= 0 && id < V,
            "trainable tokens: id " + std::to_string(id) + " outside the vocabulary [0, " + std::to_string(V) + ")");
  TrainableTokens t;
  t.ids = std::move(ids);
  t.slot.assign(V, -1);
  t.embed.resize(n * D);
  t.head_base.resize(n * D);
  for (int64_t j = 0; j < n; ++j) {
    t.slot[t.ids[j]] = static_cast<int32_t>(j);
    embed_.dequantize_rows(t.ids[j], 1, t.embed.data() + j * D);
    head().dequantize_rows(t.ids[j], 1, t.head_base.data() + j * D);
  }
  if (!cfg_.tied_embeddings) t.head = t.head_base;
  t.d_embed.assign(t.embed.size(), 0.0f);
  t.d_head.assign(t.head.size(), 0.0f);
  tokens_ = std::move(t);
}

void LlamaModel::embed_tokens(Backend& be, const int32_t* tokens, float* h, int64_t T) const {
  be.embedding_forward(embed_, tokens, h, T);
  if (tokens_.empty()) return;
  const int64_t D = cfg_.dim;
  for (int64_t t = 0; t < T; ++t) {
    const int32_t j = tokens_.slot[tokens[t]];
    if (j >= 0) std::copy_n(tokens_.embed.data() + j * D, D, h + t * D);
  }
}

void LlamaModel::token_rows_logits(const float* hn, float* logits, int64_t n) const {
  if (tokens_.empty()) return;
  const int64_t D = cfg_.dim, V = cfg_.vocab_size;
  const std::vector<float>& rows = cfg_.tied_embeddings ? tokens_.embed : tokens_.head;
  for (int64_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < tokens_.ids.size(); ++j) {
      double dot = 0;
      for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(hn[i * D + d]) * rows[j * D + d];
      logits[i * V + tokens_.ids[j]] = static_cast<float>(dot);
    }
  }
}

void LlamaModel::token_rows_head_backward(const float* dlogits, const float* hn, float* dhn, int64_t n) {
  if (tokens_.empty()) return;
  const int64_t D = cfg_.dim, V = cfg_.vocab_size;
  const bool tied = cfg_.tied_embeddings;
  const std::vector<float>& rows = tied ? tokens_.embed : tokens_.head;
  std::vector<float>& drows = tied ? tokens_.d_embed : tokens_.d_head;
  for (int64_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < tokens_.ids.size(); ++j) {
      const float g = dlogits[i * V + tokens_.ids[j]];
      if (g == 0.0f) continue;
      for (int64_t d = 0; d < D; ++d) {
        dhn[i * D + d] += g * (rows[j * D + d] - tokens_.head_base[j * D + d]);
        drows[j * D + d] += g * hn[i * D + d];
      }
    }
  }
}

void LlamaModel::enable_full_training() {
  require(!has_lora(), "full-parameter training is not combined with LoRA adapters");
  require(!has_trainable_tokens(), "full-parameter training trains every token row already");
  auto check = [](const Weight& w, const std::string& name) {
    require(w.dtype() == DType::F32,
            "full-parameter training needs f32 weights; " + name + " is " + std::string(dtype_name(w.dtype())));
  };
  check(embed_, kHfEmbedding);
  if (!cfg_.tied_embeddings) check(head_, kHfHead);
  grads_.assign(cfg_.n_layers, {});
  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    const LayerWeights& L = layers_[l];
    LayerGrads& G = grads_[l];
    for (Proj p : kAllProj) {
      const Weight& w = L.proj[static_cast<int>(p)];
      check(w, hf_proj_name(l, p) + ".weight");
      G.proj[static_cast<int>(p)].assign(w.numel(), 0.0f);
    }
    G.attn_norm.assign(cfg_.dim, 0.0f);
    G.ffn_norm.assign(cfg_.dim, 0.0f);
    G.bq.assign(L.bq.size(), 0.0f);
    G.bk.assign(L.bk.size(), 0.0f);
    G.bv.assign(L.bv.size(), 0.0f);
  }
  d_embed_.assign(embed_.numel(), 0.0f);
  d_norm_.assign(cfg_.dim, 0.0f);
  d_head_.assign(cfg_.tied_embeddings ? 0 : head_.numel(), 0.0f);
  full_ = true;
}

std::vector<Param> LlamaModel::trainable_params() {
  std::vector<Param> ps;
  auto add = [&](std::string name, std::vector<float>& v, std::vector<float>& g, bool decay) {
    ps.push_back({std::move(name), v.data(), g.data(), static_cast<int64_t>(v.size()), decay});
  };
  if (full_) {
    add(kHfEmbedding, embed_.f32(), d_embed_, true);
    for (int64_t l = 0; l < cfg_.n_layers; ++l) {
      LayerWeights& L = layers_[l];
      LayerGrads& G = grads_[l];
      const std::string pre = hf_layer_prefix(l);
      add(pre + "input_layernorm.weight", L.attn_norm, G.attn_norm, false);
      for (Proj p : kAllProj) {
        add(hf_proj_name(l, p) + ".weight", L.proj[static_cast<int>(p)].f32(), G.proj[static_cast<int>(p)], true);
      }
      if (cfg_.qkv_bias) {
        add(hf_proj_name(l, Proj::Q) + ".bias", L.bq, G.bq, false);
        add(hf_proj_name(l, Proj::K) + ".bias", L.bk, G.bk, false);
        add(hf_proj_name(l, Proj::V) + ".bias", L.bv, G.bv, false);
      }
      add(pre + "post_attention_layernorm.weight", L.ffn_norm, G.ffn_norm, false);
    }
    add("model.norm.weight", norm_, d_norm_, false);
    if (!cfg_.tied_embeddings) add(kHfHead, head_.f32(), d_head_, true);
  } else {
    for (int64_t l = 0; has_lora() && l < cfg_.n_layers; ++l) {
      for (Proj p : kAllProj) {
        LoraAdapter* ad = lora(l, p);
        if (!ad) continue;
        add(hf_proj_name(l, p) + ".lora_A.weight", ad->A, ad->dA, true);
        add(hf_proj_name(l, p) + ".lora_B.weight", ad->B, ad->dB, true);
      }
    }
    if (has_trainable_tokens()) {
      add("model.embed_tokens.token_adapter.trainable_tokens_delta", tokens_.embed, tokens_.d_embed, true);
      if (!cfg_.tied_embeddings)
        add("lm_head.token_adapter.trainable_tokens_delta", tokens_.head, tokens_.d_head, true);
    }
  }
  return ps;
}

void LlamaModel::zero_grad() {
  for (Param& p : trainable_params()) std::fill(p.grad, p.grad + p.size, 0.0f);
}

// ---------------------------------------------------------------------------------------------
// Projections: y = x W^T (+ b) + scale * drop(x) A^T B^T

void LlamaModel::proj_forward(Backend& be, int64_t l, Proj p, const float* x, float* y, int64_t T, Acts& acts,
                              Scratch& s, const Dropout& dr) {
  be.linear_forward(layers_[l].proj[static_cast<int>(p)], x, y, T, 0.0f);
  proj_extras(be, l, p, x, y, T, acts, s, dr);
}

void LlamaModel::projs_forward(Backend& be, int64_t l, std::span<const Proj> ps, const float* x,
                               std::span<float* const> ys, int64_t T, Acts& acts, Scratch& s, const Dropout& dr) {
  require(ps.size() <= kNumProj && ys.size() == ps.size(), "projections of one input: one output each");
  std::array<const Weight*, kNumProj> Ws{};
  for (size_t i = 0; i < ps.size(); ++i) Ws[i] = &layers_[l].proj[static_cast<int>(ps[i])];
  be.linears_forward(std::span(Ws.data(), ps.size()), x, ys, T);
  for (size_t i = 0; i < ps.size(); ++i) proj_extras(be, l, ps[i], x, ys[i], T, acts, s, dr);
}

void LlamaModel::proj_extras(Backend& be, int64_t l, Proj p, const float* x, float* y, int64_t T, Acts& acts,
                             Scratch& s, const Dropout& dr) {
  const int pi = static_cast<int>(p);
  const LayerWeights& L = layers_[l];
  const std::vector<float>* bias = p == Proj::Q ? &L.bq : p == Proj::K ? &L.bk : p == Proj::V ? &L.bv : nullptr;
  if (bias && !bias->empty()) {
    const int64_t out = proj_out(p);
    for (int64_t t = 0; t < T; ++t) add_into(y + t * out, bias->data(), out);
  }
  const LoraAdapter* ad = lora(l, p);
  if (!ad) return;
  const float* xin = x;
  if (dr.on && lora_.dropout > 0.0f) {
    s.xd.resize(T * ad->in);
    apply_dropout(x, s.xd.data(), T, ad->in, dr.rows, dropout_key(dr.seed, dr.step, l, p), lora_.dropout, false);
    xin = s.xd.data();
  }
  acts.xa[pi].resize(T * ad->rank);
  be.gemm(false, true, T, ad->rank, ad->in, 1.0f, xin, ad->A.data(), 0.0f, acts.xa[pi].data());
  be.gemm(false, true, T, ad->out, ad->rank, lora_.scale(), acts.xa[pi].data(), ad->B.data(), 1.0f, y);
}

void LlamaModel::proj_backward(Backend& be, int64_t l, Proj p, const float* x, const float* dy, float* dx, int64_t T,
                               const Acts& acts, Scratch& s, const Dropout& dr) {
  const int pi = static_cast<int>(p);
  const Weight& W = layers_[l].proj[pi];
  be.linear_backward_input(W, dy, dx, T);
  if (full_) {
    LayerGrads& G = grads_[l];
    be.gemm(true, false, W.rows(), W.cols(), T, 1.0f, dy, x, 1.0f, G.proj[pi].data());
    std::vector<float>* db = p == Proj::Q ? &G.bq : p == Proj::K ? &G.bk : p == Proj::V ? &G.bv : nullptr;
    if (db && !db->empty()) {
      for (int64_t t = 0; t < T; ++t) add_into(db->data(), dy + t * W.rows(), W.rows());
    }
  }
  LoraAdapter* ad = lora(l, p);
  if (!ad) return;
  const float sc = lora_.scale();
  const bool drop = dr.on && lora_.dropout > 0.0f;
  const uint64_t key = drop ? dropout_key(dr.seed, dr.step, l, p) : 0;
  const float* xin = x;
  if (drop) {
    s.xd.resize(T * ad->in);
    apply_dropout(x, s.xd.data(), T, ad->in, dr.rows, key, lora_.dropout, false);
    xin = s.xd.data();
  }
  const float* xa = acts.xa[pi].data();
  s.dxa.resize(T * ad->rank);
  be.gemm(true, false, ad->out, ad->rank, T, sc, dy, xa, 1.0f, ad->dB.data());
  be.gemm(false, false, T, ad->rank, ad->out, sc, dy, ad->B.data(), 0.0f, s.dxa.data());
  be.gemm(true, false, ad->rank, ad->in, T, 1.0f, s.dxa.data(), xin, 1.0f, ad->dA.data());
  if (drop) {
    be.gemm(false, false, T, ad->in, ad->rank, 1.0f, s.dxa.data(), ad->A.data(), 0.0f, s.xd.data());
    apply_dropout(s.xd.data(), dx, T, ad->in, dr.rows, key, lora_.dropout, true);
  } else {
    be.gemm(false, false, T, ad->in, ad->rank, 1.0f, s.dxa.data(), ad->A.data(), 1.0f, dx);
  }
}

// ---------------------------------------------------------------------------------------------
// One decoder layer

void LlamaModel::layer_forward(Backend& be, int64_t l, const float* x, float* out, const Batch& b, Acts& a, Scratch& s,
                               const Dropout& dr, std::span<KvCache* const> caches, std::span<const int64_t> keep) {
  const int64_t T = b.size(), D = cfg_.dim, hd = cfg_.head_dim;
  const int H = static_cast<int>(cfg_.n_heads), KV = static_cast<int>(cfg_.n_kv_heads);
  const LayerWeights& L = layers_[l];
  a.xn.resize(T * D);
  a.rstd1.resize(T);
  a.q.resize(T * H * hd);
  a.k.resize(T * KV * hd);
  a.v.resize(T * KV * hd);
  a.att.resize(T * H * hd);
  a.lse.resize(H * T);

  be.rmsnorm_forward(x, L.attn_norm.data(), a.xn.data(), a.rstd1.data(), T, D, cfg_.rms_eps);
  constexpr std::array kQkv{Proj::Q, Proj::K, Proj::V};
  projs_forward(be, l, kQkv, a.xn.data(), std::array{a.q.data(), a.k.data(), a.v.data()}, T, a, s, dr);
  be.rope(a.q.data(), b.positions.data(), T, H, static_cast<int>(hd), inv_freq_.data(), false);
  be.rope(a.k.data(), b.positions.data(), T, KV, static_cast<int>(hd), inv_freq_.data(), false);
  // Cache rows are per kv head so each head's keys form one contiguous [len, hd] matrix.
  for (size_t seq = 0; seq < caches.size(); ++seq) {
    KvCache& c = *caches[seq];
    for (int64_t t = b.cu_seqlens[seq]; t < b.cu_seqlens[seq + 1]; ++t) {
      const int64_t at = c.len_ + t - b.cu_seqlens[seq];
      for (int g = 0; g < KV; ++g) {
        std::copy_n(a.k.data() + (t * KV + g) * hd, hd, c.k_[l].data() + (g * c.cap_ + at) * hd);
        std::copy_n(a.v.data() + (t * KV + g) * hd, hd, c.v_[l].data() + (g * c.cap_ + at) * hd);
      }
    }
  }
  if (!caches.empty() && caches[0]->len_ > 0) {
    // Decoding: one token per sequence (forward_cached's rule), each against its own cache.
    for (size_t seq = 0; seq < caches.size(); ++seq) {
      const int64_t off = static_cast<int64_t>(seq) * H * hd;
      cached_attention(be, l, a.q.data() + off, a.att.data() + off, *caches[seq]);
    }
  } else {
    be.attention_forward(a.q.data(), a.k.data(), a.v.data(), a.att.data(), a.lse.data(), b.cu_seqlens, H, KV,
                         static_cast<int>(hd));
  }
  if (keep.empty()) {
    a.h.resize(T * D);
    proj_forward(be, l, Proj::O, a.att.data(), a.h.data(), T, a, s, dr);
    add_into(a.h.data(), x, T * D);
    mlp_forward(be, l, out, T, a, s, dr);
    return;
  }
  // From here on every row is its own: only the kept rows are carried on.
  const auto n = static_cast<int64_t>(keep.size());
  Dropout dr_keep = dr;
  dr_keep.rows = keep;
  gather_rows(a.att.data(), keep, H * hd, a.att_keep);
  gather_rows(x, keep, D, s.x_keep);
  a.h.resize(n * D);
  proj_forward(be, l, Proj::O, a.att_keep.data(), a.h.data(), n, a, s, dr_keep);
  add_into(a.h.data(), s.x_keep.data(), n * D);
  s.out_keep.resize(n * D);
  mlp_forward(be, l, s.out_keep.data(), n, a, s, dr_keep);
  scatter_rows(s.out_keep.data(), keep, D, out, T);
}

void LlamaModel::mlp_forward(Backend& be, int64_t l, float* out, int64_t n, Acts& a, Scratch& s, const Dropout& dr) {
  const int64_t D = cfg_.dim, F = cfg_.ffn_dim;
  a.hn.resize(n * D);
  a.rstd2.resize(n);
  a.g.resize(n * F);
  a.u.resize(n * F);
  s.a.resize(n * F);
  be.rmsnorm_forward(a.h.data(), layers_[l].ffn_norm.data(), a.hn.data(), a.rstd2.data(), n, D, cfg_.rms_eps);
  constexpr std::array kGateUp{Proj::Gate, Proj::Up};
  projs_forward(be, l, kGateUp, a.hn.data(), std::array{a.g.data(), a.u.data()}, n, a, s, dr);
  be.swiglu_forward(a.g.data(), a.u.data(), s.a.data(), n * F);
  proj_forward(be, l, Proj::Down, s.a.data(), out, n, a, s, dr);
  add_into(out, a.h.data(), n * D);
}

void LlamaModel::mlp_backward(Backend& be, int64_t l, const float* dout, int64_t n, const Acts& a, Scratch& s,
                              const Dropout& dr) {
  const int64_t D = cfg_.dim, F = cfg_.ffn_dim;
  // The product is recomputed, not stored.
  s.a.resize(n * F);
  be.swiglu_forward(a.g.data(), a.u.data(), s.a.data(), n * F);
  zero(s.da, n * F);
  proj_backward(be, l, Proj::Down, s.a.data(), dout, s.da.data(), n, a, s, dr);
  s.dg.resize(n * F);
  s.du.resize(n * F);
  be.swiglu_backward(a.g.data(), a.u.data(), s.da.data(), s.dg.data(), s.du.data(), n * F);
  zero(s.dtmp, n * D);
  proj_backward(be, l, Proj::Gate, a.hn.data(), s.dg.data(), s.dtmp.data(), n, a, s, dr);
  proj_backward(be, l, Proj::Up, a.hn.data(), s.du.data(), s.dtmp.data(), n, a, s, dr);
  s.dh.resize(n * D);
  be.rmsnorm_backward(s.dtmp.data(), a.h.data(), layers_[l].ffn_norm.data(), a.rstd2.data(), s.dh.data(),
                      full_ ? grads_[l].ffn_norm.data() : nullptr, n, D);
  add_into(s.dh.data(), dout, n * D);
}

void LlamaModel::layer_backward(Backend& be, int64_t l, const float* x, float* dres, const Batch& b, const Acts& a,
                                Scratch& s, const Dropout& dr, std::span<const int64_t> keep) {
  const int64_t T = b.size(), D = cfg_.dim, hd = cfg_.head_dim;
  const int H = static_cast<int>(cfg_.n_heads), KV = static_cast<int>(cfg_.n_kv_heads);
  float* dnorm_attn = full_ ? grads_[l].attn_norm.data() : nullptr;

  // MLP and the attention's output projection (h = x + o(att)), at the rows the forward ran.
  const float* dh = nullptr;  // the gradient w.r.t. h at every row
  if (keep.empty()) {
    mlp_backward(be, l, dres, T, a, s, dr);
    zero(s.datt, T * H * hd);
    proj_backward(be, l, Proj::O, a.att.data(), s.dh.data(), s.datt.data(), T, a, s, dr);
    dh = s.dh.data();
  } else {
    const auto n = static_cast<int64_t>(keep.size());
    Dropout dr_keep = dr;
    dr_keep.rows = keep;
    gather_rows(dres, keep, D, s.dres_keep);
    mlp_backward(be, l, s.dres_keep.data(), n, a, s, dr_keep);
    zero(s.datt_keep, n * H * hd);
    proj_backward(be, l, Proj::O, a.att_keep.data(), s.dh.data(), s.datt_keep.data(), n, a, s, dr_keep);
    s.datt.resize(T * H * hd);
    scatter_rows(s.datt_keep.data(), keep, H * hd, s.datt.data(), T);
    s.dh_all.resize(T * D);
    scatter_rows(s.dh.data(), keep, D, s.dh_all.data(), T);
    dh = s.dh_all.data();
  }

  // Attention: h = x + o(attn(rope(q(xn)), rope(k(xn)), v(xn))).
  s.dq.resize(T * H * hd);
  s.dk.resize(T * KV * hd);
  s.dv.resize(T * KV * hd);
  be.attention_backward(a.q.data(), a.k.data(), a.v.data(), a.att.data(), a.lse.data(), s.datt.data(), s.dq.data(),
                        s.dk.data(), s.dv.data(), b.cu_seqlens, H, KV, static_cast<int>(hd));
  be.rope(s.dq.data(), b.positions.data(), T, H, static_cast<int>(hd), inv_freq_.data(), true);
  be.rope(s.dk.data(), b.positions.data(), T, KV, static_cast<int>(hd), inv_freq_.data(), true);
  zero(s.dtmp, T * D);
  proj_backward(be, l, Proj::Q, a.xn.data(), s.dq.data(), s.dtmp.data(), T, a, s, dr);
  proj_backward(be, l, Proj::K, a.xn.data(), s.dk.data(), s.dtmp.data(), T, a, s, dr);
  proj_backward(be, l, Proj::V, a.xn.data(), s.dv.data(), s.dtmp.data(), T, a, s, dr);
  be.rmsnorm_backward(s.dtmp.data(), x, layers_[l].attn_norm.data(), a.rstd1.data(), dres, dnorm_attn, T, D);
  add_into(dres, dh, T * D);
}

// Attention of one new token against the cached keys/values (the new ones already appended).
void LlamaModel::cached_attention(Backend& be, int64_t l, const float* q, float* out, KvCache& cache) {
  const int64_t hd = cfg_.head_dim;
  be.attention_decode(q, cache.k_[l].data(), cache.v_[l].data(), cache.cap_ * hd, cache.len_ + 1, out,
                      static_cast<int>(cfg_.n_heads), static_cast<int>(cfg_.n_kv_heads), static_cast<int>(hd));
}

// ---------------------------------------------------------------------------------------------
// Output head, only at the rows that need it: never a [T, vocab] tensor.

namespace {

// Turns cross_entropy's one-hot result for a row into a soft target's: the gradient
// (p - onehot) * scale becomes (p - q) * scale, and the loss -sum_k q_k log p_k, from the row's
// log-sum-exp and its logits at the target ids (saved before cross_entropy overwrote them).
float apply_soft_target(float* grad, const SoftTarget& st, int32_t hard, double lse, const float* id_logits,
                        float scale) {
  grad[hard] += scale;
  double loss = 0;
  for (size_t k = 0; k < st.ids.size(); ++k) {
    grad[st.ids[k]] -= st.probs[k] * scale;
    loss -= static_cast<double>(st.probs[k]) * (static_cast<double>(id_logits[k]) - lse);
  }
  return static_cast<float>(loss);
}

// For each of `rows` (ascending), the soft target at that position or nullptr.
std::vector<const SoftTarget*> soft_targets_of(std::span<const int64_t> rows, std::span<const SoftTarget> soft) {
  std::vector<const SoftTarget*> of(rows.size(), nullptr);
  for (const SoftTarget& st : soft) {
    const auto it = std::lower_bound(rows.begin(), rows.end(), st.position);
    if (it != rows.end() && *it == st.position) of[static_cast<size_t>(it - rows.begin())] = &st;
  }
  return of;
}

}  // namespace

float LlamaModel::head_loss(Backend& be, const float* h, std::span<const int64_t> rows, const int32_t* targets,
                            std::span<const SoftTarget> soft, float grad_scale, float* dh, Scratch& s) {
  const int64_t M = static_cast<int64_t>(rows.size()), D = cfg_.dim, V = cfg_.vocab_size;
  s.hsel.resize(M * D);
  s.hnsel.resize(M * D);
  s.rstd_sel.resize(M);
  s.tsel.resize(M);
  for (int64_t i = 0; i < M; ++i) {
    std::copy_n(h + rows[i] * D, D, s.hsel.data() + i * D);
    s.tsel[i] = targets[rows[i]];
  }
  be.rmsnorm_forward(s.hsel.data(), norm_.data(), s.hnsel.data(), s.rstd_sel.data(), M, D, cfg_.rms_eps);
  if (dh) zero(s.dhnsel, M * D);
  // Logits a few rows at a time (about 16 MiB), the head gradient taken right away.
  const int64_t chunk = std::clamp<int64_t>((int64_t{4} << 20) / V, 1, M);
  s.logits.resize(chunk * V);
  s.losses.resize(M);
  const Weight& W = head();
  const std::vector<const SoftTarget*> soft_of = soft_targets_of(rows, soft);
  std::vector<float> id_logits;
  for (int64_t r0 = 0; r0 < M; r0 += chunk) {
    const int64_t n = std::min(chunk, M - r0);
    be.linear_forward(W, s.hnsel.data() + r0 * D, s.logits.data(), n, 0.0f);
    token_rows_logits(s.hnsel.data() + r0 * D, s.logits.data(), n);
    for (int64_t i = r0; i < r0 + n; ++i) {  // keep what cross_entropy overwrites
      if (!soft_of[i]) continue;
      const float* row = s.logits.data() + (i - r0) * V;
      id_logits.push_back(row[s.tsel[i]]);
      for (int32_t id : soft_of[i]->ids) id_logits.push_back(row[id]);
    }
    be.cross_entropy(s.logits.data(), s.tsel.data() + r0, s.losses.data() + r0, n, V, grad_scale);
    size_t at = 0;
    for (int64_t i = r0; i < r0 + n; ++i) {
      if (!soft_of[i]) continue;
      const double lse = static_cast<double>(s.losses[i]) + id_logits[at];  // loss = lse - logit[target]
      s.losses[i] = apply_soft_target(s.logits.data() + (i - r0) * V, *soft_of[i], s.tsel[i], lse,
                                      id_logits.data() + at + 1, grad_scale);
      at += 1 + soft_of[i]->ids.size();
    }
    id_logits.clear();
    if (!dh) continue;
    be.linear_backward_input(W, s.logits.data(), s.dhnsel.data() + r0 * D, n);
    token_rows_head_backward(s.logits.data(), s.hnsel.data() + r0 * D, s.dhnsel.data() + r0 * D, n);
    if (full_) {
      float* dW = cfg_.tied_embeddings ? d_embed_.data() : d_head_.data();
      be.gemm(true, false, V, D, n, 1.0f, s.logits.data(), s.hnsel.data() + r0 * D, 1.0f, dW);
    }
  }
  double total = 0.0;
  for (int64_t i = 0; i < M; ++i) total += s.losses[i];
  if (dh) {
    s.dhsel.resize(M * D);
    be.rmsnorm_backward(s.dhnsel.data(), s.hsel.data(), norm_.data(), s.rstd_sel.data(), s.dhsel.data(),
                        full_ ? d_norm_.data() : nullptr, M, D);
    for (int64_t i = 0; i < M; ++i) add_into(dh + rows[i] * D, s.dhsel.data() + i * D, D);
  }
  return static_cast<float>(total);
}

std::vector<float> LlamaModel::head_logits(Backend& be, const float* h, std::span<const int64_t> rows, Scratch& s) {
  const int64_t M = static_cast<int64_t>(rows.size()), D = cfg_.dim;
  s.hsel.resize(M * D);
  s.hnsel.resize(M * D);
  s.rstd_sel.resize(M);
  for (int64_t i = 0; i < M; ++i) std::copy_n(h + rows[i] * D, D, s.hsel.data() + i * D);
  be.rmsnorm_forward(s.hsel.data(), norm_.data(), s.hnsel.data(), s.rstd_sel.data(), M, D, cfg_.rms_eps);
  std::vector<float> logits(M * cfg_.vocab_size);
  be.linear_forward(head(), s.hnsel.data(), logits.data(), M, 0.0f);
  token_rows_logits(s.hnsel.data(), logits.data(), M);
  return logits;
}

// ---------------------------------------------------------------------------------------------
// Passes

namespace {
// Inference passes reuse one set of buffers per thread: fresh multi-megabyte vectors every pass
// cost page faults and zeroing that outweighed what batching prompts gains (docs/benchmarks.md).
struct InferenceBuffers {
  LlamaModel::Acts acts;
  LlamaModel::Scratch scratch;
  std::vector<float> h, next;
};
InferenceBuffers& inference_buffers() {
  thread_local InferenceBuffers buffers;
  return buffers;
}
}  // namespace

// The last hidden state of b's tokens (in the thread's buffers, valid until the next pass).
const float* LlamaModel::run_forward(Backend& be, const Batch& b, std::span<KvCache* const> caches,
                                     std::span<const int64_t> rows) {
  const int64_t T = b.size(), D = cfg_.dim;
  InferenceBuffers& w = inference_buffers();
  w.h.resize(T * D);
  w.next.resize(T * D);
  // The last layer's position-wise half runs only at the rows read (ascending, once each).
  std::vector<int64_t> keep(rows.begin(), rows.end());
  std::sort(keep.begin(), keep.end());
  keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
  if (static_cast<int64_t>(keep.size()) == T) keep.clear();
  embed_tokens(be, b.tokens.data(), w.h.data(), T);
  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    const bool last = l == cfg_.n_layers - 1;
    layer_forward(be, l, w.h.data(), w.next.data(), b, w.acts, w.scratch, Dropout{}, caches,
                  last ? std::span<const int64_t>(keep) : std::span<const int64_t>());
    std::swap(w.h, w.next);
  }
  return w.h.data();
}

namespace {
std::vector<int64_t> masked_rows(const Batch& b) {
  std::vector<int64_t> rows;
  for (int64_t t = 0; t < b.size(); ++t) {
    if (b.loss_mask[t]) rows.push_back(t);
  }
  return rows;
}
}  // namespace

float LlamaModel::forward_backward(const Batch& b, Backend& be, const TrainOptions& opt) {
  b.validate(cfg_.vocab_size, cfg_.max_seq_len, "training batch");
  const std::vector<int64_t> rows = masked_rows(b);
  require(!rows.empty(), "training batch: no completion (loss-masked) tokens");
  require(full_ || has_lora() || has_trainable_tokens(),
          "forward_backward: nothing to train (no adapters or token rows, not in full mode)");
  const int64_t T = b.size(), D = cfg_.dim, NL = cfg_.n_layers;
  const Dropout dr{.on = true, .seed = opt.dropout_seed, .step = opt.step, .rows = {}};
  Scratch s;
  // Inputs of every layer plus the final hidden state; with checkpointing these are all that
  // is kept, and one Acts is reused for every layer's recomputation.
  std::vector<std::vector<float>> xs(NL + 1, std::vector<float>(T * D));
  std::vector<Acts> acts(opt.checkpoint ? 1 : NL);
  embed_tokens(be, b.tokens.data(), xs[0].data(), T);
  // The head reads the last layer's output at `rows` only: there its position-wise half runs alone.
  const bool prune = !opt.last_layer_every_row && static_cast<int64_t>(rows.size()) < T;
  const auto keep = [&](int64_t l) {
    return l == NL - 1 && prune ? std::span<const int64_t>(rows) : std::span<const int64_t>();
  };
  for (int64_t l = 0; l < NL; ++l) {
    layer_forward(be, l, xs[l].data(), xs[l + 1].data(), b, acts[opt.checkpoint ? 0 : l], s, dr, {}, keep(l));
  }
  std::vector<float> dres(T * D, 0.0f);
  const float inv_m = 1.0f / static_cast<float>(rows.size());
  const float total = head_loss(be, xs[NL].data(), rows, b.targets.data(), b.soft_targets, inv_m, dres.data(), s);
  for (int64_t l = NL - 1; l >= 0; --l) {
    Acts& a = acts[opt.checkpoint ? 0 : l];
    if (opt.checkpoint) {
      s.out.resize(T * D);
      layer_forward(be, l, xs[l].data(), s.out.data(), b, a, s, dr, {}, keep(l));
    }
    layer_backward(be, l, xs[l].data(), dres.data(), b, a, s, dr, keep(l));
  }
  if (full_) be.embedding_backward(b.tokens.data(), dres.data(), d_embed_.data(), T, D);
  for (int64_t t = 0; !tokens_.empty() && t < T; ++t) {
    const int32_t j = tokens_.slot[b.tokens[t]];
    if (j >= 0) add_into(tokens_.d_embed.data() + j * D, dres.data() + t * D, D);
  }
  return total * inv_m;
}

float LlamaModel::loss(const Batch& b, Backend& be) {
  b.validate(cfg_.vocab_size, cfg_.max_seq_len, "evaluation batch");
  const std::vector<int64_t> rows = masked_rows(b);
  require(!rows.empty(), "evaluation batch: no completion (loss-masked) tokens");
  const float* h = run_forward(be, b, {}, rows);
  const float inv_m = 1.0f / static_cast<float>(rows.size());
  return head_loss(be, h, rows, b.targets.data(), b.soft_targets, inv_m, nullptr, inference_buffers().scratch) * inv_m;
}

std::vector<float> LlamaModel::logits(const Batch& batch, std::span<const int64_t> rows, Backend& be) {
  // Inference batches need no targets; blank ones keep the one validation path.
  Batch b = batch;
  if (b.targets.empty()) b.targets.assign(b.tokens.size(), 0);
  if (b.loss_mask.empty()) b.loss_mask.assign(b.tokens.size(), 0);
  b.validate(cfg_.vocab_size, cfg_.max_seq_len, "inference batch");
  for (int64_t r : rows) {
    require(r >= 0 && r < b.size(),
            "inference batch: row " + std::to_string(r) + " outside [0, " + std::to_string(b.size()) + ")");
  }
  const float* h = run_forward(be, b, {}, rows);
  return head_logits(be, h, rows, inference_buffers().scratch);
}

// ---------------------------------------------------------------------------------------------
// Incremental generation

KvCache LlamaModel::make_cache(int64_t capacity) const {
  require(capacity >= 1 && capacity <= cfg_.max_seq_len,
          "kv cache capacity " + std::to_string(capacity) + " outside [1, " + std::to_string(cfg_.max_seq_len) + "]");
  KvCache c;
  c.cap_ = capacity;
  const size_t n = static_cast<size_t>(cfg_.n_kv_heads * capacity * cfg_.head_dim);
  c.k_.assign(cfg_.n_layers, std::vector<float>(n));
  c.v_.assign(cfg_.n_layers, std::vector<float>(n));
  return c;
}

std::vector<float> LlamaModel::forward_cached(std::span<KvCache* const> caches, const Batch& b, Backend& be) {
  const int64_t n = b.n_sequences();
  require(n >= 1 && static_cast<int64_t>(caches.size()) == n, "cached pass: one cache per sequence");
  const bool decoding = caches[0]->len_ > 0;
  for (int64_t i = 0; i < n; ++i) {
    const KvCache& c = *caches[i];
    const int64_t len = b.cu_seqlens[i + 1] - b.cu_seqlens[i];
    require(static_cast<int64_t>(c.k_.size()) == cfg_.n_layers, "cached pass: a cache made for another model");
    require(c.len_ + len <= c.cap_, [&] {
      return "cached pass: " + std::to_string(len) + " tokens overflow a kv cache (" + std::to_string(c.len_) + " of " +
             std::to_string(c.cap_) + " used)";
    });
    require((c.len_ > 0) == decoding && (!decoding || len == 1),
            "cached pass: prompts need empty caches; sequences with cached tokens take one token at a time");
  }
  std::vector<KvCache*> sorted(caches.begin(), caches.end());  // a batch may carry thousands of them
  std::sort(sorted.begin(), sorted.end());
  require(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end(), "cached pass: a cache given twice");
  b.validate(cfg_.vocab_size, cfg_.max_seq_len, "cached pass");
  std::vector<int64_t> last(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) last[i] = b.cu_seqlens[i + 1] - 1;
  const float* h = run_forward(be, b, caches, last);
  for (int64_t i = 0; i < n; ++i) caches[i]->len_ += b.cu_seqlens[i + 1] - b.cu_seqlens[i];
  return head_logits(be, h, last, inference_buffers().scratch);
}

namespace {
// One batch of each sequence's next tokens, positioned after what its cache holds.
Batch cached_batch(std::span<const std::vector<int32_t>> seqs, std::span<KvCache* const> caches) {
  std::vector<std::span<const int32_t>> prompts(seqs.begin(), seqs.end());
  std::vector<int64_t> offsets;
  for (const KvCache* c : caches) offsets.push_back(c->length());
  return prompt_batch(prompts, offsets);
}
}  // namespace

std::vector<float> LlamaModel::prefill_many(std::span<KvCache* const> caches,
                                            std::span<const std::vector<int32_t>> prompts, Backend& be) {
  require(caches.size() == prompts.size(), "prefill: one cache per prompt");
  for (const auto& p : prompts) require(!p.empty(), "prefill: an empty prompt");
  return forward_cached(caches, cached_batch(prompts, caches), be);
}

std::vector<float> LlamaModel::decode_many(std::span<KvCache* const> caches, std::span<const int32_t> tokens,
                                           Backend& be) {
  require(caches.size() == tokens.size(), "decode: one cache per token");
  std::vector<std::vector<int32_t>> seqs;
  for (int32_t t : tokens) seqs.push_back({t});
  return forward_cached(caches, cached_batch(seqs, caches), be);
}

std::vector<float> LlamaModel::prefill(KvCache& cache, std::span<const int32_t> tokens, Backend& be) {
  require(!tokens.empty(), "prefill: no tokens");
  require(cache.len_ + static_cast<int64_t>(tokens.size()) <= cache.cap_,
          "prefill: " + std::to_string(tokens.size()) + " tokens overflow the kv cache (" + std::to_string(cache.len_) +
              " of " + std::to_string(cache.cap_) + " used)");
  KvCache* one[] = {&cache};
  // An empty cache takes the whole prompt in one causal pass; after that tokens go one by one.
  if (cache.len_ == 0) return prefill_many(one, std::vector<std::vector<int32_t>>{{tokens.begin(), tokens.end()}}, be);
  std::vector<float> out;
  for (int32_t t : tokens) out = decode_many(one, std::span<const int32_t>(&t, 1), be);
  return out;
}

std::vector<float> LlamaModel::decode(KvCache& cache, int32_t token, Backend& be) {
  return prefill(cache, std::span<const int32_t>(&token, 1), be);
}

}  // namespace pricer
