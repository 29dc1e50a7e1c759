// llama2.c's legacy checkpoint (.bin, "version 0"): seven int32 header fields, then f32 arrays
// in a fixed order, every per-layer array stacked over layers:
//   token_embedding [vocab, dim], rms_att [L, dim], wq [L, dim, dim], wk [L, kv_dim, dim],
//   wv [L, kv_dim, dim], wo [L, dim, dim], rms_ffn [L, dim], w1 [L, hidden, dim],
//   w2 [L, dim, hidden], w3 [L, hidden, dim], rms_final [dim], freq_cis_real/imag
//   [seq_len, head_size / 2] each (unused: RoPE is recomputed), wcls [vocab, dim] when
//   vocab_size is negative (an unshared classifier).
// llama2.c rotates interleaved pairs (2j, 2j + 1); q/k rows are permuted to Hugging Face's
// rotate-half order so the model runs as an ordinary HF-layout Llama.
#include <array>
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

// The seven int32 header fields, widened, with the sign of vocab_size split off.
struct Llama2cHeader {
  int64_t dim, hidden, layers, heads, kv_heads, seq;
  int32_t raw_vocab;  // as stored, for messages and metadata: negative when the classifier is unshared
  int64_t vocab;
  bool shared;
};

Llama2cHeader read_header(ByteReader& r, std::span<const uint8_t> bytes) {
  if (bytes.size() >= 4) {
    uint32_t magic = 0;
    std::memcpy(&magic, bytes.data(), 4);
    if (magic == kVersionedMagic)
      r.fail("llama2.c versioned export (magic ak42) is not supported; use the legacy format");
  }
  int32_t h[7];
  for (int32_t& v : h) v = r.read<int32_t>();
  return {.dim = h[0],
          .hidden = h[1],
          .layers = h[2],
          .heads = h[3],
          .kv_heads = h[4],
          .seq = h[6],
          .raw_vocab = h[5],
          .vocab = h[5] < 0 ? -static_cast<int64_t>(h[5]) : h[5],
          .shared = h[5] > 0};
}

ModelConfig config_from_header(const Llama2cHeader& h) {
  ModelConfig c;
  c.architecture = "llama";
  c.dim = h.dim;
  c.ffn_dim = h.hidden;
  c.n_layers = h.layers;
  c.n_heads = h.heads;
  c.n_kv_heads = h.kv_heads;
  c.head_dim = h.heads > 0 && h.dim % h.heads == 0 ? h.dim / h.heads : 0;
  c.vocab_size = h.vocab;
  c.max_seq_len = h.seq;
  c.rms_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.tied_embeddings = h.shared;
  c.bos_id = h.vocab > 1 ? 1 : -1;  // llama2.c's tokenizer: 1 = <s>, 2 = </s>
  c.eos_id = h.vocab > 2 ? 2 : -1;
  return c;
}

nlohmann::json header_metadata(const Llama2cHeader& h) {
  return {{"dim", h.dim},       {"hidden_dim", h.hidden},       {"n_layers", h.layers},
          {"n_heads", h.heads}, {"n_kv_heads", h.kv_heads},     {"vocab_size", h.raw_vocab},
          {"seq_len", h.seq},   {"shared_classifier", h.shared}};
}

// Sizes in floats of the file's arrays, in file order (index 0 the token embedding, 11 freq_cis,
// 12 wcls); every product checked for overflow since the header is untrusted.
std::array<int64_t, 13> array_sizes(const Llama2cHeader& h, int64_t hs, const std::string& name) {
  const int64_t dim = h.dim, hidden = h.hidden, layers = h.layers, vocab = h.vocab, kv_dim = h.kv_heads * hs;
  return {
      mul(vocab, dim, name),  // token_embedding
      mul(layers, dim, name),  // rms_att
      mul(layers, mul(dim, dim, name), name),  // wq
      mul(layers, mul(kv_dim, dim, name), name),  // wk
      mul(layers, mul(kv_dim, dim, name), name),  // wv
      mul(layers, mul(dim, dim, name), name),  // wo
      mul(layers, dim, name),  // rms_ffn
      mul(layers, mul(hidden, dim, name), name),  // w1
      mul(layers, mul(dim, hidden, name), name),  // w2
      mul(layers, mul(hidden, dim, name), name),  // w3
      dim,  // rms_final
      mul(h.seq, hs, name),  // freq_cis real + imag
      h.shared ? 0 : mul(vocab, dim, name),  // wcls
  };
}

// The header fixes the file's exact size, so truncation (or trailing bytes) is caught before any tensor is read.
void check_file_size(size_t file_size, const std::array<int64_t, 13>& sizes, const Llama2cHeader& h,
                     const std::string& name) {
  int64_t total = 0;
  for (int64_t s : sizes) {
    if (__builtin_add_overflow(total, s, &total)) throw Error(name + ": header sizes overflow");
  }
  const int64_t expect = 28 + mul(total, 4, name);
  if (static_cast<int64_t>(file_size) != expect) {
    throw Error(name + ": file is " + std::to_string(file_size) + " bytes but its header (dim " +
                std::to_string(h.dim) + ", hidden " + std::to_string(h.hidden) + ", layers " +
                std::to_string(h.layers) + ", heads " + std::to_string(h.heads) + "/" + std::to_string(h.kv_heads) +
                ", vocab " + std::to_string(h.raw_vocab) + ", seq_len " + std::to_string(h.seq) + ") implies " +
                std::to_string(expect) + (static_cast<int64_t>(file_size) < expect ? " (truncated)" : ""));
  }
}

