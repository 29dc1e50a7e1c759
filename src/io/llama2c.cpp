// llama2.c's legacy checkpoint (.bin, "version 0"): seven int32 header fields, then f32 arrays
// in a fixed order, every per-layer array stacked over layers:
//   token_embedding [vocab, dim], rms_att [L, dim], wq [L, dim, dim], wk [L, kv_dim, dim],
//   wv [L, kv_dim, dim], wo [L, dim, dim], rms_ffn [L, dim], w1 [L, hidden, dim],
//   w2 [L, dim, hidden], w3 [L, hidden, dim], rms_final [dim], freq_cis_real/imag
//   [seq_len, head_size / 2] each (unused: RoPE is recomputed), wcls [vocab, dim] when
//   vocab_size is negative (an unshared classifier).
// llama2.c rotates interleaved pairs (2j, 2j + 1); q/k rows are permuted to Hugging Face's
// rotate-half order so the model runs as an ordinary HF-layout Llama.
#include <cstring>

#include "core/error.h"
#include "io/bytes.h"
#include "io/model_common.h"
#include "io/model_file.h"

namespace pricer {

using namespace io_detail;

namespace {

constexpr uint32_t kVersionedMagic = 0x616b3432;  // "ak42": llama2.c's newer export versions

// a * b with overflow reported as an Error naming the source.
int64_t mul(int64_t a, int64_t b, const std::string& source) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) throw Error(source + ": header sizes overflow");
  return r;
}

}  // namespace

ModelFile read_llama2c(std::span<const uint8_t> bytes, const std::string& name, std::optional<DType> base_dtype) {
  ByteReader r(bytes, name);
  r.set_context("header");
  if (bytes.size() >= 4) {
    uint32_t magic = 0;
    std::memcpy(&magic, bytes.data(), 4);
    if (magic == kVersionedMagic) r.fail("llama2.c versioned export (magic ak42) is not supported; use the legacy format");
  }
  int32_t h[7];
  for (int32_t& v : h) v = r.read<int32_t>();
  const int64_t dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kv_heads = h[4], seq = h[6];
  const bool shared = h[5] > 0;
  const int64_t vocab = h[5] < 0 ? -static_cast<int64_t>(h[5]) : h[5];

  ModelFile m;
  m.format = "llama2c";
  m.source = name;
  ModelConfig& c = m.config;
  c.architecture = "llama";
  c.dim = dim;
  c.ffn_dim = hidden;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = heads > 0 && dim % heads == 0 ? dim / heads : 0;
  c.vocab_size = vocab;
  c.max_seq_len = seq;
  c.rms_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.tied_embeddings = shared;
  c.bos_id = vocab > 1 ? 1 : -1;  // llama2.c's tokenizer: 1 = <s>, 2 = </s>
  c.eos_id = vocab > 2 ? 2 : -1;
  if (heads > 0 && dim % heads != 0) {
    throw Error(name + ": header: dim " + std::to_string(dim) + " is not a multiple of n_heads " + std::to_string(heads));
  }
  c.validate(name);
  m.metadata = {{"dim", dim},           {"hidden_dim", hidden}, {"n_layers", layers}, {"n_heads", heads},
                {"n_kv_heads", kv_heads}, {"vocab_size", h[5]},  {"seq_len", seq},     {"shared_classifier", shared}};

  const int64_t hs = c.head_dim, kv_dim = kv_heads * hs;
  // Sizes in floats, in file order.
  const int64_t sizes[] = {
      mul(vocab, dim, name),                                      // token_embedding
      mul(layers, dim, name),                                     // rms_att
      mul(layers, mul(dim, dim, name), name),                     // wq
      mul(layers, mul(kv_dim, dim, name), name),                  // wk
      mul(layers, mul(kv_dim, dim, name), name),                  // wv
      mul(layers, mul(dim, dim, name), name),                     // wo
      mul(layers, dim, name),                                     // rms_ffn
      mul(layers, mul(hidden, dim, name), name),                  // w1
      mul(layers, mul(dim, hidden, name), name),                  // w2
      mul(layers, mul(hidden, dim, name), name),                  // w3
      dim,                                                        // rms_final
      mul(seq, hs, name),                                         // freq_cis real + imag
      shared ? 0 : mul(vocab, dim, name),                         // wcls
  };
  int64_t total = 0;
  for (int64_t s : sizes) {
    if (__builtin_add_overflow(total, s, &total)) throw Error(name + ": header sizes overflow");
  }
  const int64_t expect = 28 + mul(total, 4, name);
  if (static_cast<int64_t>(bytes.size()) != expect) {
    throw Error(name + ": file is " + std::to_string(bytes.size()) + " bytes but its header (dim " +
                std::to_string(dim) + ", hidden " + std::to_string(hidden) + ", layers " + std::to_string(layers) +
                ", heads " + std::to_string(heads) + "/" + std::to_string(kv_heads) + ", vocab " +
                std::to_string(h[5]) + ", seq_len " + std::to_string(seq) + ") implies " + std::to_string(expect) +
                (static_cast<int64_t>(bytes.size()) < expect ? " (truncated)" : ""));
  }

  const auto expected = expected_shapes(c);
  size_t offset = 28;
  auto take = [&](int64_t floats) {
    auto s = bytes.subspan(offset, static_cast<size_t>(floats) * 4);
    offset += s.size();
    return s;
  };
  // Adds layer l's slice of a stacked array; q/k slices are permuted to rotate-half order.
  auto add = [&](const std::string& hf, std::span<const uint8_t> data, int64_t rows, int64_t cols, int64_t rope_heads) {
    std::vector<uint8_t> permuted;
    if (rope_heads > 0) {
      permuted = rope_rows_to_hf(data, rope_heads, hs, static_cast<size_t>(cols) * 4);
      data = permuted;
    }
    add_model_tensor(m, expected, hf, weight_from_bytes(DType::F32, rows, cols, data), base_dtype,
                     "tensor '" + hf + "'");
  };
  auto stacked = [&](const char* suffix, int64_t rows, int64_t cols, int64_t rope_heads) {
    auto all = take(mul(layers, mul(rows, cols, name), name));
    const size_t per = all.size() / static_cast<size_t>(layers);
    for (int64_t l = 0; l < layers; ++l) {
      add(layer_tensor(l, suffix), all.subspan(static_cast<size_t>(l) * per, per), rows, cols, rope_heads);
    }
  };
  add("model.embed_tokens.weight", take(sizes[0]), vocab, dim, 0);
  stacked("input_layernorm.weight", 1, dim, 0);
  stacked("self_attn.q_proj.weight", dim, dim, heads);
  stacked("self_attn.k_proj.weight", kv_dim, dim, kv_heads);
  stacked("self_attn.v_proj.weight", kv_dim, dim, 0);
  stacked("self_attn.o_proj.weight", dim, dim, 0);
  stacked("post_attention_layernorm.weight", 1, dim, 0);
  stacked("mlp.gate_proj.weight", hidden, dim, 0);
  stacked("mlp.down_proj.weight", dim, hidden, 0);
  stacked("mlp.up_proj.weight", hidden, dim, 0);
  add("model.norm.weight", take(dim), 1, dim, 0);
  take(sizes[11]);
  if (!shared) add("lm_head.weight", take(sizes[12]), vocab, dim, 0);
  check_model_tensors(c, m.tensors, name);
  return m;
}

}  // namespace pricer
