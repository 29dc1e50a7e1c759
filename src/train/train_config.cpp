// TrainConfig: its YAML keys, JSON form and checks; the output directory a run may use; the
// learning-rate schedule.
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <filesystem>
#include <numbers>
#include <set>
#include <type_traits>

#include "core/atomic_file.h"
#include "core/comm.h"
#include "core/error.h"
#include "core/suggest.h"
#include "data/cross_fit.h"
#include "retrieval/comparables.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace pricer {

namespace {

using C = TrainConfig;

// Every training setting, in the order the options are listed. Names are the long options with
// '_'; `train` reads them all, `pretrain` those not marked fine-tuning only.
const TrainSetting kSettings[] = {
    // What to train on (fine-tuning).
    {"model", "-m", &C::model, "Base model: GGUF, Hugging Face directory, safetensors or llama2.c .bin", true},
    {"tokenizer", "", &C::tokenizer, "Tokenizer (default: the model's)", true},
    {"data", "-d", &C::dataset,
     "Dataset: curate directory, or JSON lines (prompt/completion or input_ids/completion_start)", true},
    {"base_dtype", "", &C::base_dtype, "Frozen base format: nf4, bf16 or f32", true},
    {"compute_dtype", "", &C::compute_dtype,
     "Precision of the base's linears: bf16 (bf16 operands, f32 sums; about twice as fast) or f32", true},
    // The adapters (fine-tuning).
    {"rank", "-r", &C::rank, "LoRA rank", true, true},
    {"alpha", "", &C::alpha, "LoRA alpha", true, true},
    {"dropout", "", &C::dropout, "LoRA dropout", true, true},
    {"targets", "", &C::targets, "Adapted projections: q,k,v,o,gate,up,down or all", true, true},
    {"rslora", "", &C::rslora, "Scale by alpha/sqrt(rank)", true, true},
    {"init_adapter", "", &C::init_adapter, "Start from a PEFT directory or GGUF LoRA adapter", true},
    {"trainable_tokens", "", &C::trainable_tokens,
     "Also train these token rows of the frozen embedding and head (PEFT trainable_token_indices): "
     "numbers (the price tokens 0-999) or ids 17,42,...",
     true},
    {"full", "", &C::full,
     "Full fine-tuning: train every weight (needs --base-dtype f32) and save <out>/last/model.gguf; "
     "best for small bases, QLoRA for large ones",
     true},
    {"comparables", "", &C::comparables,
     "Write the prices of the K most similar training items into every prompt (0 = off); the index "
     "is saved beside each output, and prediction adds the same",
     true},
    {"cross_fit_folds", "", &C::cross_fit_folds,
     "Cross-fitting: cut the training items into this many folds by a hash of their prompts and leave "
     "--cross-fit-fold out (0 = train on every item); the ensemble prices each fold with the model "
     "that never saw it",
     true},
    {"cross_fit_fold", "", &C::cross_fit_fold, "The fold left out, 0 to cross_fit_folds - 1", true},
    // The loop (both commands).
    {"out", "", &C::out_dir, "Output directory (adapters or model, checkpoint)"},
    {"max_length", "", &C::max_length, "Maximum tokens per example"},
    {"optimizer", "", &C::optimizer, "adamw or sgd", false, true},
    {"lr", "", &C::lr, "Peak learning rate", false, true},
    {"schedule", "", &C::schedule, "cosine, linear or constant (after warmup)", false, true},
    {"warmup_ratio", "", &C::warmup_ratio, "Share of steps spent warming up", false, true},
    {"weight_decay", "", &C::weight_decay, "Decoupled weight decay", false, true},
    {"max_grad_norm", "", &C::max_grad_norm, "Global gradient-norm clip (0 = off)", false, true},
    {"momentum", "", &C::momentum, "SGD momentum", false, true},
    {"epochs", "", &C::epochs, "Passes over the training split", false, true},
    {"max_steps", "", &C::max_steps, "Stop after this many optimizer steps (0 = no limit)", false, true},
    {"batch_size", "", &C::batch_size, "Examples per optimizer step", false, true},
    {"micro_batch", "", &C::micro_batch,
     "Examples per forward/backward (gradient accumulation); 0 = the batch size, up to 8"},
    {"price_smoothing", "", &C::price_smoothing,
     "Spread the price token's label over nearby prices: a Gaussian of this width in log(1 + price), "
     "e.g. 0.1 (0 = one-hot)"},
    {"ema", "", &C::ema,
     "Evaluate and save an exponential moving average of the weights with this decay, e.g. 0.998 "
     "(0 = the weights as trained)"},
    {"checkpoint_layers", "", &C::checkpoint_layers, "Recompute each layer in backward (less memory)"},
    {"eval_every", "", &C::eval_every, "Optimizer steps between evaluations (0 = end only)"},
    {"eval_items", "", &C::eval_items, "Validation items per evaluation (0 = all)"},
    {"early_stopping", "", &C::early_stopping, "Evaluations without improvement before stopping (0 = off)"},
    {"eval_metric", "", &C::eval_metric,
     "loss or mae (of the median price read off the next-token distribution): what 'best' means"},
    {"save_every", "", &C::save_every, "Optimizer steps between checkpoints"},
    {"seed", "", &C::seed, "Seed for data order, adapters and dropout"},
    {"run_name", "", &C::run_name, "Name in the run database"},
    // This invocation's controls.
    {"resume", "", &C::resume, "Continue from <out>/checkpoint.bin", false, false, false},
    {"overwrite", "", &C::overwrite, "Replace a run already in --out (checkpoint, best/, last/)", false, false, false},
    {"runs_db", "", &C::runs_db, "Run database (default runs/pricer.db or $PRICER_RUNS_DB)", false, false, false},
    {"no_record", "", &C::no_record,
     "Keep the run out of the run database (metrics still go to <out>/logs as JSON lines and TensorBoard)", false,
     false, false},
};

// Other names a config file may use: PEFT's and transformers' words, and the struct's.
const std::pair<std::string_view, std::string_view> kAliases[] = {{"dataset", "data"},         {"out_dir", "out"},
                                                                  {"lora_r", "rank"},          {"lora_alpha", "alpha"},
                                                                  {"lora_dropout", "dropout"}, {"learning_rate", "lr"}};

// A float setting as the user wrote it: 0.1f is stored as 0.1, not 0.10000000149011612.
double shortest(float v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
}

std::string line_of(const YAML::Node& n) { return std::to_string(n.Mark().line + 1); }

void read_setting(TrainConfig& cfg, const TrainSetting& s, const YAML::Node& v, const std::string& where) {
  std::visit(
      [&](auto member) {
        try {
          cfg.*member = v.as<std::remove_reference_t<decltype(cfg.*member)>>();
        } catch (const YAML::Exception& e) {
          throw Error(where + ": key '" + std::string(s.name) + "' at line " + line_of(v) + ": " + e.what());
        }
      },
      s.field);
}

}  // namespace

