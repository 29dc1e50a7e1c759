#pragma once
// Command-line options of `pricer train` and `pricer pretrain`, layered over a YAML config:
// defaults, then the --config file, then the options actually given on the command line.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "train/trainer.h"

namespace pricer::cli {

class TrainOptionSet {
 public:
  explicit TrainOptionSet(CLI::App& sub) : sub_(sub) {}

  template <typename T>
  void add(const std::string& flag, T TrainConfig::*field, const std::string& help) {
    CLI::Option* o = sub_.add_option(flag, given_.*field, help);
    o->default_str(default_str(defaults_.*field));
    copies_.push_back([o, field](TrainConfig& dst, const TrainConfig& src) {
      if (o->count() > 0) dst.*field = src.*field;
    });
  }
  void add_flag(const std::string& flag, bool TrainConfig::*field, const std::string& help) {
    CLI::Option* o = sub_.add_flag(flag, given_.*field, help);
    copies_.push_back([o, field](TrainConfig& dst, const TrainConfig& src) {
      if (o->count() > 0) dst.*field = src.*field;
    });
  }
  std::string& config_path() { return config_path_; }
  // Keys of the --config file that the command reads itself (see TrainConfig::apply_yaml).
  void set_other_keys(std::vector<std::string> keys) { other_keys_ = std::move(keys); }

  // The effective configuration after parsing.
  TrainConfig resolve(const TrainConfig& base) const {
    TrainConfig cfg = base;
    if (!config_path_.empty()) cfg.apply_yaml(config_path_, other_keys_);
    for (const auto& copy : copies_) copy(cfg, given_);
    return cfg;
  }

 private:
  template <typename T>
  static std::string default_str(const T& v) {
    if constexpr (std::is_same_v<T, std::string>) return v;
    else if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
    else return std::to_string(v);
  }

  CLI::App& sub_;
  TrainConfig defaults_, given_;
  std::string config_path_;
  std::vector<std::string> other_keys_;
  std::vector<std::function<void(TrainConfig&, const TrainConfig&)>> copies_;
};

// Options common to both commands: optimisation, evaluation, checkpoints, the run record.
inline void add_loop_options(TrainOptionSet& s) {
  s.add("--out", &TrainConfig::out_dir, "Output directory (adapters, checkpoint)");
  s.add("--max-length", &TrainConfig::max_length, "Maximum tokens per example");
  s.add("--optimizer", &TrainConfig::optimizer, "adamw or sgd");
  s.add("--lr", &TrainConfig::lr, "Peak learning rate");
  s.add("--schedule", &TrainConfig::schedule, "cosine, linear or constant (after warmup)");
  s.add("--warmup-ratio", &TrainConfig::warmup_ratio, "Share of steps spent warming up");
  s.add("--weight-decay", &TrainConfig::weight_decay, "Decoupled weight decay");
  s.add("--max-grad-norm", &TrainConfig::max_grad_norm, "Global gradient-norm clip (0 = off)");
  s.add("--momentum", &TrainConfig::momentum, "SGD momentum");
  s.add("--epochs", &TrainConfig::epochs, "Passes over the training split");
  s.add("--max-steps", &TrainConfig::max_steps, "Stop after this many optimizer steps (0 = no limit)");
  s.add("--batch-size", &TrainConfig::batch_size, "Examples per optimizer step");
  s.add("--micro-batch", &TrainConfig::micro_batch, "Examples per forward/backward (gradient accumulation); 0 = the batch size, up to 8");
  s.add("--price-smoothing", &TrainConfig::price_smoothing,
        "Spread the price token's label over nearby prices: a Gaussian of this width in log(1 + price), "
        "e.g. 0.1 (0 = one-hot)");
  s.add("--ema", &TrainConfig::ema,
        "Evaluate and save an exponential moving average of the weights with this decay, e.g. 0.998 "
        "(0 = the weights as trained)");
  s.add_flag("--checkpoint-layers", &TrainConfig::checkpoint_layers, "Recompute each layer in backward (less memory)");
  s.add("--eval-every", &TrainConfig::eval_every, "Optimizer steps between evaluations (0 = end only)");
  s.add("--eval-items", &TrainConfig::eval_items, "Validation items per evaluation (0 = all)");
  s.add("--early-stopping", &TrainConfig::early_stopping, "Evaluations without improvement before stopping (0 = off)");
  s.add("--eval-metric", &TrainConfig::eval_metric, "loss or mae (of the median price read off the next-token distribution): what 'best' means");
  s.add("--save-every", &TrainConfig::save_every, "Optimizer steps between checkpoints");
  s.add_flag("--resume", &TrainConfig::resume, "Continue from <out>/checkpoint.bin");
  s.add_flag("--overwrite", &TrainConfig::overwrite, "Replace a run already in --out (checkpoint, best/, last/)");
  s.add("--seed", &TrainConfig::seed, "Seed for data order, adapters and dropout");
  s.add("--run-name", &TrainConfig::run_name, "Name in the run database");
  s.add("--runs-db", &TrainConfig::runs_db, "Run database (default runs/pricer.db or $PRICER_RUNS_DB)");
  s.add_flag("--no-record", &TrainConfig::no_record,
             "Keep the run out of the run database (metrics still go to <out>/logs as JSON lines and TensorBoard)");
}

}  // namespace pricer::cli
