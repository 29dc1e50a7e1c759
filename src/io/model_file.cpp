#include "io/model_file.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numbers>

#include "core/error.h"
#include "io/bytes.h"
#include "io/model_common.h"
#include "model/hf_names.h"
#include "quant/ggml_blocks.h"

namespace pricer {

namespace io_detail {

std::string shape_str(Shape s) {
  std::string out = "[";
  out += std::to_string(s.first);
  out += ", ";
  out += std::to_string(s.second);
  out += "]";
  return out;
}

std::string layer_tensor(int64_t layer, const char* suffix) { return hf_layer_prefix(layer) + suffix; }

std::map<std::string, Shape> expected_shapes(const ModelConfig& c) {
  const int64_t q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
  std::map<std::string, Shape> s;
  s["model.embed_tokens.weight"] = {c.vocab_size, c.dim};
  s["model.norm.weight"] = {1, c.dim};
  if (!c.tied_embeddings) s["lm_head.weight"] = {c.vocab_size, c.dim};
  for (int64_t l = 0; l < c.n_layers; ++l) {
    s[layer_tensor(l, "input_layernorm.weight")] = {1, c.dim};
    s[layer_tensor(l, "post_attention_layernorm.weight")] = {1, c.dim};
    s[layer_tensor(l, "self_attn.q_proj.weight")] = {q, c.dim};
    s[layer_tensor(l, "self_attn.k_proj.weight")] = {kv, c.dim};
    s[layer_tensor(l, "self_attn.v_proj.weight")] = {kv, c.dim};
    s[layer_tensor(l, "self_attn.o_proj.weight")] = {c.dim, q};
    s[layer_tensor(l, "mlp.gate_proj.weight")] = {c.ffn_dim, c.dim};
    s[layer_tensor(l, "mlp.up_proj.weight")] = {c.ffn_dim, c.dim};
    s[layer_tensor(l, "mlp.down_proj.weight")] = {c.dim, c.ffn_dim};
    if (c.qkv_bias) {
      s[layer_tensor(l, "self_attn.q_proj.bias")] = {1, q};
      s[layer_tensor(l, "self_attn.k_proj.bias")] = {1, kv};
      s[layer_tensor(l, "self_attn.v_proj.bias")] = {1, kv};
    }
  }
  return s;
}

Weight weight_from_bytes(DType type, int64_t rows, int64_t cols, std::span<const uint8_t> bytes) {
  if (type == DType::F32) {
    // Source bytes may sit at any offset of a mapping; copy into properly aligned floats.
    std::vector<float> f(bytes.size() / sizeof(float));
    if (!f.empty()) std::memcpy(f.data(), bytes.data(), f.size() * sizeof(float));
    return Weight::from_f32(f.data(), rows, cols, DType::F32);
  }
  return Weight::from_raw(type, rows, cols, std::vector<uint8_t>(bytes.begin(), bytes.end()));
}

namespace {
bool is_projection(const std::string& name) {
  return name.starts_with("model.layers.") && name.ends_with("_proj.weight");
}
bool is_vector(const std::string& name) { return name.ends_with("norm.weight") || name.ends_with(".bias"); }

// Block formats quantize whole rows of blocks: the widths every projection of the model has
// (its input sizes) decide which formats can hold them all.
std::string dtypes_fitting(const ModelConfig& c) {
  std::string out;
  for (DType t : kDTypes) {
    const int64_t block = t == DType::NF4 || t == DType::F32 ? 1 : block_layout(t).elems;
    if (c.dim % block != 0 || c.ffn_dim % block != 0 || (c.n_heads * c.head_dim) % block != 0) continue;
    out += (out.empty() ? "" : ", ") + std::string(dtype_name(t));
  }
  return out;
}

// A projection in base format `t`, or an Error naming the file and tensor when its rows cannot
// be held in that format.
Weight convert_projection(const ModelFile& m, const std::string& name, const std::string& where, const Weight& w,
                          DType t) {
  if (t != DType::NF4 && t != DType::F32) {
    const int64_t block = block_layout(t).elems;
    if (w.cols() % block != 0) {
      throw Error(m.source + ": " + where + (where.find(name) == std::string::npos ? " (" + name + ")" : "") +
                  ": cannot be held as " + std::string(dtype_name(t)) + ": its rows have " + std::to_string(w.cols()) +
                  " values, not a multiple of the " + std::to_string(block) + "-value block of " +
                  std::string(dtype_name(t)) + "; formats that fit this model's widths (dim " +
                  std::to_string(m.config.dim) + ", ffn " + std::to_string(m.config.ffn_dim) +
                  "): " + dtypes_fitting(m.config));
    }
  }
  const std::vector<float> f = w.to_f32();
  return Weight::from_f32(f.data(), w.rows(), w.cols(), t);
}
}  // namespace

void add_model_tensor(ModelFile& m, const std::map<std::string, Shape>& expected, const std::string& name, Weight w,
                      std::optional<DType> base_dtype, const std::string& where) {
  const auto it = expected.find(name);
  if (it == expected.end()) throw Error(m.source + ": " + where + ": unexpected tensor for this configuration");
  const Shape got{w.rows(), w.cols()};
  if (got != it->second) {
    throw Error(m.source + ": " + where + ": shape " + shape_str(got) + " contradicts the configuration (expected " +
                shape_str(it->second) + ")");
  }
  if (is_vector(name) && w.dtype() != DType::F32) {
    const std::vector<float> f = w.to_f32();
    w = Weight::from_f32(f.data(), w.rows(), w.cols(), DType::F32);
  } else if (is_projection(name) && base_dtype && w.dtype() != *base_dtype) {
    w = convert_projection(m, name, where, w, *base_dtype);
  }
  m.tensors[name] = std::move(w);
}

std::vector<uint8_t> weight_bytes(const Weight& w, DType as) {
  if (w.dtype() != as) {
    const std::vector<float> f = w.to_f32();
    return weight_bytes(Weight::from_f32(f.data(), w.rows(), w.cols(), as), as);
  }
  if (as == DType::F32) {
    const auto& f = w.f32();
    std::vector<uint8_t> b(f.size() * sizeof(float));
    if (!b.empty()) std::memcpy(b.data(), f.data(), b.size());
    return b;
  }
  require(as != DType::NF4, "NF4 weights have no byte serialisation in model files");
  return w.file_bytes();
}

std::vector<float> llama3_rope_factors(const ModelConfig& c) {
  const RopeScaling& rs = c.rope_scaling;
  const double low_wavelen = static_cast<double>(rs.original_max_position) / rs.low_freq_factor;
  const double high_wavelen = static_cast<double>(rs.original_max_position) / rs.high_freq_factor;
  std::vector<float> out;
  for (int64_t i = 0; i < c.head_dim; i += 2) {
    const double inv_freq = std::pow(static_cast<double>(c.rope_theta), -static_cast<double>(i) / c.head_dim);
    const double wavelen = 2.0 * std::numbers::pi / inv_freq;
    double f;
    if (wavelen < high_wavelen) {
      f = 1.0;
    } else if (wavelen > low_wavelen) {
      f = rs.factor;
    } else {
      const double smooth =
          (rs.original_max_position / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
      f = 1.0 / ((1.0 - smooth) / rs.factor + smooth);
    }
    out.push_back(static_cast<float>(f));
  }
  return out;
}

}  // namespace io_detail

using namespace io_detail;

void check_model_tensors(const ModelConfig& config, const std::map<std::string, Weight>& tensors,
                         const std::string& source) {
  const auto expected = expected_shapes(config);
  for (const auto& [name, shape] : expected) {
    const auto it = tensors.find(name);
    if (it == tensors.end()) throw Error(source + ": tensor '" + name + "' is missing");
    const Shape got{it->second.rows(), it->second.cols()};
    if (got != shape) {
      throw Error(source + ": tensor '" + name + "': shape " + shape_str(got) +
                  " contradicts the configuration (expected " + shape_str(shape) + ")");
    }
  }
  for (const auto& [name, w] : tensors) {
    if (!expected.contains(name)) throw Error(source + ": tensor '" + name + "' is unexpected for this configuration");
  }
}

namespace {
std::vector<uint8_t> permute_rope_rows(std::span<const uint8_t> rows, int64_t n_heads, int64_t head_dim,
                                       size_t row_bytes, bool to_hf) {
  require(head_dim > 0 && head_dim % 2 == 0 && n_heads > 0 &&
              rows.size() == static_cast<size_t>(n_heads * head_dim) * row_bytes,
          "RoPE row permutation: " + std::to_string(rows.size()) + " bytes do not form " + std::to_string(n_heads) +
              " heads of " + std::to_string(head_dim) + " rows");
  std::vector<uint8_t> out(rows.size());
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t i = 0; i < 2; ++i) {
      for (int64_t j = 0; j < half; ++j) {
        const size_t hf = static_cast<size_t>(h * head_dim + i * half + j);
        const size_t inter = static_cast<size_t>(h * head_dim + 2 * j + i);
        const size_t dst = to_hf ? hf : inter, src = to_hf ? inter : hf;
        std::memcpy(out.data() + dst * row_bytes, rows.data() + src * row_bytes, row_bytes);
      }
    }
  }
  return out;
}
}  // namespace

