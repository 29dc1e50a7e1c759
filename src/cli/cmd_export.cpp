// pricer export: writes a model (optionally with a LoRA adapter merged in) as one GGUF file that
// llama.cpp and every pricer command load, tokenizer embedded, or as a Hugging Face directory
// (config.json, model.safetensors, tokenizer.json), in the weight format asked for.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include "cli/command.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/format.h"
#include "core/progress.h"
#include "io/model_file.h"
#include "model/model_export.h"
#include "model/quant_mix.h"
#include "quant/ggml_blocks.h"
#include "retrieval/comparables.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_export.h"
#include "train/adapter_io.h"

namespace fs = std::filesystem;

namespace pricer::cli {
namespace {

struct Options {
  std::string model, tokenizer, adapter, out, format, dtype = "auto", name;
  bool merge = false, quiet = false;
};

constexpr const char* kGgufDtypes[] = {"f32", "bf16", "f16", "q8_0", "q4_0", "q4_k", "q5_k", "q6_k"};
constexpr const char* kSafetensorsDtypes[] = {"f32", "bf16", "f16"};

std::string resolve_format(const Options& o) {
  if (!o.format.empty()) {
    require(o.format == "gguf" || o.format == "safetensors",
            "--format: expected gguf or safetensors, got '" + o.format + "'");
    return o.format;
  }
  const fs::path ext = fs::path(o.out).extension();
  if (ext == ".gguf") return "gguf";
  if (ext.empty()) return "safetensors";
  throw Error("--format not given and '" + o.out +
              "' names neither a .gguf file nor a directory; add --format gguf|safetensors");
}

// The weight format asked for; std::nullopt = each tensor as stored (where the format can hold it).
std::optional<DType> resolve_dtype(const std::string& name, const std::string& format) {
  if (name == "auto") return std::nullopt;
  std::string allowed = "auto";
  auto check = [&](const auto& list) {
    for (const char* d : list) {
      allowed += std::string(", ") + d;
      if (name == d) return true;
    }
    return false;
  };
  const bool ok = format == "gguf" ? check(kGgufDtypes) : check(kSafetensorsDtypes);
  if (format == "gguf") allowed += ", q4_k_m, q5_k_m";
  require(ok, "--dtype '" + name + "' cannot be written as " + format + " (choose " + allowed + ")");
  return dtype_from_name(name);
}

// The weights' format: one for every matrix, a mix (GGUF only), or each as stored (neither).
struct WeightFormat {
  std::optional<DType> dtype;
  std::optional<QuantMix> mix;
  std::string label() const {
    if (mix) return mix->name;
    return dtype ? std::string(dtype_name(*dtype)) : "formats as stored";
  }
};

WeightFormat resolve_weight_format(const std::string& name, const std::string& format) {
  if (const auto mix = quant_mix(name)) {
    require(format == "gguf", "--dtype " + name + " is a GGUF format: write a .gguf file");
    return {std::nullopt, mix};
  }
  return {resolve_dtype(name, format), std::nullopt};
}

// Fails before a possibly large model is loaded when the output cannot be written.
void check_output(const std::string& out, const std::string& format) {
  std::error_code ec;
  if (format == "gguf") {
    require(!fs::is_directory(out, ec), "--out " + out + ": is a directory; a GGUF export is one file");
    fs::path dir = fs::path(out).parent_path();
    if (dir.empty()) dir = ".";
    require(fs::is_directory(dir, ec),
            "--out " + out + ": cannot write there: " + dir.string() + " is not a directory");
    require(::access(dir.c_str(), W_OK) == 0,
            "--out " + out + ": cannot write there: " + dir.string() + " is not writable");
    return;
  }
  require(!fs::exists(out, ec) || fs::is_directory(out, ec),
          "--out " + out + ": exists and is not a directory; a safetensors export is a Hugging Face directory");
  // The directory, or the nearest existing one above it where it will be created.
  fs::path dir = fs::absolute(out, ec);
  while (!fs::exists(dir, ec) && dir.has_parent_path() && dir.parent_path() != dir) dir = dir.parent_path();
  require(fs::is_directory(dir, ec), "--out " + out + ": cannot create it: " + dir.string() + " is not a directory");
  require(::access(dir.c_str(), W_OK) == 0,
          "--out " + out + ": cannot write there: " + dir.string() + " is not writable");
}

// The tokenizer given, else the one inside or beside the model; nullptr when there is none.
std::unique_ptr<Tokenizer> open_tokenizer(const Options& o, const ModelFile& mf) {
  if (!o.tokenizer.empty()) return load_tokenizer(o.tokenizer);
  if (mf.format == "gguf") {
    for (const GgufKV& kv : mf.gguf_metadata)
      if (kv.key == "tokenizer.ggml.model") return load_tokenizer(o.model);
    return nullptr;
  }
  const fs::path dir = mf.format == "hf" ? fs::path(o.model) : fs::path(o.model).parent_path();
  if (mf.format != "llama2c" && (fs::exists(dir / "tokenizer.json") || fs::exists(dir / "tokenizer.model")))
    return load_tokenizer(dir.string());
  return nullptr;
}

// Where a tokenizer.json the tokenizer came from lies, if it came from one.
std::optional<fs::path> source_tokenizer_json(const Options& o, const ModelFile& mf) {
  fs::path p = !o.tokenizer.empty() ? fs::path(o.tokenizer)
               : mf.format == "hf"  ? fs::path(o.model)
                                    : fs::path(o.model).parent_path();
  if (fs::is_directory(p)) p /= "tokenizer.json";
  if (p.filename() == "tokenizer.json" && fs::exists(p)) return p;
  return std::nullopt;
}

int64_t data_bytes(DType t, int64_t n) { return t == DType::F32 ? 4 * n : static_cast<int64_t>(raw_bytes(t, n)); }

bool is_vector(const std::string& name) { return name.ends_with("norm.weight") || name.ends_with(".bias"); }

// llama.cpp's general.file_type (llama_ftype) for a model written all in one format.
std::optional<uint32_t> llama_file_type(DType t) {
  switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q8_0: return 7;
    case DType::Q4_K: return 14;  // Q4_K_S: q4_k throughout
    case DType::Q5_K: return 16;  // Q5_K_S
    case DType::Q6_K: return 18;
    case DType::BF16: return 32;
    default: return std::nullopt;
  }
}

// Fails on a missing or contradictory option before anything is read or written.
void check_options(const Options& o) {
  require(!o.model.empty(), "--model is required");
  require(!o.out.empty(), "--out is required");
  require(!o.merge || !o.adapter.empty(), "--merge needs --adapter (the LoRA adapter to merge into the weights)");
  require(o.adapter.empty() || fs::exists(o.adapter), "--adapter " + o.adapter + ": no such file or directory");
}

// Every token must fit the model's embedding, and a GGUF export cannot go without a tokenizer.
void check_tokenizer(const Tokenizer* tok, const ModelConfig& cfg, const std::string& format, const Options& o) {
  if (tok) {
    require(tok->vocab_size() <= cfg.vocab_size, "the tokenizer has " + std::to_string(tok->vocab_size()) +
                                                     " tokens, more than the model's vocab of " +
                                                     std::to_string(cfg.vocab_size));
  } else {
    require(format != "gguf", o.model + " holds no tokenizer and a GGUF export always embeds one: give --tokenizer");
  }
}

// With an adapter the model is built to merge it (or to write it beside the base); without one
// the loaded tensors are written as they are.
std::map<std::string, Weight> tensors_to_export(const Options& o, ModelFile& mf, const ModelConfig& cfg,
                                                std::optional<LlamaModel>& model) {
  std::map<std::string, Weight> tensors;
  if (!o.adapter.empty()) {
    model.emplace(LlamaModel::from_weights(cfg, std::move(mf.tensors), mf.source));
    load_adapter(*model, o.adapter);
    tensors = export_tensors(*model, o.merge);
  } else {
    tensors = std::move(mf.tensors);
  }
  return tensors;
}

// Every tensor's output format, decided here so the writers convert one tensor at a time; returns
// the bytes of tensor data that will be written.
int64_t plan_tensor_dtypes(const std::map<std::string, Weight>& tensors, const ModelConfig& cfg,
                           const std::string& format, const WeightFormat& wf, TensorWriteOptions& write) {
  int64_t total = 0;
  int fallbacks = 0;
  std::string fallback_example;
  for (const auto& [name, w] : tensors) {
    DType d = w.dtype();
    if (format == "gguf" && is_vector(name)) {
      d = DType::F32;
    } else if (wf.mix || wf.dtype) {
      const DType want = wf.mix ? mixed_dtype(*wf.mix, name, cfg.n_layers, cfg.tied_embeddings) : *wf.dtype;
      d = fitting_block_format(want, w.cols());
      if (d != want && ++fallbacks == 1)
        fallback_example = name + " (" + std::to_string(w.cols()) + " columns) as " + std::string(dtype_name(d));
    } else if (d == DType::NF4 || (format == "safetensors" && d != DType::F32 && d != DType::F16 && d != DType::BF16)) {
      d = format == "gguf" ? DType::F16 : DType::F32;
    }
    write.dtypes[name] = d;
    total += data_bytes(d, w.numel());
  }
  if (fallbacks > 0) {
    std::fprintf(
        stderr,
        "note: %d tensor%s with rows that are not whole %s blocks written in a format that holds them, e.g. %s\n",
        fallbacks, fallbacks == 1 ? "" : "s", wf.label().c_str(), fallback_example.c_str());
  }
  return total;
}

// A model or adapter trained with comparables prices only with their index: the export keeps the
// mark (GGUF metadata) and the index beside itself, so that it prices as its source does.
struct ComparablesCarry {
  std::string from, to;  // the source's index and where the export's goes
  int k = 0;
};

// Comparables indexes are read whole to compare or copy them; one over this is no index of ours.
constexpr std::size_t kMaxIndexBytes = std::size_t{1} << 30;

// Fails before anything is written when the source is marked but its index is lost, or another
// index already lies where the export's would go.
std::optional<ComparablesCarry> plan_comparables(const Options& o, const ModelFile& mf, const std::string& format) {
  const bool adapter_beside = !o.adapter.empty() && !o.merge;
  const std::string from = retrieval::comparables_beside(o.adapter.empty() ? o.model : o.adapter);
  if (!fs::exists(from)) {
    const bool marked =
        o.adapter.empty() && std::any_of(mf.gguf_metadata.begin(), mf.gguf_metadata.end(),
                                         [](const GgufKV& kv) { return kv.key == retrieval::kComparablesKey; });
    require(!marked, o.model + ": trained with comparables in its prompts, and their index " + from +
                         " is missing: the export could not price as the model does");
    return std::nullopt;
  }
  const fs::path out(o.out);
  const fs::path dir = format == "gguf" ? out.parent_path() : adapter_beside ? out / "adapter" : out;
  ComparablesCarry c{from, (dir / retrieval::kComparablesFile).string(), retrieval::ComparablesIndex::load(from).k()};
  require(!fs::exists(c.to) || fs::equivalent(c.to, c.from) ||
              read_file(c.to, kMaxIndexBytes) == read_file(c.from, kMaxIndexBytes),
          c.to + " holds another comparables index; export to another directory (the index of " + o.model +
              " has to lie beside its export)");
  return c;
}

std::string copy_comparables(const ComparablesCarry& c) {
  if (!fs::exists(c.to)) {
    fs::create_directories(fs::path(c.to).parent_path());
    write_file_atomic(c.to, read_file(c.from, kMaxIndexBytes));
  }
  return "; comparables index " + c.to;
}

void write_gguf(const Options& o, const ModelConfig& cfg, const std::map<std::string, Weight>& tensors,
                const Tokenizer& tok, const WeightFormat& wf, const TensorWriteOptions& write,
                const std::optional<ComparablesCarry>& comparables) {
  GgufExportOptions go;
  go.name = o.name.empty() ? fs::path(o.model).filename().replace_extension().string() : o.name;
  go.extra = gguf_tokenizer_metadata(tok, cfg.vocab_size);
  const std::optional<uint32_t> ft = wf.mix     ? std::optional<uint32_t>(wf.mix->file_type)
                                     : wf.dtype ? llama_file_type(*wf.dtype)
                                                : std::nullopt;
  if (ft) go.extra.push_back({"general.file_type", GgufValue::u32(*ft)});
  if (comparables)
    go.extra.push_back({retrieval::kComparablesKey, GgufValue::u32(static_cast<uint32_t>(comparables->k))});
  go.write = write;
  save_gguf(o.out, cfg, tensors, go);
}

// Writes tokenizer.json (and tokenizer_config.json) into the Hugging Face directory: converted
// from the tokenizer when it has an exact form, else copied from where it came from. Returns
// the summary's tokenizer note.
std::string write_hf_tokenizer(const Options& o, const ModelFile& mf, const Tokenizer& tok) {
  const fs::path dir(o.out);
  if (auto json = hf_tokenizer_json(tok)) {
    write_file_atomic(dir / "tokenizer.json", *json);
    nlohmann::json config = {{"tokenizer_class", "PreTrainedTokenizerFast"}};
    if (tok.bos_id() >= 0) config["bos_token"] = tok.token_bytes(tok.bos_id());
    if (tok.eos_id() >= 0) config["eos_token"] = tok.token_bytes(tok.eos_id());
    write_file_atomic(dir / "tokenizer_config.json", config.dump(2) + "\n");
    return "tokenizer.json";
  }
  if (auto src = source_tokenizer_json(o, mf)) {
    fs::copy_file(*src, dir / "tokenizer.json", fs::copy_options::overwrite_existing);
    if (fs::exists(src->parent_path() / "tokenizer_config.json"))
      fs::copy_file(src->parent_path() / "tokenizer_config.json", dir / "tokenizer_config.json",
                    fs::copy_options::overwrite_existing);
    return "tokenizer.json copied";
  }
  std::fprintf(stderr,
               "note: the SentencePiece-style tokenizer has no exact tokenizer.json form; "
               "none written (load the export with --tokenizer)\n");
  return "no tokenizer";
}

// Without --merge the adapter goes beside the base, in the output's own format. Returns the
// summary's adapter note.
std::string write_adapter(const Options& o, const std::string& format, const std::optional<LlamaModel>& model) {
  if (!o.adapter.empty() && !o.merge) {
    if (format == "gguf") {
      const std::string path = fs::path(o.out).replace_extension(".lora.gguf").string();
      save_gguf_adapter(*model, path);
      return "; adapter " + path + " (llama.cpp --lora)";
    }
    const std::string path = (fs::path(o.out) / "adapter").string();
    save_peft_adapter(*model, path, o.out);
    return "; adapter " + path + " (PEFT)";
  }
  if (o.merge) return "; adapter merged";
  return "";
}

int run(const Options& o) {
  check_options(o);
  const std::string format = resolve_format(o);
  const WeightFormat wf = resolve_weight_format(o.dtype, format);
  check_output(o.out, format);

  ModelFile mf = load_model_file(o.model);
  const std::unique_ptr<Tokenizer> tok = open_tokenizer(o, mf);
  const ModelConfig cfg = mf.config;
  check_tokenizer(tok.get(), cfg, format, o);
  const std::optional<ComparablesCarry> comparables = plan_comparables(o, mf, format);

  std::optional<LlamaModel> model;
  const std::map<std::string, Weight> tensors = tensors_to_export(o, mf, cfg, model);
  TensorWriteOptions write;
  const int64_t total = plan_tensor_dtypes(tensors, cfg, format, wf, write);

  ProgressOptions po;
  po.bytes = true;
  po.enabled = !o.quiet;
  Progress progress("export", static_cast<uint64_t>(total), po);
  write.on_written = [&progress](uint64_t b) { progress.add(b); };
  std::string tokenizer_note = "no tokenizer";
  if (format == "gguf") {
    write_gguf(o, cfg, tensors, *tok, wf, write, comparables);
    tokenizer_note = "tokenizer embedded";
  } else {
    save_hf_dir(o.out, cfg, tensors, DType::F32, write);
    if (tok) tokenizer_note = write_hf_tokenizer(o, mf, *tok);
  }
  progress.finish();

  const std::string adapter_note = write_adapter(o, format, model);
  const std::string comparables_note = comparables ? copy_comparables(*comparables) : "";
  std::printf("%s: %s, %s, %zu tensors, %s, %s%s%s\n", o.out.c_str(), format.c_str(), wf.label().c_str(),
              tensors.size(), human_bytes(static_cast<uint64_t>(total)).c_str(), tokenizer_note.c_str(),
              adapter_note.c_str(), comparables_note.c_str());
  return 0;
}

Registrar reg{
    "export", "Write a model (optionally with its LoRA adapter merged) as GGUF or a Hugging Face directory",
    [](CLI::App& sub) {
      auto o = std::make_shared<Options>();
      sub.add_option("-m,--model", o->model, "GGUF file, Hugging Face directory, .safetensors file or llama2.c .bin");
      sub.add_option("--tokenizer", o->tokenizer,
                     "tokenizer.model, tokenizer.json, tok*.bin or GGUF (default: the model's own; a GGUF "
                     "export always embeds one)");
      sub.add_option("--adapter", o->adapter, "LoRA adapter (PEFT directory or GGUF LoRA)");
      sub.add_flag("--merge", o->merge,
                   "Merge the adapter into the weights (W + scale B A): one model that predicts as base + "
                   "adapter. Without --merge the base is written and the adapter beside it in the same "
                   "format (OUT.lora.gguf for llama.cpp --lora, or OUT/adapter as PEFT)");
      sub.add_option("-o,--out", o->out, "Output: a .gguf file, or a directory for safetensors");
      sub.add_option("--format", o->format, "gguf or safetensors (default: gguf for a .gguf name, else safetensors)");
      sub.add_option("--dtype", o->dtype,
                     "Weight format: auto (as stored), f32, bf16, f16, q8_0, q4_0, q4_k, q5_k, q6_k, q4_k_m or "
                     "q5_k_m (q4_k or q5_k with q6_k for the head and some value and down projections, as "
                     "llama.cpp's Q4_K_M and Q5_K_M; for phones) (GGUF); auto, f32, bf16, f16 (safetensors). "
                     "Norms stay f32 in GGUF; a matrix whose rows are not whole blocks falls back to plain "
                     "blocks (q4_k to q4_0, q5_k and q6_k to q8_0) or f16")
          ->capture_default_str();
      sub.add_option("--name", o->name, "general.name of a GGUF export (default: the model's file name)");
      sub.add_flag("-q,--quiet", o->quiet, "No progress bar");
      return [o] { return run(*o); };
    }};

}  // namespace
}  // namespace pricer::cli
