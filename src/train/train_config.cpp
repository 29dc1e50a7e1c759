// TrainConfig: its YAML keys, JSON form and checks; the output directory a run may use; the
// learning-rate schedule.
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <filesystem>
#include <numbers>
#include <set>

#include "core/atomic_file.h"
#include "core/comm.h"
#include "core/error.h"
#include "core/suggest.h"
#include "retrieval/comparables.h"
#include "train/trainer.h"

namespace fs = std::filesystem;

namespace pricer {

namespace {

template <typename T>
void read_key(const YAML::Node& node, const char* key, T& into, const std::string& path) {
  try {
    into = node.as<T>();
  } catch (const YAML::Exception& e) {
    throw Error(path + ": key '" + key + "' at line " + std::to_string(node.Mark().line + 1) + ": " + e.what());
  }
}

}  // namespace

void TrainConfig::apply_yaml(const std::string& path, const std::vector<std::string>& other_keys) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw Error(path + ": " + e.what());
  }
  if (!root || root.IsNull()) return;
  require(root.IsMap(), path + ": expected a mapping of settings");
  std::set<std::string> seen;
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    const YAML::Node& v = kv.second;
    require(seen.insert(key).second,
            path + ": key '" + key + "' at line " + std::to_string(kv.first.Mark().line + 1) + " is given twice");
    if (std::find(other_keys.begin(), other_keys.end(), key) != other_keys.end()) continue;
    std::vector<std::string> valid = other_keys;  // and every key tried before the match
#define PRICER_KEY(name, field)        \
  valid.push_back(name);               \
  if (key == name) {                   \
    read_key(v, name, field, path);    \
    continue;                          \
  }
    PRICER_KEY("model", model)
    PRICER_KEY("tokenizer", tokenizer)
    PRICER_KEY("dataset", dataset)
    PRICER_KEY("data", dataset)  // as the --data option
    PRICER_KEY("out_dir", out_dir)
    PRICER_KEY("out", out_dir)  // as the --out option
    PRICER_KEY("base_dtype", base_dtype)
    PRICER_KEY("compute_dtype", compute_dtype)
    PRICER_KEY("max_length", max_length)
    PRICER_KEY("rank", rank)
    PRICER_KEY("lora_r", rank)
    PRICER_KEY("alpha", alpha)
    PRICER_KEY("lora_alpha", alpha)
    PRICER_KEY("dropout", dropout)
    PRICER_KEY("lora_dropout", dropout)
    PRICER_KEY("targets", targets)
    PRICER_KEY("rslora", rslora)
    PRICER_KEY("init_adapter", init_adapter)
    PRICER_KEY("trainable_tokens", trainable_tokens)
    PRICER_KEY("full", full)
    PRICER_KEY("comparables", comparables)
    PRICER_KEY("optimizer", optimizer)
    PRICER_KEY("lr", lr)
    PRICER_KEY("learning_rate", lr)
    PRICER_KEY("schedule", schedule)
    PRICER_KEY("warmup_ratio", warmup_ratio)
    PRICER_KEY("weight_decay", weight_decay)
    PRICER_KEY("max_grad_norm", max_grad_norm)
    PRICER_KEY("momentum", momentum)
    PRICER_KEY("epochs", epochs)
    PRICER_KEY("max_steps", max_steps)
    PRICER_KEY("batch_size", batch_size)
    PRICER_KEY("micro_batch", micro_batch)
    PRICER_KEY("price_smoothing", price_smoothing)
    PRICER_KEY("ema", ema)
    PRICER_KEY("checkpoint_layers", checkpoint_layers)
    PRICER_KEY("eval_every", eval_every)
    PRICER_KEY("eval_items", eval_items)
    PRICER_KEY("early_stopping", early_stopping)
    PRICER_KEY("eval_metric", eval_metric)
    PRICER_KEY("save_every", save_every)
    PRICER_KEY("seed", seed)
    PRICER_KEY("run_name", run_name)
#undef PRICER_KEY
    std::string list;
    for (const auto& k : valid) list += (list.empty() ? "" : ", ") + k;
    throw Error(path + ": unknown key '" + key + "' at line " + std::to_string(kv.first.Mark().line + 1) +
                did_you_mean(key, valid) + " (keys: " + list + ")");
  }
}

namespace {

// A float setting as the user wrote it: 0.1f is stored as 0.1, not 0.10000000149011612.
double shortest(float v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
}

}  // namespace

nlohmann::json TrainConfig::to_json() const {
  return {{"model", model}, {"tokenizer", tokenizer}, {"dataset", dataset}, {"out_dir", out_dir},
          {"base_dtype", base_dtype}, {"compute_dtype", compute_dtype}, {"max_length", max_length}, {"rank", rank}, {"alpha", shortest(alpha)},
          {"dropout", shortest(dropout)}, {"targets", targets}, {"rslora", rslora}, {"init_adapter", init_adapter},
          {"trainable_tokens", trainable_tokens}, {"full", full}, {"comparables", comparables},
          {"optimizer", optimizer}, {"lr", shortest(lr)}, {"schedule", schedule}, {"warmup_ratio", warmup_ratio},
          {"weight_decay", shortest(weight_decay)}, {"max_grad_norm", shortest(max_grad_norm)}, {"momentum", shortest(momentum)},
          {"epochs", epochs}, {"max_steps", max_steps}, {"batch_size", batch_size}, {"micro_batch", micro()},
          {"price_smoothing", shortest(price_smoothing)}, {"ema", ema},
          {"checkpoint_layers", checkpoint_layers}, {"eval_every", eval_every}, {"eval_items", eval_items},
          {"early_stopping", early_stopping}, {"eval_metric", eval_metric}, {"save_every", save_every},
          {"seed", seed}, {"run_name", run_name}};
}

int64_t TrainConfig::micro() const {
  return micro_batch > 0 ? micro_batch : std::min(batch_size, kDefaultMicroBatch);
}

void TrainConfig::validate() const {
  require(max_length >= 4, "max_length must be at least 4");
  require(!full || base_dtype == "f32", "full fine-tuning trains every weight in f32: add --base-dtype f32");
  require(!full || init_adapter.empty(), "full fine-tuning trains no adapters: --init-adapter does not apply");
  require(!full || trainable_tokens.empty(), "full fine-tuning trains every token row: --trainable-tokens does not apply");
  require(comparables >= 0 && comparables <= retrieval::kMaxComparables,
          "comparables must be in [0, " + std::to_string(retrieval::kMaxComparables) + "]");
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
  require(!(cfg.resume && cfg.overwrite), "--resume and --overwrite contradict each other: continue the run or replace it");
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
  const double progress = static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup));
  if (cfg.schedule == "linear") return cfg.lr * static_cast<float>(std::max(0.0, 1.0 - progress));
  return cfg.lr * static_cast<float>(std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * progress))));
}

}  // namespace pricer
