// pricer info MODEL: what a model file holds — architecture, tensors, parameter count, and the
// memory its weights need with the projections held as f32, bf16 or NF4 (the QLoRA base).
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "cli/command.h"
#include "core/atomic_file.h"
#include "io/gguf.h"
#include "io/model_file.h"
#include "train/adapter_io.h"

namespace pricer::cli {

namespace {

bool is_projection(const std::string& name) {
  return name.starts_with("model.layers.") && name.ends_with("_proj.weight");
}

// Bytes of n elements held as `t` (NF4 with its double-quantized block statistics).
int64_t bytes_as(int64_t n, DType t) {
  switch (t) {
    case DType::F32: return n * 4;
    case DType::BF16: return n * 2;
    default: {
      const int64_t blocks = (n + kNf4BlockSize - 1) / kNf4BlockSize;
      return (n + 1) / 2 + blocks + (blocks + kNf4AbsmaxBlockSize - 1) / kNf4AbsmaxBlockSize * 4 + 4;
    }
  }
}

std::string human(int64_t bytes) {
  char buf[32];
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  else if (b >= 1024.0 * 1024) std::snprintf(buf, sizeof buf, "%.2f MiB", b / (1024.0 * 1024));
  else if (b >= 1024.0) std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  else std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  return buf;
}

// A LoRA adapter (PEFT directory or GGUF LoRA) rather than a model.
bool is_adapter(const std::string& path) {
  namespace fs = std::filesystem;
  if (fs::is_directory(path)) return fs::exists(fs::path(path) / "adapter_config.json");
  if (!path.ends_with(".gguf")) return false;
  return GgufFile::open(path).get_string_opt("general.type") == std::optional<std::string>("adapter");
}

// The base model an adapter names: PEFT's base_model_name_or_path, GGUF's general.base_model.0.name.
std::string adapter_base(const std::string& path) {
  namespace fs = std::filesystem;
  if (fs::is_directory(path)) {
    const auto j = nlohmann::json::parse(read_file(fs::path(path) / "adapter_config.json", 1 << 20), nullptr, false);
    return j.is_object() && j.value("base_model_name_or_path", nlohmann::json()).is_string()
               ? j["base_model_name_or_path"].get<std::string>()
               : "";
  }
  return GgufFile::open(path).get_string_opt("general.base_model.0.name").value_or("");
}

int run_adapter_info(const std::string& path, bool as_json) {
  const LoraConfig lc = read_adapter_config(path);
  std::string targets;
  for (int p = 0; p < kNumProj; ++p)
    if (lc.targets[static_cast<size_t>(p)])
      targets += (targets.empty() ? "" : ",") + std::string(proj_name(static_cast<Proj>(p)));
  const std::string base = adapter_base(path);
  if (as_json) {
    std::printf("%s\n", nlohmann::json{{"source", path},
                                       {"format", "lora-adapter"},
                                       {"rank", lc.rank},
                                       {"alpha", lc.alpha},
                                       {"rslora", lc.rslora},
                                       {"targets", targets},
                                       {"base_model", base}}
                            .dump(2)
                            .c_str());
    return 0;
  }
  std::printf("adapter      %s (LoRA)\n", path.c_str());
  std::printf("rank         %lld, alpha %g%s (scale %g)\n", static_cast<long long>(lc.rank), lc.alpha,
              lc.rslora ? ", rsLoRA" : "", lc.scale());
  std::printf("targets      %s\n", targets.c_str());
  std::printf("base model   %s\n", base.empty() ? "(not named in the file)" : base.c_str());
  return 0;
}

int run_info(const std::string& path, bool list_tensors, bool show_metadata, bool as_json) {
  if (is_adapter(path)) return run_adapter_info(path, as_json);
  const ModelFile m = load_model_file(path);
  const ModelConfig& c = m.config;
  int64_t params = 0, stored = 0, proj_elems = 0, other_bytes = 0;
  std::map<std::string, std::pair<int64_t, int64_t>> by_dtype;  // dtype -> (tensors, bytes)
  for (const auto& [name, w] : m.tensors) {
    params += w.numel();
    stored += static_cast<int64_t>(w.bytes());
    auto& d = by_dtype[std::string(dtype_name(w.dtype()))];
    d.first += 1;
    d.second += static_cast<int64_t>(w.bytes());
    if (is_projection(name)) proj_elems += w.numel();
    else other_bytes += static_cast<int64_t>(w.bytes());
  }
  const std::map<std::string, int64_t> memory = {{"f32", other_bytes + bytes_as(proj_elems, DType::F32)},
                                                 {"bf16", other_bytes + bytes_as(proj_elems, DType::BF16)},
                                                 {"nf4", other_bytes + bytes_as(proj_elems, DType::NF4)}};

  if (as_json) {
    nlohmann::json j = {{"source", m.source},   {"format", m.format},     {"config", hf_config_to_json(c)},
                        {"parameters", params}, {"stored_bytes", stored}, {"memory_bytes", memory}};
    for (const auto& [name, w] : m.tensors) {
      j["tensors"][name] = {{"shape", {w.rows(), w.cols()}}, {"dtype", dtype_name(w.dtype())}};
    }
    if (show_metadata) j["metadata"] = m.metadata;
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }

  std::printf("model        %s (%s)\n", m.source.c_str(), m.format.c_str());
  std::printf("architecture %s%s%s\n", c.architecture.c_str(), c.qkv_bias ? ", q/k/v bias" : "",
              c.tied_embeddings ? ", tied embeddings" : "");
  std::printf("vocab        %lld (bos %d, eos %d)\n", static_cast<long long>(c.vocab_size), c.bos_id, c.eos_id);
  std::printf("layers       %lld, dim %lld, ffn %lld\n", static_cast<long long>(c.n_layers),
              static_cast<long long>(c.dim), static_cast<long long>(c.ffn_dim));
  std::printf("attention    %lld heads, %lld kv heads, head dim %lld\n", static_cast<long long>(c.n_heads),
              static_cast<long long>(c.n_kv_heads), static_cast<long long>(c.head_dim));
  std::printf("context      %lld, rope theta %g", static_cast<long long>(c.max_seq_len), c.rope_theta);
  if (c.rope_scaling.factor > 1.0f) {
    std::printf(", llama3 scaling x%g (low %g, high %g, original %lld)", c.rope_scaling.factor,
                c.rope_scaling.low_freq_factor, c.rope_scaling.high_freq_factor,
                static_cast<long long>(c.rope_scaling.original_max_position));
  }
  std::printf(", rms eps %g\n", c.rms_eps);
  std::printf("parameters   %lld (%.2f M)\n", static_cast<long long>(params), static_cast<double>(params) / 1e6);
  std::printf("stored       %s:", human(stored).c_str());
  for (const auto& [dt, d] : by_dtype) {
    std::printf(" %s %lld tensors %s;", dt.c_str(), static_cast<long long>(d.first), human(d.second).c_str());
  }
  std::printf("\nmemory       weights with projections as f32 %s, bf16 %s, nf4 %s\n", human(memory.at("f32")).c_str(),
              human(memory.at("bf16")).c_str(), human(memory.at("nf4")).c_str());
  if (list_tensors) {
    std::printf("\n%-52s %-16s %s\n", "tensor", "shape", "dtype");
    for (const auto& [name, w] : m.tensors) {
      const std::string shape = "[" + std::to_string(w.rows()) + ", " + std::to_string(w.cols()) + "]";
      std::printf("%-52s %-16s %s\n", name.c_str(), shape.c_str(), std::string(dtype_name(w.dtype())).c_str());
    }
  }
  if (show_metadata) std::printf("\n%s\n", m.metadata.dump(2).c_str());
  return 0;
}

const Registrar reg{
    "info", "Show a model file's architecture, tensors, parameter count and memory needs", [](CLI::App& sub) -> Runner {
      auto path = std::make_shared<std::string>();
      auto tensors = std::make_shared<bool>(false);
      auto metadata = std::make_shared<bool>(false);
      auto json = std::make_shared<bool>(false);
      sub.add_option("model", *path, "GGUF file, Hugging Face directory, .safetensors file or llama2.c .bin")
          ->required();
      sub.add_flag("--tensors", *tensors, "List every tensor with its shape and dtype");
      sub.add_flag("--metadata", *metadata, "Print the file's metadata");
      sub.add_flag("--json", *json, "Print everything as JSON");
      return [=] { return run_info(*path, *tensors, *metadata, *json); };
    }};

}  // namespace

}  // namespace pricer::cli
