// GGUF <-> ModelFile: llama.cpp's tensor names and "<arch>.*" keys, and the q/k row order.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "io/model_common.h"
#include "io/model_file.h"

namespace pricer {

using namespace io_detail;

namespace {

struct NamePair {
  const char* gguf;
  const char* hf;
};
constexpr NamePair kGlobalNames[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};
constexpr NamePair kLayerNames[] = {
    {"attn_norm.weight", "input_layernorm.weight"}, {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},   {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},   {"attn_output.weight", "self_attn.o_proj.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias"},       {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.bias", "self_attn.v_proj.bias"},       {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},        {"ffn_down.weight", "mlp.down_proj.weight"},
};
// llama.cpp's precomputed Llama 3 RoPE frequency divisors; folded into ModelConfig on load.
constexpr const char* kRopeFreqs = "rope_freqs.weight";
// Our own record of the Llama 3 RoPE scaling parameters (llama.cpp ignores unknown keys).
constexpr const char* kScalingFactor = "pricer.rope_scaling.factor";
constexpr const char* kScalingLow = "pricer.rope_scaling.low_freq_factor";
constexpr const char* kScalingHigh = "pricer.rope_scaling.high_freq_factor";
constexpr const char* kScalingOrig = "pricer.rope_scaling.original_max_position";

// "blk.<n>.<suffix>" (n written canonically) -> "model.layers.<n>.<hf suffix>"; nullopt otherwise.
std::optional<std::string> gguf_to_hf(const std::string& name) {
  for (const auto& p : kGlobalNames) {
    if (name == p.gguf) return std::string(p.hf);
  }
  if (!name.starts_with("blk.")) return std::nullopt;
  const size_t dot = name.find('.', 4);
  if (dot == std::string::npos) return std::nullopt;
  const std::string digits = name.substr(4, dot - 4);
  int64_t layer = 0;
  const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), layer);
  if (ec != std::errc() || ptr != digits.data() + digits.size() || std::to_string(layer) != digits) {
    return std::nullopt;
  }
  const std::string suffix = name.substr(dot + 1);
  for (const auto& p : kLayerNames) {
    if (suffix == p.gguf) return layer_tensor(layer, p.hf);
  }
  return std::nullopt;
}

std::string hf_to_gguf(const std::string& name) {
  for (const auto& p : kGlobalNames) {
    if (name == p.hf) return p.gguf;
  }
  const std::string prefix = "model.layers.";
  if (name.starts_with(prefix)) {
    const size_t dot = name.find('.', prefix.size());
    const std::string layer = name.substr(prefix.size(), dot - prefix.size());
    const std::string suffix = name.substr(dot + 1);
    for (const auto& p : kLayerNames) {
      if (suffix == p.hf) return "blk." + layer + "." + p.gguf;
    }
  }
  throw Error("GGUF export: no GGUF name for tensor '" + name + "'");
}

bool supported_arch(const std::string& a) { return a == "llama" || a == "qwen2"; }

// llama.cpp's convert script interleaves q/k rows for "llama" only; qwen2 keeps HF order.
bool permutes_qk(const std::string& arch) { return arch == "llama"; }

nlohmann::json metadata_json(const GgufFile& f) {
  constexpr size_t kMaxShown = 64;  // long arrays (vocabularies) are summarised
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [key, v] : f.metadata()) {
    if (v.is_array() && v.size() > kMaxShown) {
      j[key] = {{"array", gguf_type_name(v.elem)}, {"length", v.size()}};
      continue;
    }
    nlohmann::json items = nlohmann::json::array();
    for (size_t i = 0; i < v.size(); ++i) {
      switch (v.elem) {
        case GgufType::String: items.push_back(v.strings[i]); break;
        case GgufType::F32:
        case GgufType::F64: items.push_back(v.floats[i]); break;
        case GgufType::Bool: items.push_back(v.ints[i] != 0); break;
        default: items.push_back(v.ints[i]); break;
      }
    }
    j[key] = v.is_array() ? items : items[0];
  }
  return j;
}

