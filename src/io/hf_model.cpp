// Hugging Face model directories: config.json (LlamaConfig / Qwen2Config) and safetensors
// weights, single-file or sharded through model.safetensors.index.json.
#include <filesystem>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "io/json_util.h"
#include "io/model_common.h"
#include "io/model_file.h"
#include "io/safetensors.h"

namespace pricer {

using namespace io_detail;
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxJsonFile = 64u << 20;  // configs and shard indexes are kilobytes

nlohmann::json read_json_file(const std::string& path) {
  return parse_json_strict(read_file(path, kMaxJsonFile), path);
}

// Typed field access with errors naming the file and key; null counts as absent.
struct Fields {
  const nlohmann::json& j;
  const std::string& source;

  const nlohmann::json* get(const char* key) const {
    const auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  [[noreturn]] void fail(const char* key, const std::string& problem) const {
    throw Error(source + ": key '" + key + "': " + problem);
  }
  int64_t integer(const char* key) const {
    const auto* v = get(key);
    if (v == nullptr) fail(key, "missing");
    if (!v->is_number_integer()) fail(key, "expected an integer, found " + v->dump());
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) fail(key, "out of range");
    return v->get<int64_t>();
  }
  int64_t integer_or(const char* key, int64_t def) const { return get(key) ? integer(key) : def; }
  double number_or(const char* key, double def) const {
    const auto* v = get(key);
    if (v == nullptr) return def;
    if (!v->is_number()) fail(key, "expected a number, found " + v->dump());
    return v->get<double>();
  }
  bool boolean_or(const char* key, bool def) const {
    const auto* v = get(key);
    if (v == nullptr) return def;
    if (!v->is_boolean()) fail(key, "expected true or false, found " + v->dump());
    return v->get<bool>();
  }
  std::string string_or(const char* key, const std::string& def) const {
    const auto* v = get(key);
    if (v == nullptr) return def;
    if (!v->is_string()) fail(key, "expected a string, found " + v->dump());
    return v->get<std::string>();
  }
  // A token id: an integer, or a list whose first entry is used (eos lists of Llama 3.x).
  int32_t token_id(const char* key) const {
    const auto* v = get(key);
    if (v == nullptr) return -1;
    const nlohmann::json* x = v;
    if (v->is_array()) {
      if (v->empty()) return -1;
      x = &(*v)[0];
    }
    if (!x->is_number_integer() || x->get<int64_t>() < 0 || x->get<int64_t>() > INT32_MAX) {
      fail(key, "expected a token id, found " + v->dump());
    }
    return static_cast<int32_t>(x->get<int64_t>());
  }
};

// Keeps shard file names to plain names inside the model directory.
void check_shard_name(const std::string& shard, const std::string& index_path) {
  if (shard.empty() || shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos || shard == "." ||
      shard == "..") {
    throw Error(index_path + ": weight_map: shard file name '" + shard + "' is not a plain file name");
  }
}

DType safetensors_to_dtype(const SafetensorsTensor& t, const std::string& source) {
  if (t.dtype == "F32") return DType::F32;
  if (t.dtype == "F16") return DType::F16;
  if (t.dtype == "BF16") return DType::BF16;
  throw Error(source + ": tensor '" + t.name + "': dtype " + t.dtype + " is not supported (F32, F16, BF16 are)");
}

// Adds the tensors of one safetensors file (all of them, or those named in `only`).
void add_safetensors(ModelFile& m, const std::map<std::string, Shape>& expected, const SafetensorsFile& f,
                     const std::set<std::string>* only, std::optional<DType> base_dtype) {
  for (const SafetensorsTensor& t : f.tensors()) {
    if (only != nullptr && !only->contains(t.name)) continue;
    // Older checkpoints store RoPE's inverse frequencies, which are recomputed from the config;
    // tied checkpoints may still carry a copy of the embedding as the head.
    if (t.name.ends_with("rotary_emb.inv_freq")) continue;
    if (t.name == "lm_head.weight" && m.config.tied_embeddings) continue;
    const std::string where = "tensor '" + t.name + "'";
    if (m.tensors.contains(t.name)) throw Error(f.source() + ": " + where + ": appears in more than one shard");
    if (t.shape.empty() || t.shape.size() > 2) {
      throw Error(f.source() + ": " + where + ": has " + std::to_string(t.shape.size()) + " dimensions");
    }
    const Shape shape = t.shape.size() == 1 ? Shape{1, t.shape[0]} : Shape{t.shape[0], t.shape[1]};
    const auto ex = expected.find(t.name);
    if (ex == expected.end()) throw Error(f.source() + ": " + where + ": unexpected tensor for this configuration");
    if (ex->second != shape) {
      throw Error(f.source() + ": " + where + ": shape " + shape_str(shape) +
                  " contradicts the configuration (expected " + shape_str(ex->second) + ")");
    }
    Weight w;
    try {
      w = weight_from_bytes(safetensors_to_dtype(t, f.source()), shape.first, shape.second, f.data(t));
    } catch (const Error& e) {
      throw Error(f.source() + ": " + where + ": " + e.what());
    }
    add_model_tensor(m, expected, t.name, std::move(w), base_dtype, where);
  }
}

ModelFile load_with_config(const std::string& config_path, const std::string& source) {
  ModelFile m;
  m.source = source;
  m.metadata = read_json_file(config_path);
  m.config = hf_config_from_json(m.metadata, config_path);
  m.config.validate(config_path);
  return m;
}

const char* safetensors_dtype_of(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    default: return nullptr;
  }
}

}  // namespace

