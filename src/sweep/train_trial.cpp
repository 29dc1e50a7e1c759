#include "sweep/train_trial.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "io/model_file.h"
#include "monitor/recorder.h"
#include "predict/validation_prices.h"
#include "tokenizer/tokenizer.h"
#include "train/training_data.h"

namespace fs = std::filesystem;

namespace pricer::sweep {

namespace {

// A sweep's own parameter besides the searchable settings: alpha = ratio x rank.
constexpr std::string_view kAlphaRatio = "alpha_ratio";

// The setting a space parameter varies (null for alpha_ratio); an Error when it names none a
// sweep may vary.
const TrainSetting* searchable_setting(const std::string& name, const std::string& where) {
  if (name == kAlphaRatio) return nullptr;
  const TrainSetting* s = find_train_setting(name);
  if (s && s->searchable && s->name == name) return s;
  std::string list;
  for (const TrainSetting& t : train_settings())
    if (t.searchable) list += std::string(t.name) + ", ";
  throw Error(where + ": not a setting a sweep can vary (expected one of " + list + std::string(kAlphaRatio) + ")");
}

SettingType param_type(const TrainSetting* s) { return s ? s->type() : SettingType::real; }

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
    const SettingType type = param_type(searchable_setting(p.name, where));
    if (p.kind == ParamKind::choice) {
      for (const auto& c : p.choices)
        if (!fits(type, c)) throw Error(where + ": choice " + c.dump() + " does not fit " + p.name);
    } else if (type == SettingType::text || type == SettingType::boolean) {
      throw Error(where + ": " + p.name + " takes a list of choices, not a numeric range");
    } else if (type == SettingType::integer && !p.is_int()) {
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
      params[p.name] = p.kind == ParamKind::choice
                           ? p.choices[corner == 0 ? 0 : p.choices.size() - 1]
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
  const TrainSetting* s = searchable_setting(name, "sweep parameter '" + name + "'");
  require(fits(param_type(s), v), [&] { return "sweep parameter '" + name + "' cannot take the value " + v.dump(); });
  if (s) set_setting(c, *s, v);
  else c.alpha = 0;  // alpha_ratio: set from the rank once every parameter is in
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

nlohmann::json upgrade_train_settings(nlohmann::json extra) {
  if (!extra.contains("train") || !extra["train"].is_object()) return extra;
  nlohmann::json renamed = nlohmann::json::object();
  for (const auto& [key, value] : extra["train"].items()) {
    const TrainSetting* s = find_train_setting(key);
    renamed[s ? std::string(s->name) : key] = value;
  }
  extra["train"] = renamed;
  return extra;
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
    // Anything else as JSON: a JSON string is a YAML double-quoted scalar, a number or bool the same.
    out += v.is_number_float() ? float_text(v.get<double>()) : v.dump();
    out += "\n";
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

struct TrainTrialRunner::Shared {
  TrainInputs in;  // the same base, tokenizer and examples for every trial
  fs::path runs_db;
};

TrainTrialRunner::TrainTrialRunner(const SweepConfig& cfg) : cfg_(cfg), shared_(std::make_unique<Shared>()) {
  const TrainConfig& c = cfg.train;
  require(has_split(c.dataset, "val"), c.dataset + ": a sweep needs a validation split (val) to score trials");
  shared_->in = load_train_inputs(c);
  require(!shared_->in.data.val.empty(), c.dataset + ": the validation split is empty");
  shared_->runs_db = c.runs_db.empty() ? monitor::default_runs_db() : fs::path(c.runs_db);
}

TrainTrialRunner::~TrainTrialRunner() = default;

TrialOutcome TrainTrialRunner::operator()(TrialContext& ctx) const {
  const Shared& s = *shared_;
  TrainConfig c = trial_train_config(cfg_, ctx.trial);
  c.resume = ctx.resume;
  c.progress = c.progress && cfg_.search.parallel == 1;

  const ModelFile& base = s.in.base;
  LlamaModel model = LlamaModel::from_weights(base.config, base.tensors, base.source);
  make_trainable(model, c, *s.in.tok);
  TrainHooks hooks = with_price_scores(output_hooks(c, s.in), *s.in.tok);

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

  const TrainSummary sum =
      run_training(c, model, *s.in.tok, s.in.data.train, s.in.data.val, c.full, hooks,
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
    require(sum.best_eval_mae >= 0, c.dataset +
                                        ": no validation MAE (no prices, or a tokenizer without number tokens); "
                                        "use objective: loss");
    out.objective = sum.best_eval_mae;
  } else {
    out.objective = sum.best_eval_loss;
  }
  if (sum.early_stopped) out.message = sum.stop_message;
  return out;
}

}  // namespace pricer::sweep