std::vector<uint8_t> rope_rows_to_hf(std::span<const uint8_t> rows, int64_t n_heads, int64_t head_dim,
                                     size_t row_bytes) {
  return permute_rope_rows(rows, n_heads, head_dim, row_bytes, true);
}

std::vector<uint8_t> rope_rows_from_hf(std::span<const uint8_t> rows, int64_t n_heads, int64_t head_dim,
                                       size_t row_bytes) {
  return permute_rope_rows(rows, n_heads, head_dim, row_bytes, false);
}

ModelFile load_model_file(const std::string& path, std::optional<DType> base_dtype) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw Error(path + ": no such file or directory");
  if (fs::is_directory(st)) return load_hf_dir(path, base_dtype);
  if (fs::path(path).extension() == ".safetensors") return load_safetensors_model(path, base_dtype);

  char magic[4] = {};
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  in.read(magic, 4);
  if (in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0) return load_gguf_model(GgufFile::open(path), base_dtype);
  if (fs::path(path).extension() == ".bin") {
    const MappedFile mapped(path);
    return read_llama2c(mapped.bytes(), path, base_dtype);
  }
  throw Error(path +
              ": unrecognised model format (expected a GGUF file, a .safetensors file, a llama2.c .bin "
              "checkpoint or a Hugging Face model directory)");
}

std::string first_non_finite_tensor(const ModelFile& m) {
  std::vector<float> rows;
  for (const auto& [name, w] : m.tensors) {
    const int64_t block = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, w.cols()));
    for (int64_t r = 0; r < w.rows(); r += block) {
      const int64_t n = std::min(block, w.rows() - r);
      rows.resize(static_cast<size_t>(n * w.cols()));
      w.dequantize_rows(r, n, rows.data());
      for (float v : rows)
        if (!std::isfinite(v)) return name;
    }
  }
  return "";
}

}  // namespace pricer
