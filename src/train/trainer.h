#pragma once
// The training loop shared by `pricer train` (QLoRA: frozen base, LoRA adapters) and
// `pricer pretrain` (all parameters): length-grouped batches split into micro-batches with
// gradient accumulation, warmup + cosine/linear/constant schedule, global-norm clipping,
// non-finite steps skipped, periodic evaluation (loss, and the price MAE read from the
// next-token distribution), best/last outputs, early stopping, and crash-safe checkpoints that
// make a resumed run end bitwise where an uninterrupted one would.
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/dir_lock.h"
#include "io/gguf.h"
#include "kernels/backend.h"
#include "model/llama.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset.h"
#include "train/train_config.h"

namespace pricer {

struct TrainSummary {
  int64_t steps = 0;
  int64_t skipped_steps = 0;
  double last_train_loss = 0;
  double first_eval_loss = 0, best_eval_loss = 0, last_eval_loss = 0;
  double first_eval_mae = -1, best_eval_mae = -1, last_eval_mae = -1;
  bool interrupted = false;
  bool early_stopped = false;
  std::string stop_message;  // why the run ended before its last step: a hook's answer or early stopping
  int64_t run_id = 0;
};

// Gives `model` the run's LoRA adapters: those of cfg.init_adapter when set, whose settings then
// become cfg's (recorded with the run and checked on --resume); else new ones with cfg's rank,
// alpha, dropout, rslora and targets, initialised from cfg.seed.
void attach_adapters(LlamaModel& model, TrainConfig& cfg);
// Makes cfg.trainable_tokens' rows trainable (after attach_adapters; an --init-adapter with rows
// brought its own and names them in cfg). Throws Error on an unknown spec or an id outside the
// vocabulary.
void attach_trainable_tokens(LlamaModel& model, TrainConfig& cfg, const Tokenizer& tok);

// Price metrics of validation items, read off the model by the caller's pricing code (the
// trainer knows no prices): the MAE of the default readout, of the expected value, and the share of
// true prices inside the 80% interval.
struct PriceScores {
  double mae = -1;
  double mae_mean = -1;
  double interval_coverage = -1;
  std::string readout;  // the default readout's name, for the progress line
};
using PriceScorer = std::function<PriceScores(LlamaModel& model, Backend& be, std::span<const PricedExample> items,
                                              int64_t micro_batch)>;

// Validation metrics on up to `max_items` examples: mean loss over completion tokens and, when
// the examples carry prices and a scorer is given, its price metrics.
struct EvalResult {
  double loss = 0;
  PriceScores prices;  // mae < 0: none read
};
EvalResult evaluate(LlamaModel& model, Backend& be, const std::vector<PricedExample>& val, int64_t max_items,
                    int64_t micro_batch, const PriceScorer& score_prices = {});

// What the loop hands on_eval after each evaluation.
struct EvalReport {
  int64_t step = 0;
  EvalResult result;
  double best_loss = 0, best_mae = -1;  // best so far in the run, earlier sessions of a resumed run included
  bool final_eval = false;  // the evaluation after the last step: stopping is moot
};

struct TrainHooks {
  // Called after every optimizer step (tests use it to simulate a crash at a given step).
  std::function<void(int64_t step)> after_step;
  // Saves the trained model's outputs (adapters or full model) to a directory.
  std::function<void(const LlamaModel&, const std::string& dir)> save_output;
  // Called once the run is in the run database, with its id.
  std::function<void(int64_t run_id)> on_start;
  // Called after every evaluation. A non-empty answer stops training there, cleanly: the last
  // outputs and a checkpoint are written and the run is finished with that message (a sweep
  // pruning a trial uses it).
  std::function<std::string(const EvalReport&)> on_eval;
  // Reads the validation prices at every evaluation (predict's validation_price_scorer); unset,
  // evaluations measure the loss alone.
  PriceScorer score_prices;
};

// Hooks whose save_output writes the adapters as PEFT (naming the base model) and <dir>/adapter.gguf,
// whose metadata takes `marks` (how it was trained: comparables, a cross-fitting fold).
TrainHooks adapter_output_hooks(const std::string& base_model_name, std::vector<GgufKV> marks = {});
// Hooks whose save_output writes the whole model as <dir>/model.gguf with the tokenizer embedded
// (pretraining and full fine-tuning), its metadata with `marks` as adapter_output_hooks'.
TrainHooks full_model_output_hooks(const Tokenizer& tok, const ModelConfig& config, const std::string& name,
                                   std::vector<GgufKV> marks = {});

// Makes out_dir ready for a run, before any data is read or computed: a run already there
// (checkpoint.bin, best/ or last/) is continued only with cfg.resume and replaced only with
// cfg.overwrite (its files removed first, so nothing stale survives); otherwise it is an error
// naming both flags. --resume without a checkpoint is an error too. The directory stays locked
// for this process while the returned lock lives (a second run into it is refused, naming the
// pid), and what killed writers left there (temporary files, staging directories) is removed.
// Under MPI rank 0 does this and holds the lock (nullopt elsewhere); the others wait for it.
std::optional<DirectoryLock> prepare_output_dir(const TrainConfig& cfg);
DirectoryLock prepare_locked_output_dir(const TrainConfig& cfg);  // the same in this process alone

// Runs (or resumes) training. mode_full: every parameter is trained (pretraining, or full
// fine-tuning when cfg.full; the model must be in full-training mode), else the adapters.
TrainSummary run_training(const TrainConfig& cfg, LlamaModel& model, const Tokenizer& tok,
                          const std::vector<PricedExample>& train, const std::vector<PricedExample>& val,
                          bool mode_full, const TrainHooks& hooks, const std::string& command_line);

// Learning rate at optimizer step `step` (0-based) of `total`.
float scheduled_lr(const TrainConfig& cfg, int64_t step, int64_t total);

// A rough peak-memory estimate (bytes) of a run: weights in their formats, trainable state
// (value, gradient, two moments), activations of one micro-batch, logits at loss positions.
uint64_t estimate_training_memory(const LlamaModel& model, const TrainConfig& cfg, bool mode_full);
// Throws Error (with what to change) when the estimate exceeds available_memory(); returns it.
uint64_t check_training_memory(const LlamaModel& model, const TrainConfig& cfg, bool mode_full);
// $PRICER_AVAILABLE_MEMORY when set (bytes, or a number with K/M/G/T, e.g. "24G": a budget below
// what the machine has, or a container limit /proc does not show), else MemAvailable from
// /proc/meminfo; 0 when unknown.
uint64_t available_memory();
// "512M", "2.5G", "1048576" -> bytes; throws Error naming `what` on anything else.
uint64_t parse_memory_size(const std::string& text, const std::string& what);

}  // namespace pricer
