#include "train/training_data.h"

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/error.h"

namespace fs = std::filesystem;

namespace pricer {

namespace {

std::shared_ptr<const retrieval::ComparablesIndex> build_index(const TrainConfig& cfg) {
  const std::vector<PromptRecord> records = load_prompt_records(cfg.dataset, "train");
  std::vector<std::string> prompts;
  std::vector<double> prices;
  for (std::size_t i = 0; i < records.size(); ++i) {
    require(
        std::isfinite(records[i].price) && records[i].price > 0,
        cfg.dataset + ": training record " + std::to_string(i + 1) + " has no positive price, which comparables need");
    prompts.push_back(records[i].prompt);
    prices.push_back(records[i].price);
  }
  return std::make_shared<const retrieval::ComparablesIndex>(prompts, prices, static_cast<int>(cfg.comparables));
}

}  // namespace

TrainingData load_training_data(const TrainConfig& cfg, const std::string& val_path, const Tokenizer& tok,
                                int64_t vocab) {
  TrainingData d;
  DatasetOptions train_opt, val_opt;
  train_opt.max_length = val_opt.max_length = cfg.max_length;
  if (cfg.comparables > 0) {
    d.comparables = build_index(cfg);
    const auto index = d.comparables;
    train_opt.rewrite_prompt = [index](const std::string& prompt, std::size_t row) {
      return retrieval::prompt_with_comparables(*index, prompt, static_cast<int64_t>(row));
    };
    val_opt.rewrite_prompt = [index](const std::string& prompt, std::size_t) {
      return retrieval::prompt_with_comparables(*index, prompt);
    };
  }
  d.train = load_examples(cfg.dataset, "train", tok, vocab, train_opt);
  if (!val_path.empty()) d.val = load_examples(val_path, "val", tok, vocab, val_opt);
  else if (has_split(cfg.dataset, "val")) d.val = load_examples(cfg.dataset, "val", tok, vocab, val_opt);
  return d;
}

TrainInputs load_train_base(const TrainConfig& cfg) {
  TrainInputs in;
  std::fprintf(stderr, "loading %s (base %s)\n", cfg.model.c_str(), cfg.base_dtype.c_str());
  in.base = load_model_file(cfg.model, dtype_from_name(cfg.base_dtype));
  if (const std::string bad = first_non_finite_tensor(in.base); !bad.empty())
    throw Error(cfg.model + ": tensor " + bad + " holds NaN or infinite values; training cannot start from it");
  in.tok = load_tokenizer(cfg.tokenizer.empty() ? cfg.model : cfg.tokenizer);
  require(in.tok->vocab_size() <= in.base.config.vocab_size, [&] {
    return "the tokenizer has " + std::to_string(in.tok->vocab_size()) + " tokens, more than the model's vocabulary (" +
           std::to_string(in.base.config.vocab_size) + ")";
  });
  return in;
}

void load_train_examples(TrainInputs& in, const TrainConfig& cfg, const std::string& val_path) {
  in.data = load_training_data(cfg, val_path, *in.tok, in.base.config.vocab_size);
  std::fprintf(stderr, "%zu training and %zu validation examples\n", in.data.train.size(), in.data.val.size());
}

TrainInputs load_train_inputs(const TrainConfig& cfg, const std::string& val_path) {
  TrainInputs in = load_train_base(cfg);
  load_train_examples(in, cfg, val_path);
  return in;
}

void make_trainable(LlamaModel& model, TrainConfig& cfg, const Tokenizer& tok) {
  if (cfg.full) {
    model.enable_full_training();
    return;
  }
  attach_adapters(model, cfg);
  attach_trainable_tokens(model, cfg, tok);
}

TrainHooks output_hooks(const TrainConfig& cfg, const TrainInputs& in) {
  const int comparables_k = in.data.comparables ? in.data.comparables->k() : 0;
  TrainHooks hooks = cfg.full ? full_model_output_hooks(*in.tok, in.base.config, "pricer-finetuned", comparables_k)
                              : adapter_output_hooks(cfg.model, comparables_k);
  return with_comparables_output(std::move(hooks), in.data.comparables);
}

TrainHooks with_comparables_output(TrainHooks hooks, std::shared_ptr<const retrieval::ComparablesIndex> index) {
  if (!index) return hooks;
  hooks.save_output = [save = hooks.save_output, index](const LlamaModel& m, const std::string& dir) {
    save(m, dir);
    index->save((fs::path(dir) / retrieval::kComparablesFile).string());
  };
  return hooks;
}

}  // namespace pricer
