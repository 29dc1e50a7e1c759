#pragma once
// The training loop shared by `pricer train` (QLoRA: frozen base, LoRA adapters) and
// `pricer pretrain` (all parameters): length-grouped batches split into micro-batches with
// gradient accumulation, warmup + cosine/linear/constant schedule, global-norm clipping,
// non-finite steps skipped, periodic evaluation (loss, and the price MAE read from the
// next-token distribution), best/last outputs, early stopping, and crash-safe checkpoints that
// make a resumed run end bitwise where an uninterrupted one would.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dir_lock.h"
#include "kernels/backend.h"
#include "model/llama.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset.h"

namespace pricer {

inline constexpr int64_t kDefaultMicroBatch = 8;

struct TrainConfig {
  // What to train on.
  std::string model;      // base model (any format pricer loads)
  std::string tokenizer;  // default: the model's own
  std::string dataset;    // curate directory or JSON lines
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
  int64_t eval_every = 50;   // optimizer steps; 0 = only at the end
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

  // Keys as in the YAML config file; unknown keys are an error naming the file.
  // `other_keys`: keys a caller reads from the same file itself (pretraining's model shape);
  // skipped here, and listed with the valid keys when one is unknown.
  void apply_yaml(const std::string& path, const std::vector<std::string>& other_keys = {});
  nlohmann::json to_json() const;
  void validate() const;

  // Examples per forward/backward pass: micro_batch, or when it is 0 the batch size up to
  // kDefaultMicroBatch (so --batch-size 4 alone is not refused for a micro-batch it never set).
  int64_t micro() const;

};

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

// Validation metrics on up to `max_items` examples: mean loss over completion tokens and, when the
// examples carry prices, the MAE of the price read off the next-token distribution over number
// tokens: with the default readout (kDefaultPriceMode, as `predict` and `eval` read it) and with
// its mean.
struct EvalResult {
  double loss = 0;
  double mae = -1;       // default readout
  double mae_mean = -1;  // expected-value readout
  double interval_coverage = -1;  // share of true prices inside the 80% interval
};
EvalResult evaluate(LlamaModel& model, Backend& be, const std::vector<PricedExample>& val,
                    const Tokenizer* tok, int64_t max_items, int64_t micro_batch);

// What the loop hands on_eval after each evaluation.
struct EvalReport {
  int64_t step = 0;
  EvalResult result;
  double best_loss = 0, best_mae = -1;  // best so far in the run, earlier sessions of a resumed run included
  bool final_eval = false;              // the evaluation after the last step: stopping is moot
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
};

// Hooks whose save_output writes the adapters as PEFT (naming the base model) and <dir>/adapter.gguf.
// comparables_k > 0 marks adapter.gguf as trained with comparables (as full_model_output_hooks does).
TrainHooks adapter_output_hooks(const std::string& base_model_name, int comparables_k = 0);
// Hooks whose save_output writes the whole model as <dir>/model.gguf with the tokenizer embedded
// (pretraining and full fine-tuning); comparables_k > 0 marks a model trained with comparables.
TrainHooks full_model_output_hooks(const Tokenizer& tok, const ModelConfig& config, const std::string& name,
                                   int comparables_k = 0);

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