ModelConfig hf_config_from_json(const nlohmann::json& j, const std::string& name) {
  if (!j.is_object()) throw Error(name + ": expected a JSON object");
  const Fields f{j, name};
  ModelConfig c;
  const std::string type = f.string_or("model_type", "");
  if (type != "llama" && type != "qwen2") {
    throw Error(name + ": key 'model_type': '" + type + "' is not supported (llama and qwen2 are)");
  }
  c.architecture = type;
  const std::string act = f.string_or("hidden_act", "silu");
  if (act != "silu") f.fail("hidden_act", "activation '" + act + "' is not supported (silu is)");
  if (f.boolean_or("mlp_bias", false)) f.fail("mlp_bias", "MLP biases are not supported");
  c.vocab_size = f.integer("vocab_size");
  c.dim = f.integer("hidden_size");
  c.ffn_dim = f.integer("intermediate_size");
  c.n_layers = f.integer("num_hidden_layers");
  c.n_heads = f.integer("num_attention_heads");
  c.n_kv_heads = f.integer_or("num_key_value_heads", c.n_heads);
  c.head_dim = f.integer_or("head_dim", c.n_heads > 0 ? c.dim / c.n_heads : 0);
  c.max_seq_len = f.integer_or("max_position_embeddings", c.max_seq_len);
  c.rms_eps = static_cast<float>(f.number_or("rms_norm_eps", 1e-6));
  c.rope_theta = static_cast<float>(f.number_or("rope_theta", 10000.0));
  c.tied_embeddings = f.boolean_or("tie_word_embeddings", false);
  // Qwen2 always has q/k/v biases; Llama has them when attention_bias is set.
  c.qkv_bias = type == "qwen2" || f.boolean_or("attention_bias", false);
  c.bos_id = f.token_id("bos_token_id");
  c.eos_id = f.token_id("eos_token_id");
  if (const auto* rs = f.get("rope_scaling")) {
    if (!rs->is_object()) f.fail("rope_scaling", "expected an object, found " + rs->dump());
    const Fields r{*rs, name};
    const std::string kind = r.get("rope_type") ? r.string_or("rope_type", "") : r.string_or("type", "default");
    if (kind == "llama3") {
      c.rope_scaling.factor = static_cast<float>(r.number_or("factor", 1.0));
      c.rope_scaling.low_freq_factor = static_cast<float>(r.number_or("low_freq_factor", 1.0));
      c.rope_scaling.high_freq_factor = static_cast<float>(r.number_or("high_freq_factor", 4.0));
      c.rope_scaling.original_max_position = r.integer_or("original_max_position_embeddings", 8192);
    } else if (kind != "default") {
      f.fail("rope_scaling", "rope_type '" + kind + "' is not supported (llama3 is)");
    }
  }
  return c;
}

