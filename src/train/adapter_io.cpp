#include "train/adapter_io.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "io/gguf.h"
#include "io/model_file.h"
#include "io/safetensors.h"
#include "quant/half.h"

namespace fs = std::filesystem;

namespace pricer {

namespace {

constexpr Proj kAll[kNumProj] = {Proj::Q, Proj::K, Proj::V, Proj::O, Proj::Gate, Proj::Up, Proj::Down};

std::string peft_name(int64_t layer, Proj p, char ab) {
  const bool attn = static_cast<int>(p) <= static_cast<int>(Proj::O);
  return "base_model.model.model.layers." + std::to_string(layer) + (attn ? ".self_attn." : ".mlp.") +
         proj_name(p) + ".lora_" + ab + ".weight";
}

const char* gguf_proj(Proj p) {
  static const char* names[kNumProj] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
  return names[static_cast<int>(p)];
}

std::string gguf_name(int64_t layer, Proj p, char ab) {
  return "blk." + std::to_string(layer) + "." + gguf_proj(p) + ".weight.lora_" + ab;
}

std::vector<uint8_t> bytes_of(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<float> floats_of(std::span<const uint8_t> b) {
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

// q and k rows are permuted for llama.cpp's RoPE layout; the number of heads of each.
int64_t rope_heads(const ModelConfig& c, Proj p) {
  return p == Proj::Q ? c.n_heads : p == Proj::K ? c.n_kv_heads : 0;
}

std::vector<float> to_f32(const SafetensorsFile& f, const SafetensorsTensor& t) {
  auto data = f.data(t);
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (t.dtype == "F32") {
    std::memcpy(out.data(), data.data(), out.size() * 4);
  } else if (t.dtype == "F16" || t.dtype == "BF16") {
    for (size_t i = 0; i < out.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, data.data() + 2 * i, 2);
      out[i] = t.dtype == "F16" ? f16_to_f32(h) : bf16_to_f32(h);
    }
  } else {
    throw Error(f.source() + ": tensor " + t.name + " has dtype " + t.dtype + " (expected F32, F16 or BF16)");
  }
  return out;
}

void require_shape(const std::string& src, const std::string& name, const std::vector<int64_t>& got,
                   int64_t rows, int64_t cols) {
  require(got.size() == 2 && got[0] == rows && got[1] == cols,
          src + ": tensor " + name + " has the wrong shape (expected [" + std::to_string(rows) + ", " +
              std::to_string(cols) + "])");
}

bool is_gguf(const std::string& path) {
  if (fs::is_directory(path)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

fs::path peft_dir(const std::string& path) {
  return fs::is_directory(path) ? fs::path(path) : fs::path(path).parent_path();
}

}  // namespace

void save_peft_adapter(const LlamaModel& model, const std::string& dir, const std::string& base_model_name) {
  require(model.has_lora(), "no LoRA adapters to save");
  const LoraConfig& lc = model.lora_config();
  fs::create_directories(dir);
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  nlohmann::json targets = nlohmann::json::array();
  for (Proj p : kAll)
    if (lc.targets[static_cast<int>(p)]) targets.push_back(proj_name(p));
  for (int64_t l = 0; l < model.config().n_layers; ++l) {
    for (Proj p : kAll) {
      const LoraAdapter* a = model.lora(l, p);
      if (!a) continue;
      w.add(peft_name(l, p, 'A'), "F32", {a->rank, a->in}, bytes_of(a->A));
      w.add(peft_name(l, p, 'B'), "F32", {a->out, a->rank}, bytes_of(a->B));
    }
  }
  const auto st = w.to_bytes();
  write_file_atomic((fs::path(dir) / "adapter_model.safetensors").string(), std::string(st.begin(), st.end()));
  nlohmann::json cfg = {{"peft_type", "LORA"},
                        {"task_type", "CAUSAL_LM"},
                        {"base_model_name_or_path", base_model_name},
                        {"r", lc.rank},
                        {"lora_alpha", lc.alpha},
                        {"lora_dropout", lc.dropout},
                        {"use_rslora", lc.rslora},
                        {"target_modules", targets},
                        {"bias", "none"},
                        {"fan_in_fan_out", false},
                        {"inference_mode", true},
                        {"init_lora_weights", true},
                        {"modules_to_save", nullptr}};
  write_file_atomic((fs::path(dir) / "adapter_config.json").string(), cfg.dump(2) + "\n");
}

void save_gguf_adapter(const LlamaModel& model, const std::string& path) {
  require(model.has_lora(), "no LoRA adapters to save");
  const ModelConfig& c = model.config();
  const LoraConfig& lc = model.lora_config();
  GgufWriter w;
  w.add("general.architecture", GgufValue::string(c.architecture));
  w.add("general.type", GgufValue::string("adapter"));
  w.add("adapter.type", GgufValue::string("lora"));
  // llama.cpp scales by alpha / rank; rsLoRA's alpha / sqrt(rank) is expressed as an equivalent alpha.
  w.add("adapter.lora.alpha", GgufValue::f32(lc.scale() * static_cast<float>(lc.rank)));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    for (Proj p : kAll) {
      const LoraAdapter* a = model.lora(l, p);
      if (!a) continue;
      w.add_tensor(gguf_name(l, p, 'a'), {a->in, a->rank}, GgmlType::F32, bytes_of(a->A));
      std::vector<uint8_t> b = bytes_of(a->B);
      if (const int64_t heads = rope_heads(c, p))
        b = rope_rows_from_hf(b, heads, c.head_dim, static_cast<size_t>(a->rank) * 4);
      w.add_tensor(gguf_name(l, p, 'b'), {a->rank, a->out}, GgmlType::F32, std::move(b));
    }
  }
  const auto bytes = w.to_bytes();
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

LoraConfig read_adapter_config(const std::string& path) {
  LoraConfig lc;
  if (is_gguf(path)) {
    GgufFile f = GgufFile::open(path);
    require(f.get_string("general.type") == "adapter" && f.get_string("adapter.type") == "lora",
            path + ": not a GGUF LoRA adapter (general.type / adapter.type)");
    const float alpha = static_cast<float>(f.get_float("adapter.lora.alpha"));
    int64_t rank = 0;
    for (const auto& t : f.tensors()) {
      for (Proj p : kAll) {
        const std::string suffix = std::string(".") + gguf_proj(p) + ".weight.lora_a";
        if (t.name.size() > suffix.size() && t.name.ends_with(suffix)) {
          lc.targets[static_cast<int>(p)] = true;
          require(t.ne.size() == 2, path + ": tensor " + t.name + " is not 2-D");
          require(rank == 0 || rank == t.ne[1], path + ": adapters of different ranks in one file");
          rank = t.ne[1];
        }
      }
    }
    require(rank > 0, path + ": no lora_a tensors");
    lc.rank = rank;
    lc.alpha = alpha;
    lc.validate(path);
    return lc;
  }
  const fs::path cfg_path = peft_dir(path) / "adapter_config.json";
  std::ifstream in(cfg_path);
  require(in.good(), cfg_path.string() + ": cannot open (a PEFT adapter directory needs adapter_config.json)");
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  require(!j.is_discarded() && j.is_object(), cfg_path.string() + ": not valid JSON");
  require(j.value("peft_type", "LORA") == "LORA", cfg_path.string() + ": peft_type is not LORA");
  require(j.contains("r") && j["r"].is_number_integer(), cfg_path.string() + ": r missing or not an integer");
  lc.rank = j["r"].get<int64_t>();
  lc.alpha = j.contains("lora_alpha") && j["lora_alpha"].is_number() ? j["lora_alpha"].get<float>() : 8.0f;
  lc.dropout = j.contains("lora_dropout") && j["lora_dropout"].is_number() ? j["lora_dropout"].get<float>() : 0.0f;
  lc.rslora = j.value("use_rslora", false);
  require(j.contains("target_modules"), cfg_path.string() + ": target_modules missing");
  std::string list;
  if (j["target_modules"].is_string()) {
    list = j["target_modules"].get<std::string>();
  } else {
    require(j["target_modules"].is_array(), cfg_path.string() + ": target_modules must be a list");
    for (const auto& m : j["target_modules"]) {
      require(m.is_string(), cfg_path.string() + ": target_modules holds a non-string");
      list += (list.empty() ? "" : ",") + m.get<std::string>();
    }
  }
  lc.targets = parse_lora_targets(list);
  lc.validate(cfg_path.string());
  return lc;
}

void load_adapter(LlamaModel& model, const std::string& path) {
  const LoraConfig lc = read_adapter_config(path);
  model.add_lora(lc, 0);
  const ModelConfig& c = model.config();
  if (is_gguf(path)) {
    GgufFile f = GgufFile::open(path);
    // read_adapter_config stored the equivalent alpha; its scale is alpha / rank.
    for (int64_t l = 0; l < c.n_layers; ++l) {
      for (Proj p : kAll) {
        LoraAdapter* a = model.lora(l, p);
        if (!a) continue;
        for (char ab : {'a', 'b'}) {
          const std::string name = gguf_name(l, p, ab);
          const GgufTensorInfo* t = nullptr;
          for (const auto& ti : f.tensors())
            if (ti.name == name) t = &ti;
          require(t != nullptr, path + ": missing tensor " + name);
          require(t->type == GgmlType::F32, path + ": tensor " + name + " is not F32");
          const std::vector<int64_t> want = ab == 'a' ? std::vector<int64_t>{a->in, a->rank}
                                                      : std::vector<int64_t>{a->rank, a->out};
          require(t->ne == want, path + ": tensor " + name + " has the wrong shape");
          std::span<const uint8_t> raw = f.tensor_data(*t);
          if (ab == 'a') {
            a->A = floats_of(raw);
          } else {
            const int64_t heads = rope_heads(c, p);
            a->B = heads ? floats_of(rope_rows_to_hf(raw, heads, c.head_dim, static_cast<size_t>(a->rank) * 4))
                         : floats_of(raw);
          }
        }
      }
    }
    return;
  }
  const fs::path st_path = peft_dir(path) / "adapter_model.safetensors";
  require(fs::exists(st_path), st_path.string() + ": not found (a PEFT adapter directory needs adapter_model.safetensors)");
  SafetensorsFile f = SafetensorsFile::open(st_path.string());
  for (int64_t l = 0; l < c.n_layers; ++l) {
    for (Proj p : kAll) {
      LoraAdapter* a = model.lora(l, p);
      if (!a) continue;
      for (char ab : {'A', 'B'}) {
        const std::string name = peft_name(l, p, ab);
        const SafetensorsTensor* t = f.find(name);
        require(t != nullptr, st_path.string() + ": missing tensor " + name);
        if (ab == 'A') {
          require_shape(st_path.string(), name, t->shape, a->rank, a->in);
          a->A = to_f32(f, *t);
        } else {
          require_shape(st_path.string(), name, t->shape, a->out, a->rank);
          a->B = to_f32(f, *t);
        }
      }
    }
  }
}

}  // namespace pricer