ModelConfig config_from_gguf(const GgufFile& f) {
  ModelConfig c;
  c.architecture = f.get_string("general.architecture");
  if (!supported_arch(c.architecture)) {
    throw Error(f.source() + ": key 'general.architecture': architecture '" + c.architecture +
                "' is not supported (llama and qwen2 are)");
  }
  const std::string p = c.architecture + ".";
  c.dim = f.get_int(p + "embedding_length");
  c.n_layers = f.get_int(p + "block_count");
  c.ffn_dim = f.get_int(p + "feed_forward_length");
  c.n_heads = f.get_int(p + "attention.head_count");
  c.n_kv_heads = f.get_int_opt(p + "attention.head_count_kv").value_or(c.n_heads);
  c.head_dim = f.get_int_opt(p + "attention.key_length").value_or(c.n_heads > 0 ? c.dim / c.n_heads : 0);
  if (auto vl = f.get_int_opt(p + "attention.value_length"); vl && *vl != c.head_dim) {
    throw Error(f.source() + ": key '" + p + "attention.value_length': " + std::to_string(*vl) +
                " differs from the key length " + std::to_string(c.head_dim) + " (not supported)");
  }
  if (auto rd = f.get_int_opt(p + "rope.dimension_count"); rd && *rd != c.head_dim) {
    throw Error(f.source() + ": key '" + p + "rope.dimension_count': partial rotary embedding (" + std::to_string(*rd) +
                " of " + std::to_string(c.head_dim) + " dimensions) is not supported");
  }
  c.max_seq_len = f.get_int_opt(p + "context_length").value_or(c.max_seq_len);
  c.rms_eps = static_cast<float>(f.get_float(p + "attention.layer_norm_rms_epsilon"));
  c.rope_theta = static_cast<float>(f.get_float_opt(p + "rope.freq_base").value_or(10000.0));
  if (auto t = f.get_string_opt(p + "rope.scaling.type"); t && *t != "none") {
    const double factor = f.get_float_opt(p + "rope.scaling.factor").value_or(1.0);
    if (factor != 1.0) {
      throw Error(f.source() + ": key '" + p + "rope.scaling.type': RoPE scaling '" + *t + "' is not supported");
    }
  }
  const GgufTensorInfo* embd = f.find_tensor("token_embd.weight");
  if (auto v = f.get_int_opt(p + "vocab_size")) {
    c.vocab_size = *v;
  } else if (f.has("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int64_t>(f.get_string_array("tokenizer.ggml.tokens").size());
  } else if (embd != nullptr && embd->ne.size() == 2) {
    c.vocab_size = embd->ne[1];
  }
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  c.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.bos_id = static_cast<int32_t>(
      std::clamp<int64_t>(f.get_int_opt("tokenizer.ggml.bos_token_id").value_or(-1), -1, INT32_MAX));
  c.eos_id = static_cast<int32_t>(
      std::clamp<int64_t>(f.get_int_opt("tokenizer.ggml.eos_token_id").value_or(-1), -1, INT32_MAX));
  return c;
}

// Recovers Llama 3 RoPE scaling from rope_freqs.weight: from our own keys when present, else
// from the factors themselves with Llama 3's published low/high/original parameters, verified
// by recomputing every factor.
void read_rope_scaling(const GgufFile& f, ModelConfig& c) {
  const GgufTensorInfo* t = f.find_tensor(kRopeFreqs);
  if (f.has(kScalingFactor)) {
    c.rope_scaling.factor = static_cast<float>(f.get_float(kScalingFactor));
    c.rope_scaling.low_freq_factor = static_cast<float>(f.get_float(kScalingLow));
    c.rope_scaling.high_freq_factor = static_cast<float>(f.get_float(kScalingHigh));
    c.rope_scaling.original_max_position = f.get_int(kScalingOrig);
  }
  if (t == nullptr) return;
  const std::string where = f.source() + ": tensor '" + std::string(kRopeFreqs) + "': ";
  if (t->type != GgmlType::F32 || t->ne.size() != 1 || c.head_dim <= 0 || t->ne[0] != c.head_dim / 2) {
    throw Error(where + "expected f32 [" + std::to_string(c.head_dim / 2) + "]");
  }
  std::vector<float> factors(static_cast<size_t>(t->ne[0]));
  const auto data = f.tensor_data(*t);
  std::memcpy(factors.data(), data.data(), data.size());
  if (!f.has(kScalingFactor)) {
    if (std::all_of(factors.begin(), factors.end(), [](float x) { return x == 1.0f; })) return;
    c.rope_scaling = RopeScaling{};
    c.rope_scaling.factor = *std::max_element(factors.begin(), factors.end());
    if (auto orig = f.get_int_opt(c.architecture + ".rope.scaling.original_context_length")) {
      c.rope_scaling.original_max_position = *orig;
    }
  }
  const std::vector<float> expect = llama3_rope_factors(c);
  for (size_t i = 0; i < factors.size(); ++i) {
    if (!(std::fabs(factors[i] - expect[i]) <= 1e-3f * std::fabs(expect[i]))) {
      throw Error(where + "factor " + std::to_string(i) + " = " + std::to_string(factors[i]) +
                  " does not match Llama 3 RoPE scaling (factor " + std::to_string(c.rope_scaling.factor) + ", low " +
                  std::to_string(c.rope_scaling.low_freq_factor) + ", high " +
                  std::to_string(c.rope_scaling.high_freq_factor) + ", original context " +
                  std::to_string(c.rope_scaling.original_max_position) + "), which is all pricer supports");
    }
  }
}

}  // namespace

