#pragma once
// TrainConfig, the settings of a training run, and the one table that names them: the YAML config
// keys, the recorded settings, the `train`/`pretrain` options and the sweep's searchable keys.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "train/dataset.h"

namespace YAML {
class Node;
}

namespace pricer {

// The command whose settings apply: pretraining has no base model, data directory or adapters.
enum class TrainCommand { train, pretrain };

inline constexpr int64_t kDefaultMicroBatch = 8;

struct TrainConfig {
  // What to train on.
  std::string model;  // base model (any format pricer loads)
  std::string tokenizer;  // default: the model's own
  std::string dataset;  // curate directory or JSON lines
  std::string out_dir = "runs/train";
  std::string base_dtype = "nf4";
  std::string compute_dtype = "bf16";  // the base's linears: bf16 operands with f32 sums, or f32
  int64_t max_length = kDefaultMaxTokens;
  // LoRA.
  int64_t rank = 32;
  float alpha = 64.0f;
  float dropout = 0.1f;
  std::string targets = "q,k,v,o";
  bool rslora = false;
  std::string init_adapter;
  // Trainable token rows (PEFT's trainable_token_indices) beside the adapters: "" none,
  // "numbers" (the number tokens a price is read from), or token ids "17,42,...".
  std::string trainable_tokens;
  // Full fine-tuning: every weight trained in f32 (no adapters), the whole model saved. For a
  // base of a few million parameters this prices better than QLoRA; for a 1B-3B base it needs
  // 16 bytes a parameter, where QLoRA's frozen NF4 base is the way.
  bool full = false;
  // > 0: every prompt gets the prices of its this many most similar training items (comparables),
  // and the index travels with the outputs so prediction adds the same.
  int64_t comparables = 0;
  // > 0: cross-fitting. The training items are cut into this many folds by a hash of their prompts
  // (data/cross_fit.h) and fold cross_fit_fold is left out, so the ensemble can price those items
  // with a model that never saw them; the outputs carry both numbers.
  int64_t cross_fit_folds = 0;
  int64_t cross_fit_fold = 0;
  // Optimisation.
  std::string optimizer = "adamw";  // adamw | sgd
  float lr = 1e-4f;
  std::string schedule = "cosine";  // cosine | linear | constant
  double warmup_ratio = 0.01;  // double: ceil(ratio x steps) as transformers computes it (0.1f x 100 > 10)
  float weight_decay = 0.001f;
  float max_grad_norm = 0.3f;
  float momentum = 0.0f;  // sgd
  int64_t epochs = 1;
  int64_t max_steps = 0;  // > 0: stop after this many optimizer steps
  int64_t batch_size = 32;
  int64_t micro_batch = 0;  // 0: the batch size, up to kDefaultMicroBatch; see micro()
  // > 0: the price token's label is spread over nearby prices, a Gaussian of this width in
  // log(1 + price) (add_price_smoothing); 0: the plain one-hot cross-entropy.
  float price_smoothing = 0.0f;
  // > 0: evaluation and the saved model use an exponential moving average of the weights with this
  // decay (e.g. 0.998), updated after every step (WeightAverage); 0: the weights as trained.
  double ema = 0.0;
  bool checkpoint_layers = false;
  // Evaluation.
  int64_t eval_every = 50;  // optimizer steps; 0 = only at the end
  int64_t eval_items = 200;  // validation items per evaluation (0 = all)
  int64_t early_stopping = 0;  // evaluations without improvement before stopping (0 = off)
  std::string eval_metric = "loss";  // loss | mae
  // Run state.
  int64_t save_every = 50;  // optimizer steps between checkpoints (0 = only on exit)
  bool resume = false;
  bool overwrite = false;  // replace a run already in out_dir (its checkpoint, best/ and last/)
  uint64_t seed = 42;
  std::string run_name;
  std::string runs_db;  // empty: the default run database
  bool no_record = false;  // no run database entry; metrics go to <out_dir>/logs only
  bool progress = true;

  // The settings of a YAML mapping (keys as in train_settings(), or their aliases) over these.
  // Unknown keys, keys given twice and values of the wrong type are errors naming `where` (the file)
  // and the line. `other_keys`: keys a caller reads from the same mapping itself (pretraining's
  // model shape); skipped here, and listed with the valid keys when one is unknown.
  void apply_yaml(const YAML::Node& mapping, const std::string& where, TrainCommand command = TrainCommand::train,
                  const std::vector<std::string>& other_keys = {});
  // The same from a YAML file; an empty file changes nothing.
  void apply_yaml_file(const std::string& path, TrainCommand command = TrainCommand::train,
                       const std::vector<std::string>& other_keys = {});
  // The recorded settings by name (floats as written: 0.1, not 0.10000000149011612).
  nlohmann::json to_json() const;
  void validate() const;

  // Examples per forward/backward pass: micro_batch, or when it is 0 the batch size up to
  // kDefaultMicroBatch (so --batch-size 4 alone is not refused for a micro-batch it never set).
  int64_t micro() const;
};

// ---------------------------------------------------------------------------------------------
// The one table of training settings. The YAML keys, the recorded JSON, the command-line options
// of `train` and `pretrain` and what a sweep may vary all iterate it.

using SettingField = std::variant<std::string TrainConfig::*, int64_t TrainConfig::*, uint64_t TrainConfig::*,
                                  float TrainConfig::*, double TrainConfig::*, bool TrainConfig::*>;

enum class SettingType { text, integer, real, boolean };

struct TrainSetting {
  std::string_view name;  // the YAML key; with '-' for '_' the long option (max_length: --max-length)
  std::string_view short_option;  // "-m", or empty
  SettingField field;
  std::string_view help;
  bool fine_tuning_only = false;  // `train` has it, `pretrain` does not (the base, the adapters)
  bool searchable = false;  // a sweep may vary it
  bool recorded = true;  // false: this invocation's control (--resume), in no file or record

  SettingType type() const;
  std::string option_names() const;  // for CLI11: "--max-length" or "--model,-m"
  bool applies_to(TrainCommand command) const { return command == TrainCommand::train || !fine_tuning_only; }
};

std::span<const TrainSetting> train_settings();
// The setting called `name` or one of its aliases (lora_r, learning_rate, dataset, ...); null when none.
const TrainSetting* find_train_setting(std::string_view name);
// The setting's value in `cfg` as JSON, and `cfg`'s value set from JSON (an Error names the setting
// when the value does not fit its type).
nlohmann::json setting_value(const TrainConfig& cfg, const TrainSetting& s);
void set_setting(TrainConfig& cfg, const TrainSetting& s, const nlohmann::json& value);
// Whether a JSON value fits a setting of this type (an integer fits a real, not the reverse).
bool fits(SettingType type, const nlohmann::json& value);

}  // namespace pricer
