#pragma once
// What a training run reads: its training and validation examples, with comparables in every
// prompt when the run asks for them (TrainConfig::comparables), and the index that made them.
#include <memory>
#include <string>
#include <vector>

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

// `hooks` whose save_output also writes the comparables index beside each output (when there is
// one), so the model or adapter is never without the prompts it was trained on.
TrainHooks with_comparables_output(TrainHooks hooks, std::shared_ptr<const retrieval::ComparablesIndex> index);

}  // namespace pricer