// Walks the f32 arrays after the header in file order, adding each to the model.
class TensorReader {
 public:
  TensorReader(std::span<const uint8_t> bytes, ModelFile& m, std::optional<DType> base_dtype)
      : bytes_(bytes), m_(m), expected_(expected_shapes(m.config)), base_dtype_(base_dtype) {}

  std::span<const uint8_t> take(int64_t floats) {
    auto s = bytes_.subspan(offset_, static_cast<size_t>(floats) * 4);
    offset_ += s.size();
    return s;
  }

  // Adds one tensor; q/k slices (rope_heads > 0) are permuted to rotate-half order.
  void add(const std::string& hf, std::span<const uint8_t> data, int64_t rows, int64_t cols, int64_t rope_heads) {
    std::vector<uint8_t> permuted;
    if (rope_heads > 0) {
      permuted = rope_rows_to_hf(data, rope_heads, m_.config.head_dim, static_cast<size_t>(cols) * 4);
      data = permuted;
    }
    add_model_tensor(m_, expected_, hf, weight_from_bytes(DType::F32, rows, cols, data), base_dtype_,
                     "tensor '" + hf + "'");
  }

  // Adds every layer's slice of an array stacked over layers.
  void add_stacked(const char* suffix, int64_t rows, int64_t cols, int64_t rope_heads) {
    const int64_t layers = m_.config.n_layers;
    auto all = take(mul(layers, mul(rows, cols, m_.source), m_.source));
    const size_t per = all.size() / static_cast<size_t>(layers);
    for (int64_t l = 0; l < layers; ++l) {
      add(layer_tensor(l, suffix), all.subspan(static_cast<size_t>(l) * per, per), rows, cols, rope_heads);
    }
  }

 private:
  std::span<const uint8_t> bytes_;
  size_t offset_ = 28;  // just past the header
  ModelFile& m_;
  const std::map<std::string, Shape> expected_;
  std::optional<DType> base_dtype_;
};

void read_tensors(std::span<const uint8_t> bytes, ModelFile& m, const std::array<int64_t, 13>& sizes,
                  std::optional<DType> base_dtype) {
  const ModelConfig& c = m.config;
  const int64_t dim = c.dim, hidden = c.ffn_dim, kv_dim = c.n_kv_heads * c.head_dim;
  TensorReader in(bytes, m, base_dtype);
  in.add("model.embed_tokens.weight", in.take(sizes[0]), c.vocab_size, dim, 0);
  in.add_stacked("input_layernorm.weight", 1, dim, 0);
  in.add_stacked("self_attn.q_proj.weight", dim, dim, c.n_heads);
  in.add_stacked("self_attn.k_proj.weight", kv_dim, dim, c.n_kv_heads);
  in.add_stacked("self_attn.v_proj.weight", kv_dim, dim, 0);
  in.add_stacked("self_attn.o_proj.weight", dim, dim, 0);
  in.add_stacked("post_attention_layernorm.weight", 1, dim, 0);
  in.add_stacked("mlp.gate_proj.weight", hidden, dim, 0);
  in.add_stacked("mlp.down_proj.weight", dim, hidden, 0);
  in.add_stacked("mlp.up_proj.weight", hidden, dim, 0);
  in.add("model.norm.weight", in.take(dim), 1, dim, 0);
  in.take(sizes[11]);  // freq_cis: unused, RoPE is recomputed
  if (!c.tied_embeddings) in.add("lm_head.weight", in.take(sizes[12]), c.vocab_size, dim, 0);
}

}  // namespace

ModelFile read_llama2c(std::span<const uint8_t> bytes, const std::string& name, std::optional<DType> base_dtype) {
  ByteReader r(bytes, name);
  r.set_context("header");
  const Llama2cHeader h = read_header(r, bytes);

  ModelFile m;
  m.format = "llama2c";
  m.source = name;
  m.config = config_from_header(h);
  const ModelConfig& c = m.config;
  if (h.heads > 0 && h.dim % h.heads != 0) {
    throw Error(name + ": header: dim " + std::to_string(h.dim) + " is not a multiple of n_heads " +
                std::to_string(h.heads));
  }
  c.validate(name);
  m.metadata = header_metadata(h);

  const auto sizes = array_sizes(h, c.head_dim, name);
  check_file_size(bytes.size(), sizes, h, name);
  read_tensors(bytes, m, sizes, base_dtype);
  check_model_tensors(c, m.tensors, name);
  return m;
}

}  // namespace pricer