SettingType TrainSetting::type() const {
  switch (field.index()) {
    case 0: return SettingType::text;
    case 1:
    case 2: return SettingType::integer;
    case 3:
    case 4: return SettingType::real;
    default: return SettingType::boolean;
  }
}

std::string TrainSetting::option_names() const {
  std::string o = "--";
  o.append(name);
  std::replace(o.begin(), o.end(), '_', '-');
  if (!short_option.empty()) o.append(",").append(short_option);
  return o;
}

std::span<const TrainSetting> train_settings() { return kSettings; }

const TrainSetting* find_train_setting(std::string_view name) {
  for (const auto& [alias, canonical] : kAliases)
    if (name == alias) name = canonical;
  for (const TrainSetting& s : kSettings)
    if (s.name == name) return &s;
  return nullptr;
}

nlohmann::json setting_value(const TrainConfig& cfg, const TrainSetting& s) {
  return std::visit(
      [&](auto member) -> nlohmann::json {
        const auto& v = cfg.*member;
        if constexpr (std::is_same_v<std::remove_cvref_t<decltype(v)>, float>) return shortest(v);
        else return v;
      },
      s.field);
}

bool fits(SettingType type, const nlohmann::json& v) {
  switch (type) {
    case SettingType::real: return v.is_number();
    case SettingType::integer: return v.is_number_integer();
    case SettingType::text: return v.is_string();
    case SettingType::boolean: return v.is_boolean();
  }
  return false;
}

