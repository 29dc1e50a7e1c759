// `pricer train`: QLoRA fine-tuning of a base model on a price dataset.
#include <cstdio>
#include <filesystem>

#include "cli/train_options.h"
#include "core/error.h"
#include "io/model_file.h"
#include "train/training_data.h"

namespace fs = std::filesystem;

namespace pricer::cli {
namespace {

// Below this many parameters the optimizer state of every weight is small, and training them all
// prices far better than LoRA on a frozen base (docs/results.md: -$18.5 MAE at 4 M parameters).
constexpr int64_t kFullFineTuningAdvisedBelow = 100'000'000;

int run_train(const TrainConfig& cfg, bool quiet, const std::string& val_path, const std::string& command_line) {
  require(!cfg.model.empty(), "train: --model is required (a GGUF file, Hugging Face directory or llama2.c .bin)");
  require(!cfg.dataset.empty(), "train: --data is required (a curate directory or JSON lines)");
  TrainConfig c = cfg;
  c.progress = !quiet;
  c.validate();
  const auto out_lock = prepare_output_dir(c);
  std::fprintf(stderr, "loading %s (base %s)\n", c.model.c_str(), c.base_dtype.c_str());
  ModelFile mf = load_model_file(c.model, dtype_from_name(c.base_dtype));
  if (const std::string bad = first_non_finite_tensor(mf); !bad.empty())
    throw Error(c.model + ": tensor " + bad + " holds NaN or infinite values; training cannot start from it");
  LlamaModel model = LlamaModel::from_weights(mf.config, std::move(mf.tensors), mf.source);
  auto tok = load_tokenizer(c.tokenizer.empty() ? c.model : c.tokenizer);
  require(tok->vocab_size() <= mf.config.vocab_size,
          "the tokenizer has " + std::to_string(tok->vocab_size()) + " tokens, more than the model's vocabulary");
  if (c.full) {
    model.enable_full_training();
  } else {
    // Adapters on a frozen base of a few million parameters barely move it (docs/results.md).
    if (mf.config.n_params() < kFullFineTuningAdvisedBelow)
      std::fprintf(stderr,
                   "note: this base has %.1f M parameters; on bases this small full fine-tuning (--full "
                   "--base-dtype f32) measured far better than adapters (docs/results.md)\n",
                   static_cast<double>(mf.config.n_params()) / 1e6);
    attach_adapters(model, c);
    attach_trainable_tokens(model, c, *tok);
    if (model.has_trainable_tokens())
      std::fprintf(stderr, "training %zu token rows besides the adapters\n", model.trainable_tokens().ids.size());
    if (!c.init_adapter.empty())
      std::fprintf(stderr, "starting from adapter %s (rank %lld, alpha %g, %s)\n", c.init_adapter.c_str(),
                   static_cast<long long>(c.rank), static_cast<double>(c.alpha), c.targets.c_str());
  }
  check_training_memory(model, c, c.full);  // before the dataset is read and tokenized
  const TrainingData data = load_training_data(c, val_path, *tok, mf.config.vocab_size);
  const auto& train = data.train;
  const auto& val = data.val;
  std::fprintf(stderr, "%zu training and %zu validation examples\n", train.size(), val.size());
  if (data.comparables)
    std::fprintf(stderr, "every prompt holds the prices of its %d most similar training items\n", data.comparables->k());
  const TrainHooks hooks = with_comparables_output(
      c.full ? full_model_output_hooks(*tok, mf.config, "pricer-finetuned", data.comparables ? data.comparables->k() : 0)
             : adapter_output_hooks(c.model, data.comparables ? data.comparables->k() : 0),
      data.comparables);
  const TrainSummary s = run_training(c, model, *tok, train, val, c.full, hooks, command_line);
  std::printf("run %lld: %lld steps, train loss %.4f", static_cast<long long>(s.run_id), static_cast<long long>(s.steps),
              s.last_train_loss);
  if (!val.empty()) {
    std::printf(", eval loss %.4f -> %.4f", s.first_eval_loss, s.last_eval_loss);
    if (s.last_eval_mae >= 0) std::printf(", eval MAE $%.2f -> $%.2f", s.first_eval_mae, s.last_eval_mae);
  }
  std::printf("%s\n", s.interrupted ? " (interrupted)" : "");
  // Only what is on disk: an interrupted run wrote its checkpoint, not last/ (nor, before its first
  // evaluation, best/).
  const char* file = c.full ? "model.gguf" : "adapter.gguf";
  for (const char* dir : {"last", "best"}) {
    const fs::path d = fs::path(c.out_dir) / dir;
    if (fs::exists(d / file))
      std::printf("%s: %s (%s)\n", dir, d.c_str(), c.full ? "model.gguf" : "PEFT + adapter.gguf");
  }
  if (s.interrupted) std::printf("checkpoint: %s/checkpoint.bin (continue with --resume)\n", c.out_dir.c_str());
  return s.interrupted ? 130 : 0;
}

Registrar reg{"train", "Fine-tune a base model with QLoRA on a price dataset", [](CLI::App& sub) {
  auto set = std::make_shared<TrainOptionSet>(sub);
  auto quiet = std::make_shared<bool>(false);
  auto val = std::make_shared<std::string>();
  sub.add_option("--config", set->config_path(), "YAML file of settings (keys as the long options, with _)");
  set->add("--model,-m", &TrainConfig::model, "Base model: GGUF, Hugging Face directory, safetensors or llama2.c .bin");
  set->add("--tokenizer", &TrainConfig::tokenizer, "Tokenizer (default: the model's)");
  set->add("--data,-d", &TrainConfig::dataset, "Dataset: curate directory, or JSON lines (prompt/completion or input_ids/completion_start)");
  sub.add_option("--val", *val, "Validation JSON lines (default: the dataset directory's val split)");
  set->add("--base-dtype", &TrainConfig::base_dtype, "Frozen base format: nf4, bf16 or f32");
  set->add("--compute-dtype", &TrainConfig::compute_dtype,
           "Precision of the base's linears: bf16 (bf16 operands, f32 sums; about twice as fast) or f32");
  set->add("--rank,-r", &TrainConfig::rank, "LoRA rank");
  set->add("--alpha", &TrainConfig::alpha, "LoRA alpha");
  set->add("--dropout", &TrainConfig::dropout, "LoRA dropout");
  set->add("--targets", &TrainConfig::targets, "Adapted projections: q,k,v,o,gate,up,down or all");
  set->add_flag("--rslora", &TrainConfig::rslora, "Scale by alpha/sqrt(rank)");
  set->add("--init-adapter", &TrainConfig::init_adapter, "Start from a PEFT directory or GGUF LoRA adapter");
  set->add("--trainable-tokens", &TrainConfig::trainable_tokens,
           "Also train these token rows of the frozen embedding and head (PEFT trainable_token_indices): "
           "numbers (the price tokens 0-999) or ids 17,42,...");
  set->add_flag("--full", &TrainConfig::full,
                "Full fine-tuning: train every weight (needs --base-dtype f32) and save <out>/last/model.gguf; "
                "best for small bases, QLoRA for large ones");
  set->add("--comparables", &TrainConfig::comparables,
           "Write the prices of the K most similar training items into every prompt (0 = off); the index "
           "is saved beside each output, and prediction adds the same");
  add_loop_options(*set);
  sub.add_flag("--quiet,-q", *quiet, "No progress output");
  return [set, quiet, val]() {
    TrainConfig defaults;
    return run_train(set->resolve(defaults), *quiet, *val, command_line());
  };
}};

}  // namespace
}  // namespace pricer::cli
