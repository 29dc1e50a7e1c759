#pragma once
// What a training run reads: its training and validation examples, with comparables in every
// prompt when the run asks for them (TrainConfig::comparables), and the index that made them.
#include <memory>
#include <string>
#include <vector>

#include "io/model_file.h"
#include "retrieval/comparables.h"
#include "train/dataset.h"
#include "train/trainer.h"

namespace pricer {

struct TrainingData {
  std::vector<PricedExample> train, val;
  std::shared_ptr<const retrieval::ComparablesIndex> comparables;  // null without comparables
};

// The training split of cfg.dataset and the validation examples (val_path, else the dataset's val
// split when it has one). With comparables, the index is built from the training split's prompts
// and prices, a training item never sees itself, and validation items see the training items
// alone, as a new product would.
TrainingData load_training_data(const TrainConfig& cfg, const std::string& val_path, const Tokenizer& tok,
                                int64_t vocab);

// Everything a fine-tuning run reads, in order: the base (stored as cfg.base_dtype; refused when a
// tensor holds NaN or infinity), the tokenizer (cfg.tokenizer, else the base's own; refused when
// larger than the base's vocabulary), then the examples (load_training_data).
struct TrainInputs {
  ModelFile base;
  std::unique_ptr<Tokenizer> tok;
  TrainingData data;
};
// The base and tokenizer alone: `train` checks the run fits in memory before it reads any data.
TrainInputs load_train_base(const TrainConfig& cfg);
// Then the examples into in.data.
void load_train_examples(TrainInputs& in, const TrainConfig& cfg, const std::string& val_path = "");
// Both.
TrainInputs load_train_inputs(const TrainConfig& cfg, const std::string& val_path = "");

// Makes `model` (built from the base) trainable as cfg says: every weight (cfg.full), or the
// adapters and trainable token rows (cfg then holds an --init-adapter's settings).
void make_trainable(LlamaModel& model, TrainConfig& cfg, const Tokenizer& tok);

// The hooks that save a run's outputs: model.gguf (cfg.full) or the adapters, with the comparables
// index of in.data beside each.
TrainHooks output_hooks(const TrainConfig& cfg, const TrainInputs& in);

// `hooks` whose save_output also writes the comparables index beside each output (when there is
// one), so the model or adapter is never without the prompts it was trained on.
TrainHooks with_comparables_output(TrainHooks hooks, std::shared_ptr<const retrieval::ComparablesIndex> index);

}  // namespace pricer