ModelFile load_gguf_model(const GgufFile& f, std::optional<DType> base_dtype) {
  ModelFile m;
  m.format = "gguf";
  m.source = f.source();
  m.config = config_from_gguf(f);
  read_rope_scaling(f, m.config);
  m.config.validate(m.source);
  m.metadata = metadata_json(f);
  m.gguf_metadata = f.metadata();

  const ModelConfig& c = m.config;
  const auto expected = expected_shapes(c);
  const bool permute = permutes_qk(c.architecture);
  for (const GgufTensorInfo& t : f.tensors()) {
    if (t.name == kRopeFreqs) continue;
    const std::string where = "tensor '" + t.name + "'";
    const auto hf = gguf_to_hf(t.name);
    if (!hf) throw Error(m.source + ": " + where + ": not a tensor of a " + c.architecture + " model");
    const auto dtype = ggml_to_dtype(t.type);
    if (!dtype) throw Error(m.source + ": " + where + ": type " + ggml_type_name(t.type) + " is not supported");
    if (t.ne.size() > 2) throw Error(m.source + ": " + where + ": has " + std::to_string(t.ne.size()) + " dimensions");
    const Shape shape = t.ne.size() == 1 ? Shape{1, t.ne[0]} : Shape{t.ne[1], t.ne[0]};
    const auto ex = expected.find(*hf);
    if (ex != expected.end() && ex->second != shape) {
      throw Error(m.source + ": " + where + ": shape " + shape_str(shape) +
                  " contradicts the configuration (expected " + shape_str(ex->second) + " for " + *hf + ")");
    }
    std::span<const uint8_t> data = f.tensor_data(t);
    std::vector<uint8_t> permuted;
    const bool is_q = hf->find("q_proj") != std::string::npos, is_k = hf->find("k_proj") != std::string::npos;
    Weight w;
    try {
      if (permute && ex != expected.end() && (is_q || is_k)) {
        const int64_t heads = is_q ? c.n_heads : c.n_kv_heads;
        const size_t rows = static_cast<size_t>(t.ne.size() == 1 ? shape.second : shape.first);
        permuted = rope_rows_to_hf(data, heads, c.head_dim, data.size() / rows);
        data = permuted;
      }
      w = weight_from_bytes(*dtype, shape.first, shape.second, data);
    } catch (const Error& e) {
      throw Error(m.source + ": " + where + ": " + e.what());
    }
    add_model_tensor(m, expected, *hf, std::move(w), base_dtype, where);
  }
  check_model_tensors(c, m.tensors, m.source);
  return m;
}

