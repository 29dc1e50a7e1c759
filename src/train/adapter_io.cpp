#include "train/adapter_io.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "io/gguf.h"
#include "io/json_util.h"
#include "io/model_file.h"
#include "io/safetensors.h"
#include "quant/half.h"

namespace fs = std::filesystem;

namespace pricer {

namespace {

constexpr Proj kAll[kNumProj] = {Proj::Q, Proj::K, Proj::V, Proj::O, Proj::Gate, Proj::Up, Proj::Down};

std::string peft_name(int64_t layer, Proj p, char ab) {
  const bool attn = static_cast<int>(p) <= static_cast<int>(Proj::O);
  return "base_model.model.model.layers." + std::to_string(layer) + (attn ? ".self_attn." : ".mlp.") + proj_name(p) +
         ".lora_" + ab + ".weight";
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
int64_t rope_heads(const ModelConfig& c, Proj p) { return p == Proj::Q ? c.n_heads : p == Proj::K ? c.n_kv_heads : 0; }

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

void require_shape(const std::string& src, const std::string& name, const std::vector<int64_t>& got, int64_t rows,
                   int64_t cols) {
  require(got.size() == 2 && got[0] == rows && got[1] == cols,
          src + ": tensor " + name + " has the wrong shape (expected [" + std::to_string(rows) + ", " +
              std::to_string(cols) + "])");
}

// An adapter holding NaN or infinity would price every item as NaN: refuse it by name.
void require_finite(const std::vector<float>& v, const std::string& src, const std::string& name) {
  for (std::size_t i = 0; i < v.size(); ++i)
    require(std::isfinite(v[i]), src + ": tensor " + name + " holds a non-finite value (element " + std::to_string(i) +
                                     "); the run that wrote it diverged");
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

constexpr const char* kPeftEmbedRows = "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta";
constexpr const char* kPeftHeadRows = "base_model.model.lm_head.token_adapter.trainable_tokens_delta";
constexpr const char* kGgufEmbedRows = "token_embd.weight.rows";
constexpr const char* kGgufHeadRows = "output.weight.rows";

std::vector<int32_t> ids_of(const std::vector<int64_t>& v, const std::string& where) {
  std::vector<int32_t> ids;
  for (int64_t x : v) {
    require(x >= 0 && x <= INT32_MAX, where + ": token id " + std::to_string(x) + " out of range");
    ids.push_back(static_cast<int32_t>(x));
  }
  return ids;
}

// Rows saved in `file_ids` order become the model's trainable rows (kept sorted by id).
void set_token_rows(LlamaModel& model, const std::vector<int32_t>& file_ids, const std::vector<float>& embed,
                    const std::vector<float>* head, const std::string& where) {
  std::vector<int32_t> sorted = file_ids;
  std::sort(sorted.begin(), sorted.end());
  require(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end(), where + ": a token id is listed twice");
  for (const std::vector<float>* rows : {&embed, head})
    for (size_t i = 0; rows && i < rows->size(); ++i)
      require(std::isfinite((*rows)[i]),
              where + ": token row " + std::to_string(i / model.config().dim) + " holds a non-finite value");
  model.add_trainable_tokens(file_ids);  // checks the ids against the vocabulary
  const int64_t D = model.config().dim;
  const TrainableTokens& t = model.trainable_tokens();
  for (size_t k = 0; k < file_ids.size(); ++k) {
    const int64_t j = t.slot[file_ids[k]];
    std::copy_n(embed.data() + k * D, D, model.token_embed_rows().data() + j * D);
    if (head) std::copy_n(head->data() + k * D, D, model.token_head_rows().data() + j * D);
  }
}

// PEFT's trainable_token_indices: a list (the embedding's rows) or {module: ids}; pricer trains
// the same rows of the embedding and (untied) head.
std::vector<int32_t> peft_token_indices(const nlohmann::json& j, const std::string& where, bool* head_listed) {
  *head_listed = false;
  if (!j.contains("trainable_token_indices") || j["trainable_token_indices"].is_null()) return {};
  const nlohmann::json& t = j["trainable_token_indices"];
  auto read = [&](const nlohmann::json& list) {
    require(list.is_array(), where + ": trainable_token_indices must list token ids");
    std::vector<int64_t> v;
    for (const auto& x : list) {
      require(x.is_number_integer(), where + ": trainable_token_indices holds a non-integer");
      v.push_back(x.get<int64_t>());
    }
    return ids_of(v, where);
  };
  if (t.is_array()) return read(t);
  require(t.is_object(), where + ": trainable_token_indices must be a list or an object of lists");
  std::vector<int32_t> embed, head;
  for (const auto& [module, list] : t.items()) {
    if (module.ends_with("embed_tokens")) {
      embed = read(list);
    } else if (module.ends_with("lm_head")) {
      head = read(list);
      *head_listed = true;
    } else {
      throw Error(where + ": trainable_token_indices for '" + module +
                  "': only embed_tokens and lm_head are supported");
    }
  }
  require(!embed.empty(), where + ": trainable_token_indices has no embed_tokens rows");
  require(!*head_listed || head == embed, where + ": pricer trains the same token rows in the embedding and the head");
  return embed;
}

}  // namespace

std::string token_rows_path(const std::string& gguf_adapter_path) {
  fs::path p(gguf_adapter_path);
  return (p.parent_path() / (p.stem().string() + ".tokens.gguf")).string();
}

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
  nlohmann::json token_indices = nullptr;
  if (model.has_trainable_tokens()) {
    const TrainableTokens& t = model.trainable_tokens();
    const int64_t n = static_cast<int64_t>(t.ids.size()), D = model.config().dim;
    w.add(kPeftEmbedRows, "F32", {n, D}, bytes_of(t.embed));
    token_indices = {{"embed_tokens", t.ids}};
    if (!model.config().tied_embeddings) {
      w.add(kPeftHeadRows, "F32", {n, D}, bytes_of(t.head));
      token_indices["lm_head"] = t.ids;
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
                        {"modules_to_save", nullptr},
                        {"trainable_token_indices", token_indices}};
  write_file_atomic((fs::path(dir) / "adapter_config.json").string(), cfg.dump(2) + "\n");
}

void save_gguf_adapter(const LlamaModel& model, const std::string& path, const std::vector<GgufKV>& extra) {
  require(model.has_lora(), "no LoRA adapters to save");
  const ModelConfig& c = model.config();
  const LoraConfig& lc = model.lora_config();
  GgufWriter w;
  w.add("general.architecture", GgufValue::string(c.architecture));
  w.add("general.type", GgufValue::string("adapter"));
  w.add("adapter.type", GgufValue::string("lora"));
  // llama.cpp scales by alpha / rank; rsLoRA's alpha / sqrt(rank) is expressed as an equivalent alpha.
  w.add("adapter.lora.alpha", GgufValue::f32(lc.scale() * static_cast<float>(lc.rank)));
  for (const GgufKV& kv : extra) w.add(kv.key, kv.value);
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
  const std::string rows_path = token_rows_path(path);
  if (model.has_trainable_tokens()) {
    const TrainableTokens& t = model.trainable_tokens();
    const int64_t n = static_cast<int64_t>(t.ids.size());
    GgufWriter rw;
    rw.add("general.architecture", GgufValue::string(c.architecture));
    rw.add("general.type", GgufValue::string("adapter"));
    rw.add("adapter.type", GgufValue::string("token_rows"));
    rw.add("adapter.token_rows.ids", GgufValue::i32_array(t.ids));
    rw.add_tensor(kGgufEmbedRows, {c.dim, n}, GgmlType::F32, bytes_of(t.embed));
    if (!c.tied_embeddings) rw.add_tensor(kGgufHeadRows, {c.dim, n}, GgmlType::F32, bytes_of(t.head));
    const auto rb = rw.to_bytes();
    write_file_atomic(rows_path, std::string(rb.begin(), rb.end()));
    w.add("pricer.token_rows", GgufValue::string(fs::path(rows_path).filename().string()));
  } else {
    fs::remove(rows_path);  // rows of an earlier save must not come back with this adapter
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
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  nlohmann::json j = parse_json_strict(text, cfg_path.string());
  require(j.is_object(), cfg_path.string() + ": not a JSON object");
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
      if (!list.empty()) list += ',';
      list += m.get<std::string>();
    }
  }
  lc.targets = parse_lora_targets(list);
  lc.validate(cfg_path.string());
  return lc;
}

namespace {

void load_gguf_token_rows(LlamaModel& model, const std::string& adapter_path, const std::string& rows_name) {
  const fs::path rows_path = fs::path(adapter_path).parent_path() / rows_name;
  require(fs::path(rows_name).filename() == rows_name && fs::exists(rows_path),
          adapter_path + ": saved with trained token rows in " + rows_path.string() + ", which is missing");
  GgufFile f = GgufFile::open(rows_path.string());
  const std::string src = rows_path.string();
  require(f.get_string("general.type") == "adapter" && f.get_string("adapter.type") == "token_rows",
          src + ": not a token-rows file (general.type / adapter.type)");
  const std::vector<int32_t> ids = ids_of(f.get_int_array("adapter.token_rows.ids"), src);
  require(!ids.empty(), src + ": no token ids");
  const ModelConfig& c = model.config();
  auto rows = [&](const char* name) {
    const GgufTensorInfo* t = nullptr;
    for (const auto& ti : f.tensors())
      if (ti.name == name) t = &ti;
    require(t != nullptr, src + ": missing tensor " + name);
    require(t->type == GgmlType::F32, src + ": tensor " + std::string(name) + " is not F32");
    require(t->ne == std::vector<int64_t>{c.dim, static_cast<int64_t>(ids.size())},
            src + ": tensor " + std::string(name) + " has the wrong shape");
    return floats_of(f.tensor_data(*t));
  };
  const std::vector<float> embed = rows(kGgufEmbedRows);
  std::vector<float> head;
  if (!c.tied_embeddings) head = rows(kGgufHeadRows);
  set_token_rows(model, ids, embed, c.tied_embeddings ? nullptr : &head, src);
}

}  // namespace

namespace {

// The adapter tensors (and token rows) of a llama.cpp LoRA GGUF into the model's adapters.
void load_gguf_adapter(LlamaModel& model, const std::string& path) {
  const ModelConfig& c = model.config();
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
        const std::vector<int64_t> want =
            ab == 'a' ? std::vector<int64_t>{a->in, a->rank} : std::vector<int64_t>{a->rank, a->out};
        require(t->ne == want, path + ": tensor " + name + " has the wrong shape");
        std::span<const uint8_t> raw = f.tensor_data(*t);
        if (ab == 'a') {
          a->A = floats_of(raw);
        } else {
          const int64_t heads = rope_heads(c, p);
          a->B = heads ? floats_of(rope_rows_to_hf(raw, heads, c.head_dim, static_cast<size_t>(a->rank) * 4))
                       : floats_of(raw);
        }
        require_finite(ab == 'a' ? a->A : a->B, path, name);
      }
    }
  }
  if (const auto rows_name = f.get_string_opt("pricer.token_rows")) load_gguf_token_rows(model, path, *rows_name);
}