nlohmann::json hf_config_to_json(const ModelConfig& c) {
  const bool qwen = c.architecture == "qwen2";
  nlohmann::json j = {
      {"architectures", {qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
      {"model_type", c.architecture},
      {"hidden_act", "silu"},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.dim},
      {"intermediate_size", c.ffn_dim},
      {"num_hidden_layers", c.n_layers},
      {"num_attention_heads", c.n_heads},
      {"num_key_value_heads", c.n_kv_heads},
      {"head_dim", c.head_dim},
      {"max_position_embeddings", c.max_seq_len},
      {"rms_norm_eps", c.rms_eps},
      {"rope_theta", c.rope_theta},
      {"tie_word_embeddings", c.tied_embeddings},
  };
  if (!qwen) j["attention_bias"] = c.qkv_bias;
  if (c.bos_id >= 0) j["bos_token_id"] = c.bos_id;
  if (c.eos_id >= 0) j["eos_token_id"] = c.eos_id;
  if (c.rope_scaling.factor > 1.0f) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", c.rope_scaling.factor},
                         {"low_freq_factor", c.rope_scaling.low_freq_factor},
                         {"high_freq_factor", c.rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", c.rope_scaling.original_max_position}};
  }
  return j;
}

namespace io_detail {

ModelFile load_hf_dir(const std::string& dir, std::optional<DType> base_dtype) {
  const fs::path d(dir);
  const std::string config_path = (d / "config.json").string();
  if (!fs::exists(config_path)) throw Error(dir + ": directory holds no config.json (not a Hugging Face model)");
  ModelFile m = load_with_config(config_path, dir);
  m.format = "hf";
  const auto expected = expected_shapes(m.config);

  const std::string index_path = (d / "model.safetensors.index.json").string();
  const std::string single = (d / "model.safetensors").string();
  if (fs::exists(index_path)) {
    const nlohmann::json index = read_json_file(index_path);
    const auto wm = index.is_object() ? index.find("weight_map") : index.end();
    if (wm == index.end() || !wm->is_object()) throw Error(index_path + ": missing object 'weight_map'");
    std::map<std::string, std::set<std::string>> by_shard;
    for (const auto& [tensor, shard] : wm->items()) {
      if (!shard.is_string()) throw Error(index_path + ": weight_map: entry '" + tensor + "' is not a file name");
      check_shard_name(shard.get<std::string>(), index_path);
      by_shard[shard.get<std::string>()].insert(tensor);
    }
    for (const auto& [shard, names] : by_shard) {
      const SafetensorsFile f = SafetensorsFile::open((d / shard).string());
      for (const auto& n : names) {
        if (f.find(n) == nullptr) {
          throw Error(index_path + ": weight_map lists tensor '" + n + "' in " + shard + ", which does not hold it");
        }
      }
      add_safetensors(m, expected, f, &names, base_dtype);
    }
  } else if (fs::exists(single)) {
    const SafetensorsFile f = SafetensorsFile::open(single);
    for (const auto& [k, v] : f.metadata()) m.metadata["__metadata__"][k] = v;
    add_safetensors(m, expected, f, nullptr, base_dtype);
  } else {
    throw Error(dir +
                ": no model.safetensors or model.safetensors.index.json (only safetensors weights are supported)");
  }
  check_model_tensors(m.config, m.tensors, dir);
  return m;
}

ModelFile load_safetensors_model(const std::string& path, std::optional<DType> base_dtype) {
  const fs::path config = fs::path(path).parent_path() / "config.json";
  if (!fs::exists(config)) {
    throw Error(path + ": a lone .safetensors file needs its config.json beside it (" + config.string() + ")");
  }
  ModelFile m = load_with_config(config.string(), path);
  m.format = "safetensors";
  const SafetensorsFile f = SafetensorsFile::open(path);
  for (const auto& [k, v] : f.metadata()) m.metadata["__metadata__"][k] = v;
  add_safetensors(m, expected_shapes(m.config), f, nullptr, base_dtype);
  check_model_tensors(m.config, m.tensors, path);
  return m;
}

}  // namespace io_detail

void save_hf_dir(const std::string& dir, const ModelConfig& config, const std::map<std::string, Weight>& tensors,
                 DType other_as, const TensorWriteOptions& write) {
  const std::string src = dir + " (Hugging Face export)";
  config.validate(src);
  check_model_tensors(config, tensors, src);
  require(other_as == DType::F32 || other_as == DType::BF16,
          src + ": other formats can be written as F32 or BF16 only");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(dir + ": cannot create directory: " + ec.message());

  SafetensorsWriter w;
  w.set_metadata("format", "pt");  // what transformers expects of a PyTorch checkpoint
  for (const auto& [name, t] : tensors) {
    const bool vec = name.ends_with("norm.weight") || name.ends_with(".bias");
    const auto it = write.dtypes.find(name);
    const DType held = it != write.dtypes.end() ? it->second : t.dtype();
    const DType as = safetensors_dtype_of(held) != nullptr ? held : other_as;
    const std::vector<int64_t> shape = vec ? std::vector<int64_t>{t.cols()} : std::vector<int64_t>{t.rows(), t.cols()};
    const Weight* wt = &t;
    const auto* on_written = &write.on_written;
    w.add(name, safetensors_dtype_of(as), shape, [wt, as, on_written] {
      std::vector<uint8_t> b = weight_bytes(*wt, as);
      if (*on_written) (*on_written)(b.size());
      return b;
    });
  }
  w.write((fs::path(dir) / "model.safetensors").string());
  write_file_atomic(fs::path(dir) / "config.json", hf_config_to_json(config).dump(2) + "\n");
}

}  // namespace pricer