namespace {

// ModelConfig holds int64_t; llama.cpp reads these keys as uint32.
GgufValue u32_value(int64_t v) { return GgufValue::u32(static_cast<uint32_t>(v)); }

// The model's hyperparameters under llama.cpp's "general.*", "<arch>.*" and "tokenizer.ggml.*" keys.
void add_config_metadata(GgufWriter& w, const ModelConfig& c, const std::string& name) {
  const std::string p = c.architecture + ".";
  w.add("general.architecture", GgufValue::string(c.architecture));
  w.add("general.name", GgufValue::string(name));
  w.add(p + "context_length", u32_value(c.max_seq_len));
  w.add(p + "embedding_length", u32_value(c.dim));
  w.add(p + "block_count", u32_value(c.n_layers));
  w.add(p + "feed_forward_length", u32_value(c.ffn_dim));
  w.add(p + "rope.dimension_count", u32_value(c.head_dim));
  w.add(p + "attention.head_count", u32_value(c.n_heads));
  w.add(p + "attention.head_count_kv", u32_value(c.n_kv_heads));
  if (c.head_dim * c.n_heads != c.dim) {
    w.add(p + "attention.key_length", u32_value(c.head_dim));
    w.add(p + "attention.value_length", u32_value(c.head_dim));
  }
  w.add(p + "attention.layer_norm_rms_epsilon", GgufValue::f32(c.rms_eps));
  w.add(p + "rope.freq_base", GgufValue::f32(c.rope_theta));
  w.add(p + "vocab_size", u32_value(c.vocab_size));
  if (c.bos_id >= 0) w.add("tokenizer.ggml.bos_token_id", u32_value(c.bos_id));
  if (c.eos_id >= 0) w.add("tokenizer.ggml.eos_token_id", u32_value(c.eos_id));
}

void add_rope_scaling_metadata(GgufWriter& w, const RopeScaling& s) {
  w.add(kScalingFactor, GgufValue::f32(s.factor));
  w.add(kScalingLow, GgufValue::f32(s.low_freq_factor));
  w.add(kScalingHigh, GgufValue::f32(s.high_freq_factor));
  w.add(kScalingOrig, u32_value(s.original_max_position));
}

// The format a tensor is written in.
DType export_format(const std::string& name, const Weight& t, const GgufExportOptions& opt) {
  if (name.ends_with("norm.weight") || name.ends_with(".bias")) return DType::F32;
  const auto it = opt.write.dtypes.find(name);
  const DType d = it != opt.write.dtypes.end() ? it->second : t.dtype();
  return d == DType::NF4 ? opt.nf4_as : d;
}

bool any_block_quantized(const std::map<std::string, Weight>& tensors, const GgufExportOptions& opt) {
  bool quantized = false;
  for (const auto& [name, t] : tensors) {
    const DType d = export_format(name, t, opt);
    quantized |= is_ggml_quant(d);
  }
  return quantized;
}

void add_rope_freqs_tensor(GgufWriter& w, const ModelConfig& c) {
  const std::vector<float> f = llama3_rope_factors(c);
  std::vector<uint8_t> b(f.size() * sizeof(float));
  std::memcpy(b.data(), f.data(), b.size());
  w.add_tensor(kRopeFreqs, {static_cast<int64_t>(f.size())}, GgmlType::F32, std::move(b));
}

// Adds one weight, its bytes produced (converted, q/k rows permuted) only when the writer asks for them.
void add_weight_tensor(GgufWriter& w, const std::string& name, const Weight& t, const ModelConfig& c,
                       const GgufExportOptions& opt, const std::string& src) {
  const bool permute = permutes_qk(c.architecture);
  const bool vec = name.ends_with("norm.weight") || name.ends_with(".bias");
  const DType as = export_format(name, t, opt);
  const std::vector<int64_t> ne = vec ? std::vector<int64_t>{t.cols()} : std::vector<int64_t>{t.cols(), t.rows()};
  const bool is_q = name.find("q_proj") != std::string::npos, is_k = name.find("k_proj") != std::string::npos;
  const int64_t heads = permute && is_q ? c.n_heads : permute && is_k ? c.n_kv_heads : 0;
  const Weight* wt = &t;
  const int64_t hd = c.head_dim;
  const auto* on_written = &opt.write.on_written;
  w.add_tensor(hf_to_gguf(name), ne, dtype_to_ggml(as), [wt, as, heads, hd, vec, on_written, src, name] {
    std::vector<uint8_t> b;
    try {
      b = weight_bytes(*wt, as);
    } catch (const Error& e) {
      throw Error(src + ": tensor '" + name + "' as " + std::string(dtype_name(as)) + ": " + e.what());
    }
    if (heads > 0) {
      const size_t rows = vec ? static_cast<size_t>(wt->cols()) : static_cast<size_t>(wt->rows());
      b = rope_rows_from_hf(b, heads, hd, b.size() / rows);
    }
    if (*on_written) (*on_written)(b.size());
    return b;
  });
}

}  // namespace

void save_gguf(const std::string& path, const ModelConfig& c, const std::map<std::string, Weight>& tensors,
               const GgufExportOptions& opt) {
  const std::string src = path + " (GGUF export)";
  c.validate(src);
  check_model_tensors(c, tensors, src);
  require(supported_arch(c.architecture), src + ": architecture '" + c.architecture + "' cannot be exported");
  require(opt.nf4_as == DType::F16 || opt.nf4_as == DType::F32,
          src + ": NF4 tensors can be written as f16 or f32 only");

  GgufWriter w(opt.alignment);
  add_config_metadata(w, c, opt.name);
  const bool scaled = c.rope_scaling.factor > 1.0f;
  if (scaled) add_rope_scaling_metadata(w, c.rope_scaling);
  // llama.cpp refuses block-quantized tensors without the quantization format version.
  if (any_block_quantized(tensors, opt)) w.add("general.quantization_version", GgufValue::u32(2));
  for (const auto& kv : opt.extra) w.add(kv.key, kv.value);

  if (scaled) add_rope_freqs_tensor(w, c);
  for (const auto& [name, t] : tensors) add_weight_tensor(w, name, t, c, opt, src);
  w.write(path);
}

}  // namespace pricer