void set_setting(TrainConfig& cfg, const TrainSetting& s, const nlohmann::json& value) {
  require(fits(s.type(), value),
          [&] { return "setting '" + std::string(s.name) + "' cannot take the value " + value.dump(); });
  std::visit([&](auto member) { cfg.*member = value.get<std::remove_reference_t<decltype(cfg.*member)>>(); }, s.field);
}

void TrainConfig::apply_yaml_file(const std::string& path, TrainCommand command,
                                  const std::vector<std::string>& other_keys) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw Error(path + ": " + e.what());
  }
  if (!root || root.IsNull()) return;
  apply_yaml(root, path, command, other_keys);
}

void TrainConfig::apply_yaml(const YAML::Node& mapping, const std::string& where, TrainCommand command,
                             const std::vector<std::string>& other_keys) {
  require(mapping.IsMap(), where + ": expected a mapping of settings");
  std::set<std::string> seen;
  for (const auto& kv : mapping) {
    const std::string key = kv.first.as<std::string>();
    const TrainSetting* s = find_train_setting(key);
    require(seen.insert(s ? std::string(s->name) : key).second,
            [&] { return where + ": key '" + key + "' at line " + line_of(kv.first) + " is given twice"; });
    if (std::find(other_keys.begin(), other_keys.end(), key) != other_keys.end()) continue;
    if (s && s->recorded && s->applies_to(command)) {
      read_setting(*this, *s, kv.second, where);
      continue;
    }
    std::vector<std::string> valid = other_keys;
    for (const TrainSetting& t : kSettings)
      if (t.recorded && t.applies_to(command)) valid.emplace_back(t.name);
    std::string list;
    for (const auto& k : valid) list += (list.empty() ? "" : ", ") + k;
    const std::string why =
        s ? (s->recorded ? " (a fine-tuning setting)" : " (a command-line option only)") : did_you_mean(key, valid);
    throw Error(where + ": unknown key '" + key + "' at line " + line_of(kv.first) + why + " (keys: " + list + ")");
  }
}

nlohmann::json TrainConfig::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const TrainSetting& s : kSettings)
    if (s.recorded) j[std::string(s.name)] = setting_value(*this, s);
  j["micro_batch"] = micro();  // the effective one
  return j;
}

int64_t TrainConfig::micro() const { return micro_batch > 0 ? micro_batch : std::min(batch_size, kDefaultMicroBatch); }

