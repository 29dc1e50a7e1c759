// `pricer train`: QLoRA fine-tuning of a base model on a price dataset.
#include <cstdio>
#include <filesystem>

#include "cli/train_options.h"
#include "core/error.h"
#include "io/model_file.h"
#include "predict/validation_prices.h"
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
  TrainInputs in = load_train_base(c);
  LlamaModel model = LlamaModel::from_weights(in.base.config, std::move(in.base.tensors), in.base.source);
  // Adapters on a frozen base of a few million parameters barely move it (docs/results.md).
  if (!c.full && in.base.config.n_params() < kFullFineTuningAdvisedBelow)
    std::fprintf(stderr,
                 "note: this base has %.1f M parameters; on bases this small full fine-tuning (--full "
                 "--base-dtype f32) measured far better than adapters (docs/results.md)\n",
                 static_cast<double>(in.base.config.n_params()) / 1e6);
  make_trainable(model, c, *in.tok);
  if (model.has_trainable_tokens())
    std::fprintf(stderr, "training %zu token rows besides the adapters\n", model.trainable_tokens().ids.size());
  if (!c.init_adapter.empty())
    std::fprintf(stderr, "starting from adapter %s (rank %lld, alpha %g, %s)\n", c.init_adapter.c_str(),
                 static_cast<long long>(c.rank), static_cast<double>(c.alpha), c.targets.c_str());
  check_training_memory(model, c, c.full);  // before any data is read
  load_train_examples(in, c, val_path);
  if (in.data.comparables)
    std::fprintf(stderr, "every prompt holds the prices of its %d most similar training items\n",
                 in.data.comparables->k());
  const TrainHooks hooks = with_price_scores(output_hooks(c, in), *in.tok);
  const auto& val = in.data.val;
  const TrainSummary s = run_training(c, model, *in.tok, in.data.train, val, c.full, hooks, command_line);
  std::printf("run %lld: %lld steps, train loss %.4f", static_cast<long long>(s.run_id),
              static_cast<long long>(s.steps), s.last_train_loss);
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
                auto set = std::make_shared<TrainOptionSet>(sub, TrainCommand::train, TrainConfig{});
                auto quiet = std::make_shared<bool>(false);
                auto val = std::make_shared<std::string>();
                sub.add_option("--val", *val, "Validation JSON lines (default: the dataset directory's val split)");
                sub.add_flag("--quiet,-q", *quiet, "No progress output");
                return [set, quiet, val]() { return run_train(set->resolve(), *quiet, *val, command_line()); };
              }};

}  // namespace
}  // namespace pricer::cli
