#include "sweep/train_trial.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "io/model_file.h"
#include "monitor/recorder.h"
#include "tokenizer/tokenizer.h"
#include "train/training_data.h"

namespace fs = std::filesystem;

namespace pricer::sweep {

namespace {

enum class KeyType { real, integer, text, boolean };

struct SearchableKey {
  const char* name;
  KeyType type;
};

// The settings a sweep may vary (the data, model and run plumbing stay fixed).
constexpr SearchableKey kSearchable[] = {
    {"lr", KeyType::real},           {"rank", KeyType::integer},       {"alpha", KeyType::real},
    {"alpha_ratio", KeyType::real},  {"dropout", KeyType::real},       {"targets", KeyType::text},
    {"rslora", KeyType::boolean},    {"optimizer", KeyType::text},     {"schedule", KeyType::text},
    {"warmup_ratio", KeyType::real}, {"weight_decay", KeyType::real},  {"max_grad_norm", KeyType::real},
    {"momentum", KeyType::real},     {"epochs", KeyType::integer},     {"max_steps", KeyType::integer},
    {"batch_size", KeyType::integer}};

const SearchableKey* find_key(const std::string& name) {
  for (const auto& k : kSearchable)
    if (name == k.name) return &k;
  return nullptr;
}

std::string searchable_list() {
  std::string s;
  for (const auto& k : kSearchable) s += (s.empty() ? "" : ", ") + std::string(k.name);
  return s;
}

bool fits(KeyType t, const nlohmann::json& v) {
  switch (t) {
    case KeyType::real: return v.is_number();
    case KeyType::integer: return v.is_number_integer();
    case KeyType::text: return v.is_string();
    case KeyType::boolean: return v.is_boolean();
  }
  return false;
}

// The shortest decimal that reads back as the same value: as the same float for values that are
// floats (most settings), else as the same double.
std::string float_text(double v) {
  const bool is_float = static_cast<double>(static_cast<float>(v)) == v;
  char buf[64];
  for (int prec = 1; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*g", prec, v);
    const double back = std::strtod(buf, nullptr);
    if (back == v || (is_float && static_cast<float>(back) == static_cast<float>(v))) break;
  }
  std::string s = buf;
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // stays a float to YAML readers
  return s;
}

}  // namespace

void check_space_keys(const SweepConfig& cfg, const YAML::Node& space_node) {
  for (const auto& p : cfg.space.params) {
    const YAML::Node at = space_node[p.name];
    const std::string where = cfg.file + ": space." + p.name + " (line " + std::to_string(at.Mark().line + 1) + ")";
    const SearchableKey* k = find_key(p.name);
    if (!k) throw Error(where + ": not a setting a sweep can vary (expected one of " + searchable_list() + ")");
    if (p.kind == ParamKind::choice) {
      for (const auto& c : p.choices)
        if (!fits(k->type, c))
          throw Error(where + ": choice " + c.dump() + " does not fit " + p.name);
    } else if (k->type == KeyType::text || k->type == KeyType::boolean) {
      throw Error(where + ": " + p.name + " takes a list of choices, not a numeric range");
    } else if (k->type == KeyType::integer && !p.is_int()) {
      throw Error(where + ": " + p.name + " is an integer: use type int or log_int");
    }
  }
  if (cfg.space.find("alpha") && cfg.space.find("alpha_ratio"))
    throw Error(cfg.file + ": space: search alpha or alpha_ratio, not both");
  // Every corner of the space must give settings the trainer accepts: try the extremes now rather
  // than fail trials later.
  for (int corner = 0; corner < 2; ++corner) {
    TrainConfig t = cfg.train;
    nlohmann::json params = nlohmann::json::object();
    for (const auto& p : cfg.space.params)
      params[p.name] = p.kind == ParamKind::choice ? p.choices[corner == 0 ? 0 : p.choices.size() - 1]
                                                   : p.from_internal(corner == 0 ? p.internal_low() : p.internal_high());
    for (const auto& p : cfg.space.params) apply_param(t, p.name, params[p.name]);
    try {
      t.validate();
      parse_lora_targets(t.targets);
    } catch (const Error& e) {
      throw Error(cfg.file + ": space: parameters " + params.dump() + " give invalid training settings: " + e.what());
    }
  }
}

void apply_param(TrainConfig& c, const std::string& name, const nlohmann::json& v) {
  auto set = [](auto& field, const nlohmann::json& value) { field = value.get<std::remove_reference_t<decltype(field)>>(); };
  const SearchableKey* k = find_key(name);
  require(k && fits(k->type, v), "sweep parameter '" + name + "' cannot take the value " + v.dump());
  if (name == "lr") set(c.lr, v);
  else if (name == "rank") set(c.rank, v);
  else if (name == "alpha") set(c.alpha, v);
  else if (name == "alpha_ratio") c.alpha = 0;  // set from the rank below, once every parameter is in
  else if (name == "dropout") set(c.dropout, v);
  else if (name == "targets") set(c.targets, v);
  else if (name == "rslora") set(c.rslora, v);
  else if (name == "optimizer") set(c.optimizer, v);
  else if (name == "schedule") set(c.schedule, v);
  else if (name == "warmup_ratio") set(c.warmup_ratio, v);
  else if (name == "weight_decay") set(c.weight_decay, v);
  else if (name == "max_grad_norm") set(c.max_grad_norm, v);
  else if (name == "momentum") set(c.momentum, v);
  else if (name == "epochs") set(c.epochs, v);
  else if (name == "max_steps") set(c.max_steps, v);
  else if (name == "batch_size") set(c.batch_size, v);
}

TrainConfig trial_train_config(const SweepConfig& cfg, const TrialRecord& trial) {
  TrainConfig c = cfg.train;
  for (const auto& [name, v] : trial.params.items()) apply_param(c, name, v);
  if (trial.params.contains("alpha_ratio"))
    c.alpha = trial.params["alpha_ratio"].get<float>() * static_cast<float>(c.rank);
  c.out_dir = trial.out_dir;
  c.run_name = cfg.name + "-" + fs::path(trial.out_dir).filename().string();
  c.eval_metric = cfg.objective;
  if (cfg.search.pruning.enabled()) c.eval_every = cfg.search.pruning.min_steps;  // an evaluation at every rung
  c.resume = false;
  return c;
}

std::string train_config_yaml(const TrainConfig& cfg, const std::string& comment) {
  std::string out;
  for (size_t pos = 0; pos < comment.size();) {
    const size_t nl = comment.find('\n', pos);
    out += "# " + comment.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos) + "\n";
    pos = nl == std::string::npos ? comment.size() : nl + 1;
  }
  const nlohmann::json settings = cfg.to_json();
  for (const auto& [k, v] : settings.items()) {
    if (k == "run_name") continue;  // a run of its own gets its own name
    out += k + ": ";
    if (v.is_number_float()) out += float_text(v.get<double>());
    else if (v.is_string()) out += v.dump();  // a JSON string is a YAML double-quoted scalar
    else out += v.dump();
    out += "\n";
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

struct TrainTrialRunner::Shared {
  ModelFile base;
  std::unique_ptr<Tokenizer> tok;
  std::vector<PricedExample> train, val;
  std::shared_ptr<const retrieval::ComparablesIndex> comparables;  // the same for every trial
  fs::path runs_db;
};

TrainTrialRunner::TrainTrialRunner(const SweepConfig& cfg) : cfg_(cfg), shared_(std::make_unique<Shared>()) {
  const TrainConfig& c = cfg.train;
  std::fprintf(stderr, "loading %s (base %s)\n", c.model.c_str(), c.base_dtype.c_str());
  shared_->base = load_model_file(c.model, dtype_from_name(c.base_dtype));
  shared_->tok = load_tokenizer(c.tokenizer.empty() ? c.model : c.tokenizer);
  require(shared_->tok->vocab_size() <= shared_->base.config.vocab_size,
          "the tokenizer has " + std::to_string(shared_->tok->vocab_size()) + " tokens, more than the model's vocabulary");
  require(has_split(c.dataset, "val"), c.dataset + ": a sweep needs a validation split (val) to score trials");
  TrainingData data = load_training_data(c, "", *shared_->tok, shared_->base.config.vocab_size);
  shared_->train = std::move(data.train);
  shared_->val = std::move(data.val);
  shared_->comparables = std::move(data.comparables);
  require(!shared_->val.empty(), c.dataset + ": the validation split is empty");
  std::fprintf(stderr, "%zu training and %zu validation examples\n", shared_->train.size(), shared_->val.size());
  shared_->runs_db = c.runs_db.empty() ? monitor::default_runs_db() : fs::path(c.runs_db);
}

TrainTrialRunner::~TrainTrialRunner() = default;

TrialOutcome TrainTrialRunner::operator()(TrialContext& ctx) const {
  const Shared& s = *shared_;
  TrainConfig c = trial_train_config(cfg_, ctx.trial);
  c.resume = ctx.resume;
  c.progress = c.progress && cfg_.search.parallel == 1;

  LlamaModel model = LlamaModel::from_weights(s.base.config, s.base.tensors, s.base.source);
  TrainHooks hooks;
  if (c.full) {  // every weight, as `train --full`: the trial's model goes to last|best/model.gguf
    model.enable_full_training();
    hooks = full_model_output_hooks(*s.tok, s.base.config, "pricer-finetuned", s.comparables ? s.comparables->k() : 0);
  } else {
    attach_adapters(model, c);
    attach_trainable_tokens(model, c, *s.tok);
    hooks = adapter_output_hooks(c.model, s.comparables ? s.comparables->k() : 0);
  }
  hooks = with_comparables_output(std::move(hooks), s.comparables);

  monitor::RunDb db(s.runs_db);
  hooks.on_start = [&](int64_t run_id) {
    db.set_sweep(run_id, cfg_.name);
    ctx.add_run(run_id);
  };
  // At a rung, the trial's best value so far goes to ASHA; the final evaluation is scored below.
  hooks.on_eval = [&](const EvalReport& r) -> std::string {
    if (r.final_eval || !cfg_.search.pruning.is_rung(r.step)) return "";
    const double best = cfg_.objective == "mae" ? r.best_mae : r.best_loss;
    if (!(best >= 0) || ctx.report(r.step, best)) return "";
    return "pruned at step " + std::to_string(r.step) + " by the sweep (not among the best 1/" +
           std::to_string(cfg_.search.pruning.reduction_factor) + " at this rung)";
  };

  const TrainSummary sum = run_training(c, model, *s.tok, s.train, s.val, c.full, hooks,
                                        "pricer sweep --config " + cfg_.file + "  # " + fs::path(c.out_dir).filename().string());
  TrialOutcome out;
  out.steps = sum.steps;
  out.interrupted = sum.interrupted;
  if (!sum.stop_message.empty() && !sum.early_stopped) {
    out.pruned = true;  // scored by its last rung
    out.message = sum.stop_message;
    return out;
  }
  if (cfg_.objective == "mae") {
    require(sum.best_eval_mae >= 0, c.dataset + ": no validation MAE (no prices, or a tokenizer without number tokens); "
                                                "use objective: loss");
    out.objective = sum.best_eval_mae;
  } else {
    out.objective = sum.best_eval_loss;
  }
  if (sum.early_stopped) out.message = sum.stop_message;
  return out;
}

}  // namespace pricer::sweep
