#pragma once
// What defines a training run beyond its settings: the base model it starts from and the examples
// it reads. Both go into the checkpoint so `--resume` refuses another model or other data under
// the same file names (or the same model and data under new names are accepted).
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/dataset.h"
#include "train/trainer.h"

namespace pricer {

// A fingerprint of a model file or directory without reading all of it (a 3B model is gigabytes):
// every file's size and 64-bit hashes of its first and last MiB and of 16 blocks spread between.
// A copy or a move keeps it; any change to a tensor's header or to sampled data changes it.
std::string model_fingerprint(const std::string& path);

// A hash of every training example's tokens and prompt length, in order: the data as the run
// sees it (file, tokenizer, max length and prompt layout together).
std::string examples_fingerprint(const std::vector<PricedExample>& examples);

// {"model": ..., "train_examples": ...}; the model is left out when training starts from scratch.
nlohmann::json run_identity(const TrainConfig& cfg, const std::vector<PricedExample>& train);

// The differences that forbid resuming a checkpoint saved with `saved` (the checkpoint's config)
// into a run configured as `now`, one line each ("lr: saved 0.0005, now 0.001"). The step budget
// (epochs, max_steps) may change to extend or shorten a run, evaluation and checkpoint cadence,
// run name and paths may change; everything else must match. A setting the checkpoint predates
// counts as its default then.
std::vector<std::string> resume_mismatches(const nlohmann::json& saved, const nlohmann::json& now);

}  // namespace pricer
