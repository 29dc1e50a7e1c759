#include "train/trainer.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/clock.h"
#include "core/comm.h"
#include "core/error.h"
#include "core/format.h"
#include "core/progress.h"
#include "core/threads.h"
#include "io/model_file.h"
#include "model/model_export.h"
#include "monitor/interrupt.h"
#include "monitor/recorder.h"
#include "tokenizer/vocab_export.h"
#include "train/adapter_io.h"
#include "train/checkpoint.h"
#include "train/optimizer.h"
#include "train/run_identity.h"
#include "train/weight_average.h"

namespace fs = std::filesystem;

namespace pricer {

// ---------------------------------------------------------------------------------------------
// Evaluation

EvalResult evaluate(LlamaModel& model, Backend& be, const std::vector<PricedExample>& val, int64_t max_items,
                    int64_t micro_batch, const PriceScorer& score_prices) {
  EvalResult r;
  const int64_t n =
      max_items > 0 ? std::min<int64_t>(max_items, static_cast<int64_t>(val.size())) : static_cast<int64_t>(val.size());
  if (n == 0) return r;
  double loss_sum = 0, tokens = 0;
  for (int64_t i = 0; i < n; i += micro_batch) {
    std::vector<int64_t> idx;
    for (int64_t j = i; j < std::min(n, i + micro_batch); ++j) idx.push_back(j);
    const Batch b = batch_of(val, idx);
    const double k = static_cast<double>(b.n_loss_tokens());
    loss_sum += model.loss(b, be) * k;
    tokens += k;
  }
  r.loss = loss_sum / std::max(1.0, tokens);
  if (score_prices && !std::isnan(val[0].price))
    r.prices = score_prices(model, be, std::span(val).first(static_cast<size_t>(n)), micro_batch);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Step helpers

namespace {

// Multiplies every gradient by `factor` (no pass at all when it is 1).
void scale_grads(const std::vector<Param>& params, double factor) {
  if (factor == 1.0) return;
  const float f = static_cast<float>(factor);
  for (const Param& p : params)
    for (int64_t i = 0; i < p.size; ++i) p.grad[i] *= f;
}

// The first trainable tensor holding a NaN or infinity, "" when every value is finite. Weights
// that went non-finite never come back: every later loss is NaN.
std::string first_non_finite(const std::vector<Param>& params) {
  for (const Param& p : params) {
    bool finite = true;
#pragma omp parallel for reduction(&& : finite) num_threads(threads()) if (p.size > 65536)
    for (int64_t i = 0; i < p.size; ++i) finite = finite && std::isfinite(p.value[i]);
    if (!finite) return p.name;
  }
  return {};
}

std::string lr_text(float lr) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", static_cast<double>(lr));
  return buf;
}

// Non-finite steps in a row after which a run is stopped as diverged (one can be a bad batch).
constexpr int64_t kMaxNonFiniteSteps = 5;

// best/ and last/ are replaced as one unit: their PEFT and GGUF files always come from one step.
void save_output_atomic(const TrainHooks& hooks, const LlamaModel& model, const std::string& dir) {
  replace_directory_atomic(dir, [&](const fs::path& staging) { hooks.save_output(model, staging.string()); });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// One batch's gradient

namespace {

struct BatchGradient {
  double loss = 0;  // mean over the batch's loss tokens
  int64_t tokens_fed = 0;  // tokens run forward and backward, by every rank together
};

// Every param's gradient summed over the ranks in one exchange (one per tensor would pay the
// network's latency hundreds of times a step: LoRA has two tensors per adapted projection).
void sum_over_ranks(const std::vector<Param>& params) {
  size_t n = 0;
  for (const Param& p : params) n += static_cast<size_t>(p.size);
  std::vector<float> all(n);
  float* at = all.data();
  for (const Param& p : params) at = std::copy_n(p.grad, p.size, at);
  comm::sum(all);
  const float* from = all.data();
  for (const Param& p : params) {
    std::copy_n(from, p.size, p.grad);
    from += p.size;
  }
}

// The gradient of the batch's mean loss into the params' grads. Each micro-batch's mean-loss
// gradient weighs by its share of the batch's loss tokens, so the step is that of one big batch
// (transformers' num_items_in_batch). Gradients add up in place: before micro-batch m the sum so
// far is rescaled from 1/k[m-1] to 1/k[m] units. Under MPI each rank runs every size-th
// micro-batch (the same dropout masks as one process running them all), its sum is brought to
// loss-token units, and the ranks' sums are added in rank order before the scale to 1/K.
BatchGradient accumulate_gradients(LlamaModel& model, const std::vector<Param>& params, const std::vector<Batch>& micro,
                                   Backend& be, const TrainConfig& cfg, int64_t step) {
  double sums[3] = {0, 0, 0};  // loss x tokens, loss tokens, tokens fed
  double last_k = 0;
  for (size_t m = static_cast<size_t>(comm::rank()); m < micro.size(); m += static_cast<size_t>(comm::size())) {
    const double k = static_cast<double>(micro[m].n_loss_tokens());
    if (last_k > 0) scale_grads(params, last_k / k);
    TrainOptions to;
    to.checkpoint = cfg.checkpoint_layers;
    to.dropout_seed = cfg.seed;
    to.step = static_cast<uint64_t>(step) * 4096 + static_cast<uint64_t>(m);
    const float l = model.forward_backward(micro[m], be, to);
    sums[0] += static_cast<double>(l) * k;
    sums[1] += k;
    sums[2] += static_cast<double>(micro[m].size());
    last_k = k;
  }
  if (comm::size() > 1) {
    scale_grads(params, last_k);  // to loss-token units (a rank without a micro-batch holds zeros)
    sum_over_ranks(params);
    comm::sum(std::span<double>(sums, 3));
    last_k = 1;
  }
  scale_grads(params, last_k / sums[1]);
  return {sums[0] / sums[1], static_cast<int64_t>(sums[2])};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The loop

namespace {

// One training run from its first (or resumed) step to its outputs. The loop's parts are
// methods: a step, an evaluation, a checkpoint, the progress line; the members are what they
// share. Under MPI rank 0 alone speaks and writes (progress, run database, checkpoints, outputs).
class TrainingRun {
 public:
  TrainingRun(const TrainConfig& cfg, LlamaModel& model, const Tokenizer& tok, const std::vector<PricedExample>& train,
              const std::vector<PricedExample>& val, bool mode_full, const TrainHooks& hooks)
      : cfg_(cfg),
        model_(model),
        train_(train),
        val_(val),
        mode_full_(mode_full),
        hooks_(hooks),
        be_(make_cpu_backend(dtype_from_name(cfg.compute_dtype))),
        params_(model.trainable_params()),
        opt_(optimizer_config(cfg), make_param_groups(params_, cfg.weight_decay)),
        ckpt_((fs::path(cfg.out_dir) / "checkpoint.bin").string()),
        talk_(cfg.progress && comm::root()),
        label_(mode_full && !cfg.full ? "pretrain" : "train") {  // full fine-tuning is training too
    if (cfg.price_smoothing > 0) {
      numbers_ = number_tokens(tok);  // throws when the vocabulary has no number tokens
    }
    const int64_t batches_per_epoch = (static_cast<int64_t>(train.size()) + cfg.batch_size - 1) / cfg.batch_size;
    total_ = batches_per_epoch * std::max<int64_t>(1, cfg.epochs);
    if (cfg.max_steps > 0) total_ = std::min(total_, cfg.max_steps);
    if (cfg.max_steps > 0 && cfg.epochs <= 0) total_ = cfg.max_steps;
    cfg_json_ = cfg.to_json();
    cfg_json_["identity"] = run_identity(cfg, train);
    if (cfg.ema > 0) avg_.emplace(params_, cfg.ema);
  }

  TrainSummary run(uint64_t memory_need, const std::string& command_line) {
    resume_if_asked();
    open_record(memory_need, command_line);
    monitor::InterruptGuard guard;
    sum_.run_id = rec_->id();
    if (hooks_.on_start) hooks_.on_start(rec_->id());
    t_start_ = monotonic_seconds();
    start_step_ = st_.step;
    if (st_.step == 0 && cfg_.eval_every > 0) evaluate(false);  // the untrained baseline
    bool stop = !sum_.stop_message.empty();  // a hook may stop the run at the baseline already
    for (; st_.epoch < std::max<int64_t>(1, cfg_.epochs) && !stop; ++st_.epoch) {
      const auto batches = epoch_batches(train_, cfg_.batch_size, cfg_.seed, st_.epoch);
      for (; st_.batch_in_epoch < static_cast<int64_t>(batches.size()); ++st_.batch_in_epoch) {
        if (st_.step >= total_) {
          stop = true;
          break;
        }
        step(batches[st_.batch_in_epoch]);
        stop = after_step(static_cast<int64_t>(batches.size()));
        if (sum_.interrupted) return summarize();
        if (stop) break;
      }
      // A stopped run keeps its place (the epoch not advanced), so a resume with a larger step
      // budget continues from exactly there.
      if (stop) break;
      st_.batch_in_epoch = 0;
    }
    finish();
    return summarize();
  }

 private:
  static OptimizerConfig optimizer_config(const TrainConfig& cfg) {
    OptimizerConfig oc;
    oc.kind = cfg.optimizer == "sgd" ? OptimizerKind::SGD : OptimizerKind::AdamW;
    oc.momentum = cfg.momentum;
    return oc;
  }

  // Evaluation and saved outputs see the averaged weights when there are any.
  void averaged(const std::function<void()>& f) {
    if (avg_) avg_->with_averaged(params_, f);
    else f();
  }

  void resume_if_asked() {
    if (cfg_.resume && fs::exists(ckpt_)) {  // a sweep trial may resume before its first checkpoint
      st_ = load_checkpoint(ckpt_, params_, opt_, avg_ ? &*avg_ : nullptr, [&](const nlohmann::json& saved) {
        const std::vector<std::string> diff = resume_mismatches(saved, cfg_json_);
        if (diff.empty()) return;
        std::string list;
        for (const auto& d : diff) list += "\n  " + d;
        throw Error(ckpt_ + ": this run is not the one saved there:" + list +
                    "\n(only the step budget --epochs/--max-steps, evaluation and checkpoint cadence, the run name and"
                    " file paths may change on --resume; start a new run with another --out, or --overwrite)");
      });
      if (comm::root())
        std::fprintf(stderr, "resuming from %s at step %lld\n", ckpt_.c_str(), static_cast<long long>(st_.step));
    }
    if (const std::string bad = first_non_finite(params_); !bad.empty())
      throw Error((cfg_.resume && fs::exists(ckpt_) ? ckpt_ : cfg_.model) + ": tensor " + bad +
                  " holds NaN or infinite values; training cannot start from it");
  }

  void open_record(uint64_t memory_need, const std::string& command_line) {
    monitor::NewRun nr;
    nr.name = cfg_.run_name.empty() ? fs::path(cfg_.out_dir).filename().string() : cfg_.run_name;
    nr.kind = label_ == "pretrain" ? monitor::RunKind::pretrain : monitor::RunKind::train;
    nr.command_line = command_line;
    nr.base_model = cfg_.model;
    nr.dataset = cfg_.dataset;
    nr.output_dir = cfg_.out_dir;
    monitor::RecorderOptions ro;
    if (!cfg_.runs_db.empty()) ro.db_path = cfg_.runs_db;
    ro.database = !cfg_.no_record;
    if (cfg_.no_record) ro.log_dir = fs::path(cfg_.out_dir) / "logs";
    if (!comm::root()) {  // records nothing: rank 0 records the run
      ro.database = ro.jsonl = ro.tensorboard = false;
      ro.log_dir = fs::path(cfg_.out_dir) / "logs";
    }
    rec_ = std::make_unique<monitor::RunRecorder>(nr, ro);
    nlohmann::json p = cfg_json_;
    p["mode"] = mode_full_ ? "full" : "lora";
    p["train_examples"] = train_.size();
    p["val_examples"] = val_.size();
    p["total_steps"] = total_;
    p["resumed_at_step"] = st_.step;
    p["memory_estimate_mib"] = memory_need >> 20;
    p["ranks"] = comm::size();
    if (comm::world_size() > 1) p["world_rank"] = comm::world_rank();  // which rank ran it (a sweep's trials)
    rec_->log_params(p);
  }

  // One optimizer step on the batch `idx` (skipped, and counted, when loss or gradient is not finite).
  void step(const std::vector<int64_t>& idx) {
    model_.zero_grad();
    std::vector<Batch> micro;
    for (size_t at = 0; at < idx.size(); at += static_cast<size_t>(cfg_.micro())) {
      const std::vector<int64_t> part(idx.begin() + static_cast<int64_t>(at),
                                      idx.begin() + static_cast<int64_t>(std::min(idx.size(), at + cfg_.micro())));
      micro.push_back(batch_of(train_, part));
      if (cfg_.price_smoothing > 0) add_price_smoothing(micro.back(), train_, part, numbers_, cfg_.price_smoothing);
    }
    const BatchGradient g = accumulate_gradients(model_, params_, micro, *be_, cfg_, st_.step);
    tokens_done_ += g.tokens_fed;
    const double loss = g.loss;
    const float norm = clip_grad_norm(opt_.groups(), cfg_.max_grad_norm);
    const float lr = scheduled_lr(cfg_, st_.step, total_);
    const bool finite = std::isfinite(loss) && std::isfinite(norm);
    if (finite) {
      opt_.step(*be_, lr);
      st_.last_train_loss = loss;
      non_finite_run_ = 0;
      if (const std::string bad = first_non_finite(params_); !bad.empty())
        throw Error("training diverged at step " + std::to_string(st_.step + 1) + ": " + bad +
                    " went non-finite after the update (lr " + lr_text(lr) + "); lower --lr or --max-grad-norm");
      if (avg_) avg_->update(params_);
    } else {
      ++st_.skipped;
      if (++non_finite_run_ >= kMaxNonFiniteSteps)
        throw Error("training diverged: the " + std::string(std::isfinite(loss) ? "gradient norm" : "loss") +
                    " was non-finite for " + std::to_string(non_finite_run_) + " steps in a row (to step " +
                    std::to_string(st_.step + 1) + "); lower --lr");
    }
    ++st_.step;  // metrics of an update are logged at the step count after it (1 = first update)
    const double tok_s = static_cast<double>(tokens_done_) / std::max(1e-9, monotonic_seconds() - t_start_);
    if (finite) {
      rec_->log_metrics(
          st_.step, {{"train/loss", loss}, {"train/grad_norm", norm}, {"train/lr", lr}, {"train/tokens_per_s", tok_s}});
    } else {
      if (comm::root())
        std::fprintf(stderr, "%s%s step %lld: non-finite %s (%g), update skipped (%lld so far)\n",
                     talk_ && tty_ ? "\n" : "", label_.c_str(), static_cast<long long>(st_.step),
                     std::isfinite(loss) ? "gradient norm" : "loss",
                     std::isfinite(loss) ? static_cast<double>(norm) : loss, static_cast<long long>(st_.skipped));
      rec_->log_metrics(st_.step, {{"train/skipped_steps", static_cast<double>(st_.skipped)}});
    }
    draw_progress(loss, lr, tok_s);
  }

  // On a terminal the line redraws in place; in a log, a line every few seconds.
  void draw_progress(double loss, float lr, double tok_s) {
    if (!talk_ || (monotonic_seconds() - last_draw_ <= (tty_ ? 0.2 : 5.0) && st_.step != total_)) return;
    last_draw_ = monotonic_seconds();
    const double frac = static_cast<double>(st_.step) / static_cast<double>(total_);
    const int filled = static_cast<int>(frac * 24);
    const double rate = static_cast<double>(st_.step - start_step_) / std::max(1e-9, last_draw_ - t_start_);
    std::fprintf(stderr, "%s%s [%s%s] %3.0f%% step %lld/%lld loss %.4f lr %.2e %.0f tok/s ETA %s%s", tty_ ? "\r" : "",
                 label_.c_str(), std::string(filled, '#').c_str(), std::string(24 - filled, '.').c_str(), frac * 100,
                 static_cast<long long>(st_.step), static_cast<long long>(total_), loss, lr, tok_s,
                 format_duration(static_cast<double>(total_ - st_.step) / rate).c_str(), tty_ ? "\x1b[K" : "\n");
    std::fflush(stderr);
  }

  // After a step: evaluation when due, stop decisions, checkpoint, the hook; true to stop.
  bool after_step(int64_t batches_in_epoch) {
    bool stop = false;
    if (cfg_.eval_every > 0 && st_.step % cfg_.eval_every == 0 && st_.step < total_) evaluate(false);
    if (!sum_.stop_message.empty()) {
      if (talk_)
        std::fprintf(stderr, "%sstopped at step %lld: %s\n", tty_ ? "\n" : "", static_cast<long long>(st_.step),
                     sum_.stop_message.c_str());
      stop = true;
    } else if (cfg_.early_stopping > 0 && st_.evals_without_improvement >= cfg_.early_stopping) {
      sum_.stop_message = "early stopped at step " + std::to_string(st_.step) + ": " +
                          std::to_string(st_.evals_without_improvement) + " evaluations without improvement";
      if (comm::root()) std::fprintf(stderr, "%s%s\n", tty_ ? "\n" : "", sum_.stop_message.c_str());
      sum_.early_stopped = true;
      stop = true;
    }
    const bool interrupted = comm::any(monitor::interrupt_requested());
    if ((cfg_.save_every > 0 && st_.step % cfg_.save_every == 0) || interrupted) {
      LoopState next = st_;
      ++next.batch_in_epoch;  // the checkpoint resumes after this batch
      if (next.batch_in_epoch >= batches_in_epoch) {
        next.batch_in_epoch = 0;
        ++next.epoch;
      }
      save(next);
    }
    if (hooks_.after_step) hooks_.after_step(st_.step);
    if (interrupted) {
      if (comm::root())
        std::fprintf(stderr, "%sinterrupted: checkpoint saved to %s; continue with --resume\n", tty_ ? "\n" : "",
                     ckpt_.c_str());
      rec_->interrupt();
      sum_.interrupted = true;
    }
    return stop;
  }

  void save(const LoopState& st) {
    if (comm::root()) save_checkpoint(ckpt_, st, cfg_json_, params_, opt_, avg_ ? &*avg_ : nullptr);
  }

  void save_output(const char* which) {
    if (!hooks_.save_output || !comm::root()) return;
    const std::string dir = (fs::path(cfg_.out_dir) / which).string();
    averaged([&] { save_output_atomic(hooks_, model_, dir); });
    rec_->add_artifact(which, dir, st_.step);
  }

  void evaluate(bool final_eval) {
    if (val_.empty() || evaluated_at_ == st_.step) return;  // the final one is skipped when just done
    evaluated_at_ = st_.step;
    EvalResult e;
    averaged([&] { e = pricer::evaluate(model_, *be_, val_, cfg_.eval_items, cfg_.micro(), hooks_.score_prices); });
    std::map<std::string, double> m = {{"eval/loss", e.loss}};
    if (e.prices.mae >= 0) {
      m["eval/mae"] = e.prices.mae;
      m["eval/mae_mean"] = e.prices.mae_mean;
      m["eval/interval80_coverage"] = e.prices.interval_coverage;
    }
    rec_->log_metrics(st_.step, m);
    record_eval(e, final_eval);
    if (talk_) {
      std::fprintf(stderr, "%s%s step %lld: eval loss %.4f", tty_ ? "\n" : "", label_.c_str(),
                   static_cast<long long>(st_.step), e.loss);
      if (e.prices.mae >= 0)
        std::fprintf(stderr, ", MAE $%.2f (%s; expected value $%.2f)", e.prices.mae, e.prices.readout.c_str(),
                     e.prices.mae_mean);
      std::fprintf(stderr, "\n");
    }
    if (hooks_.on_eval) {
      const std::string why = hooks_.on_eval({st_.step, e, st_.best_eval_loss, st_.best_eval_mae, final_eval});
      if (!final_eval) sum_.stop_message = why;
    }
  }

  // The evaluation's figures into the loop state; a new best saves best/.
  void record_eval(const EvalResult& e, bool final_eval) {
    if (std::isnan(st_.first_eval_loss)) {
      st_.first_eval_loss = e.loss;
      st_.first_eval_mae = e.prices.mae;
    }
    st_.last_eval_loss = e.loss;
    st_.last_eval_mae = e.prices.mae;
    if (std::isnan(st_.best_eval_loss) || e.loss < st_.best_eval_loss) st_.best_eval_loss = e.loss;
    if (e.prices.mae >= 0 && (st_.best_eval_mae < 0 || e.prices.mae < st_.best_eval_mae))
      st_.best_eval_mae = e.prices.mae;
    const double metric = cfg_.eval_metric == "mae" && e.prices.mae >= 0 ? e.prices.mae : e.loss;
    if (metric < st_.best_metric) {
      st_.best_metric = metric;
      st_.evals_without_improvement = 0;
      save_output("best");
    } else if (!final_eval) {
      ++st_.evals_without_improvement;
    }
  }

  void finish() {
    if (talk_ && tty_) std::fprintf(stderr, "\n");
    evaluate(true);
    save_output("last");
    save(st_);
    rec_->finish(sum_.stop_message);
  }

  TrainSummary summarize() {
    sum_.steps = st_.step;
    sum_.skipped_steps = st_.skipped;
    sum_.last_train_loss = st_.last_train_loss;
    sum_.first_eval_loss = st_.first_eval_loss;
    sum_.best_eval_loss = st_.best_eval_loss;
    sum_.last_eval_loss = st_.last_eval_loss;
    sum_.first_eval_mae = st_.first_eval_mae;
    sum_.best_eval_mae = st_.best_eval_mae;
    sum_.last_eval_mae = st_.last_eval_mae;
    return sum_;
  }

  const TrainConfig& cfg_;
  LlamaModel& model_;
  const std::vector<PricedExample>& train_;
  const std::vector<PricedExample>& val_;
  const bool mode_full_;
  const TrainHooks& hooks_;
  std::unique_ptr<Backend> be_;
  std::vector<Param> params_;
  Optimizer opt_;
  const std::string ckpt_;
  const bool talk_, tty_ = ::isatty(STDERR_FILENO) == 1;
  const std::string label_;
  NumberTokens numbers_;
  int64_t total_ = 0;
  nlohmann::json cfg_json_;
  std::optional<WeightAverage> avg_;
  LoopState st_;
  std::unique_ptr<monitor::RunRecorder> rec_;
  TrainSummary sum_;
  double t_start_ = 0, last_draw_ = 0;
  int64_t tokens_done_ = 0, start_step_ = 0;
  int64_t non_finite_run_ = 0;  // consecutive steps whose loss or gradient was non-finite
  int64_t evaluated_at_ = -1;
};

}  // namespace

TrainSummary run_training(const TrainConfig& cfg, LlamaModel& model, const Tokenizer& tok,
                          const std::vector<PricedExample>& train, const std::vector<PricedExample>& val,
                          bool mode_full, const TrainHooks& hooks, const std::string& command_line) {
  cfg.validate();
  require(mode_full == model.full_training(), "run_training: mode_full and the model's training mode disagree");
  require(!train.empty(), cfg.dataset + ": no training examples");
  fs::create_directories(cfg.out_dir);
  const uint64_t need = check_training_memory(model, cfg, mode_full);
  TrainingRun run(cfg, model, tok, train, val, mode_full, hooks);
  return run.run(need, command_line);
}

void attach_adapters(LlamaModel& model, TrainConfig& cfg) {
  if (cfg.init_adapter.empty()) {
    LoraConfig lc;
    lc.rank = cfg.rank;
    lc.alpha = cfg.alpha;
    lc.dropout = cfg.dropout;
    lc.rslora = cfg.rslora;
    lc.targets = parse_lora_targets(cfg.targets);
    model.add_lora(lc, cfg.seed);
    return;
  }
  load_adapter(model, cfg.init_adapter);
  const LoraConfig& lc = model.lora_config();
  cfg.rank = lc.rank;
  cfg.alpha = lc.alpha;
  cfg.dropout = lc.dropout;
  cfg.rslora = lc.rslora;
  cfg.targets.clear();
  for (int p = 0; p < kNumProj; ++p) {
    if (!lc.targets[p]) continue;
    if (!cfg.targets.empty()) cfg.targets += ',';
    cfg.targets += proj_name(static_cast<Proj>(p));
  }
}

void attach_trainable_tokens(LlamaModel& model, TrainConfig& cfg, const Tokenizer& tok) {
  if (model.has_trainable_tokens()) {  // brought by --init-adapter: its rows, named in cfg
    std::string ids;
    for (int32_t id : model.trainable_tokens().ids) {
      if (!ids.empty()) ids += ',';
      ids += std::to_string(id);
    }
    require(cfg.trainable_tokens.empty() || cfg.trainable_tokens == ids || cfg.trainable_tokens == "numbers",
            "--trainable-tokens: the initial adapter has its own token rows (" + ids + ")");
    cfg.trainable_tokens = ids;
    return;
  }
  if (cfg.trainable_tokens.empty()) return;
  std::vector<int32_t> ids;
  if (cfg.trainable_tokens == "numbers") {
    ids = number_tokens(tok).ids;  // throws when the vocabulary has no number tokens
  } else {
    std::stringstream list(cfg.trainable_tokens);
    for (std::string item; std::getline(list, item, ',');) {
      size_t used = 0;
      long long v = -1;
      try {
        v = std::stoll(item, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      require(used == item.size() && !item.empty() && v >= 0 && v <= INT32_MAX,
              "--trainable-tokens: '" + item + "' is not a token id (give numbers or ids like 17,42)");
      ids.push_back(static_cast<int32_t>(v));
    }
  }
  model.add_trainable_tokens(std::move(ids));
}

TrainHooks adapter_output_hooks(const std::string& base_model_name, std::vector<GgufKV> marks) {
  TrainHooks hooks;
  std::vector<GgufKV> extra = std::move(marks);
  // GGUF's convention for what a file derives from, so `pricer info` can name the base.
  extra.push_back({"general.base_model.count", GgufValue::u32(1)});
  extra.push_back({"general.base_model.0.name", GgufValue::string(base_model_name)});
  hooks.save_output = [base_model_name, extra](const LlamaModel& m, const std::string& dir) {
    save_peft_adapter(m, dir, base_model_name);
    save_gguf_adapter(m, (fs::path(dir) / "adapter.gguf").string(), extra);
  };
  return hooks;
}

TrainHooks full_model_output_hooks(const Tokenizer& tok, const ModelConfig& config, const std::string& name,
                                   std::vector<GgufKV> marks) {
  TrainHooks hooks;
  std::vector<GgufKV> kvs = gguf_tokenizer_metadata(tok, config.vocab_size);
  for (GgufKV& kv : marks) kvs.push_back(std::move(kv));
  hooks.save_output = [kvs = std::move(kvs), config, name](const LlamaModel& m, const std::string& dir) {
    fs::create_directories(dir);
    GgufExportOptions go;
    go.name = name;
    go.extra = kvs;
    save_gguf((fs::path(dir) / "model.gguf").string(), config, export_tensors(m, false), go);
  };
  return hooks;
}

}  // namespace pricer