void TrainConfig::validate() const {
  require(max_length >= 4, "max_length must be at least 4");
  require(!full || base_dtype == "f32", "full fine-tuning trains every weight in f32: add --base-dtype f32");
  require(!full || init_adapter.empty(), "full fine-tuning trains no adapters: --init-adapter does not apply");
  require(!full || trainable_tokens.empty(),
          "full fine-tuning trains every token row: --trainable-tokens does not apply");
  require(comparables >= 0 && comparables <= retrieval::kMaxComparables,
          "comparables must be in [0, " + std::to_string(retrieval::kMaxComparables) + "]");
  require(cross_fit_folds == 0 || (cross_fit_folds >= 2 && cross_fit_folds <= data::kMaxCrossFitFolds),
          "cross_fit_folds must be 0 (off) or 2 to " + std::to_string(data::kMaxCrossFitFolds));
  require(cross_fit_fold >= 0 && (cross_fit_folds == 0 ? cross_fit_fold == 0 : cross_fit_fold < cross_fit_folds),
          "cross_fit_fold must be 0 to cross_fit_folds - 1 (" + std::to_string(cross_fit_fold) + " of " +
              std::to_string(cross_fit_folds) + " folds)");
  require(compute_dtype == "bf16" || compute_dtype == "f32",
          "compute_dtype must be bf16 or f32, not '" + compute_dtype + "'");
  require(batch_size >= 1 && micro_batch >= 0, "batch_size must be positive and micro_batch not negative");
  require(micro_batch <= batch_size, "micro_batch (" + std::to_string(micro_batch) + ") cannot exceed batch_size (" +
                                         std::to_string(batch_size) + "): it splits a batch into smaller passes");
  require(max_steps >= 0, "max_steps cannot be negative (0 = no limit)");
  require(weight_decay >= 0 && std::isfinite(weight_decay), "weight_decay must be >= 0");
  require(max_grad_norm >= 0 && std::isfinite(max_grad_norm), "max_grad_norm must be >= 0 (0 = off)");
  require(momentum >= 0 && momentum < 1, "momentum must be in [0, 1)");
  require(dropout >= 0 && dropout < 1, "dropout must be in [0, 1)");
  require(epochs >= 1 || max_steps > 0, "epochs must be at least 1 (or set max_steps)");
  require(lr > 0 && std::isfinite(lr), "lr must be positive");
  require(schedule == "cosine" || schedule == "linear" || schedule == "constant",
          "schedule must be cosine, linear or constant, not '" + schedule + "'");
  require(optimizer == "adamw" || optimizer == "sgd", "optimizer must be adamw or sgd, not '" + optimizer + "'");
  require(warmup_ratio >= 0 && warmup_ratio < 1, "warmup_ratio must be in [0, 1)");
  require(eval_metric == "loss" || eval_metric == "mae", "eval_metric must be loss or mae");
  require(price_smoothing >= 0 && std::isfinite(price_smoothing), "price_smoothing must be >= 0");
  require(ema == 0 || (ema > 0 && ema < 1), "ema must be 0 (off) or a decay in (0, 1), e.g. 0.998");
  require(eval_every >= 0 && save_every >= 0 && early_stopping >= 0 && eval_items >= 0,
          "eval_every, save_every, eval_items and early_stopping cannot be negative");
}

std::optional<DirectoryLock> prepare_output_dir(const TrainConfig& cfg) {
  std::optional<DirectoryLock> lock;
  if (comm::root()) lock.emplace(prepare_locked_output_dir(cfg));
  comm::any(false);  // the other ranks wait until the directory is ready (or the job is ended)
  return lock;
}

DirectoryLock prepare_locked_output_dir(const TrainConfig& cfg) {
  const fs::path out(cfg.out_dir);
  require(!fs::exists(out) || fs::is_directory(out), cfg.out_dir + ": exists and is not a directory (--out)");
  require(!(cfg.resume && cfg.overwrite),
          "--resume and --overwrite contradict each other: continue the run or replace it");
  DirectoryLock lock(out, "--out");
  remove_stale_temporaries(out);
  const bool has_checkpoint = fs::exists(out / "checkpoint.bin");
  if (cfg.resume) {
    require(has_checkpoint, cfg.out_dir + ": no checkpoint.bin to resume from (drop --resume to start a run)");
    return lock;
  }
  std::vector<fs::path> previous;
  for (const char* name : {"checkpoint.bin", "best", "last"})
    if (fs::exists(out / name)) previous.push_back(out / name);
  if (previous.empty()) return lock;
  require(cfg.overwrite, cfg.out_dir + " holds a run already (" + previous.front().filename().string() +
                             "): continue it with --resume, or replace it with --overwrite");
  for (const auto& p : previous) fs::remove_all(p);
  return lock;
}

float scheduled_lr(const TrainConfig& cfg, int64_t step, int64_t total) {
  // transformers' get_{cosine,linear,constant}_schedule_with_warmup, warmup steps = ceil(ratio x total).
  const int64_t warmup = static_cast<int64_t>(std::ceil(cfg.warmup_ratio * static_cast<double>(total)));
  if (step < warmup) return cfg.lr * static_cast<float>(step) / static_cast<float>(std::max<int64_t>(1, warmup));
  if (cfg.schedule == "constant") return cfg.lr;
  const double progress =
      static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup));
  if (cfg.schedule == "linear") return cfg.lr * static_cast<float>(std::max(0.0, 1.0 - progress));
  return cfg.lr * static_cast<float>(std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * progress))));
}

}  // namespace pricer
