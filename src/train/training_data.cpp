#include "train/training_data.h"

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "data/cross_fit.h"

namespace fs = std::filesystem;

namespace pricer {

namespace {

// The index of the training items the run learns from (`keep`: all when unset).
std::shared_ptr<const retrieval::ComparablesIndex> build_index(const TrainConfig& cfg,
                                                               const std::function<bool(const std::string&)>& keep) {
  const std::vector<PromptRecord> records = load_prompt_records(cfg.dataset, "train");
  std::vector<std::string> prompts;
  std::vector<double> prices;
  for (std::size_t i = 0; i < records.size(); ++i) {
    if (keep && !keep(records[i].prompt)) continue;
    require(
        std::isfinite(records[i].price) && records[i].price > 0,
        cfg.dataset + ": training record " + std::to_string(i + 1) + " has no positive price, which comparables need");
    prompts.push_back(records[i].prompt);
    prices.push_back(records[i].price);
  }
  return std::make_shared<const retrieval::ComparablesIndex>(prompts, prices, static_cast<int>(cfg.comparables));
}

// Cross-fitting's filter: the training records outside the left-out fold, counting what it
// leaves out; unset when the run learns from every record.
std::function<bool(const std::string&)> outside_left_out_fold(const TrainConfig& cfg, std::size_t& left_out) {
  if (cfg.cross_fit_folds == 0) return {};
  const int folds = static_cast<int>(cfg.cross_fit_folds), fold = static_cast<int>(cfg.cross_fit_fold);
  return [folds, fold, &left_out](const std::string& prompt) {
    const bool keep = data::cross_fit_fold(prompt, folds) != fold;
    left_out += keep ? 0 : 1;
    return keep;
  };
}

}  // namespace

TrainingData load_training_data(const TrainConfig& cfg, const std::string& val_path, const Tokenizer& tok,
                                int64_t vocab) {
  TrainingData d;
  DatasetOptions train_opt, val_opt;
  train_opt.max_length = val_opt.max_length = cfg.max_length;
  std::size_t left_out = 0, index_left_out = 0;
  train_opt.keep_prompt = outside_left_out_fold(cfg, left_out);
  if (cfg.comparables > 0) {
    d.comparables = build_index(cfg, outside_left_out_fold(cfg, index_left_out));
    const auto index = d.comparables;
    train_opt.rewrite_prompt = [index](const std::string& prompt, std::size_t row) {
      return retrieval::prompt_with_comparables(*index, prompt, static_cast<int64_t>(row));
    };
    val_opt.rewrite_prompt = [index](const std::string& prompt, std::size_t) {
      return retrieval::prompt_with_comparables(*index, prompt);
    };
  }
  d.train = load_examples(cfg.dataset, "train", tok, vocab, train_opt);
  train_opt.keep_prompt = nullptr;  // it counts into left_out, a local
  if (cfg.cross_fit_folds > 0) {
    const std::string fold =
        "fold " + std::to_string(cfg.cross_fit_fold) + " of " + std::to_string(cfg.cross_fit_folds);
    require(left_out > 0 && !d.train.empty(), [&] {
      return cfg.dataset + ": cross-fitting's " + fold + " holds " + (left_out == 0 ? "none" : "all") + " of the " +
             std::to_string(left_out + d.train.size()) + " training items";
    });
    std::fprintf(stderr, "cross-fitting: %s left out (%zu of %zu training items)\n", fold.c_str(), left_out,
                 left_out + d.train.size());
  }
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

// The metadata that says how the outputs were trained: with comparables (k), with a cross-fitting
// fold left out.
std::vector<GgufKV> output_marks(const TrainConfig& cfg, const TrainInputs& in) {
  std::vector<GgufKV> marks;
  if (in.data.comparables)
    marks.push_back({retrieval::kComparablesKey, GgufValue::u32(static_cast<uint32_t>(in.data.comparables->k()))});
  if (cfg.cross_fit_folds > 0) {
    marks.push_back({data::kCrossFitFoldsKey, GgufValue::u32(static_cast<uint32_t>(cfg.cross_fit_folds))});
    marks.push_back({data::kCrossFitFoldKey, GgufValue::u32(static_cast<uint32_t>(cfg.cross_fit_fold))});
  }
  return marks;
}

TrainHooks output_hooks(const TrainConfig& cfg, const TrainInputs& in) {
  TrainHooks hooks = cfg.full
                         ? full_model_output_hooks(*in.tok, in.base.config, "pricer-finetuned", output_marks(cfg, in))
                         : adapter_output_hooks(cfg.model, output_marks(cfg, in));
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