// The adapter tensors of a PEFT directory (or its adapter_config.json / safetensors file), then
// the trainable token rows its config lists.
void load_peft_adapter(LlamaModel& model, const std::string& path) {
  const ModelConfig& c = model.config();
  const fs::path st_path = peft_dir(path) / "adapter_model.safetensors";
  require(fs::exists(st_path),
          st_path.string() + ": not found (a PEFT adapter directory needs adapter_model.safetensors)");
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
        require_finite(ab == 'A' ? a->A : a->B, st_path.string(), name);
      }
    }
  }
  const fs::path cfg_path = peft_dir(path) / "adapter_config.json";
  std::ifstream in(cfg_path);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);  // read_adapter_config checked it
  bool head_listed = false;
  const std::vector<int32_t> ids = peft_token_indices(j, cfg_path.string(), &head_listed);
  if (ids.empty()) return;
  const int64_t n = static_cast<int64_t>(ids.size());
  auto rows = [&](const char* name) {
    const SafetensorsTensor* t = f.find(name);
    require(t != nullptr,
            st_path.string() + ": missing tensor " + name + " (adapter_config.json lists trainable tokens)");
    require_shape(st_path.string(), name, t->shape, n, c.dim);
    return to_f32(f, *t);
  };
  const std::vector<float> embed = rows(kPeftEmbedRows);
  // An untied head whose rows PEFT did not train keeps the base's rows: set_token_rows's default.
  std::vector<float> head;
  if (!c.tied_embeddings && head_listed) head = rows(kPeftHeadRows);
  set_token_rows(model, ids, embed, head.empty() ? nullptr : &head, cfg_path.string());
}

}  // namespace

void load_adapter(LlamaModel& model, const std::string& path) {
  const LoraConfig lc = read_adapter_config(path);
  model.add_lora(lc, 0);
  model.remove_trainable_tokens();
  if (is_gguf(path)) load_gguf_adapter(model, path);
  else load_peft_adapter(model, path);
}

}  // namespace pricer
