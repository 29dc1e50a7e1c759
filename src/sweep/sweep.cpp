#include "sweep/sweep.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <thread>

#include "core/clock.h"
#include "core/comm.h"
#include "core/error.h"
#include "core/progress.h"
#include "monitor/interrupt.h"

namespace fs = std::filesystem;

namespace pricer::sweep {

void SearchOptions::validate() const {
  make_sampler(algorithm, tpe);  // throws on an unknown algorithm or bad TPE settings
  require(trials >= 0, "search: trials cannot be negative");
  require(time_budget_s >= 0 && std::isfinite(time_budget_s), "search: time_budget cannot be negative");
  require(trials > 0 || time_budget_s > 0, "search: give a budget (trials and/or time_budget)");
  require(parallel >= 1, "search: parallel must be at least 1");
  pruning.validate();
}

nlohmann::json SearchOptions::to_json() const {
  return {{"algorithm", algorithm},
          {"seed", seed},
          {"startup_trials", tpe.startup_trials},
          {"candidates", tpe.candidates},
          {"pruning", {{"min_steps", pruning.min_steps}, {"reduction_factor", pruning.reduction_factor}}}};
}

fs::path state_path(const SweepSpec& spec) { return spec.out_dir / "sweep.json"; }

namespace {

std::string trial_dir_name(int64_t number) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "trial-%03lld", static_cast<long long>(number));
  return buf;
}

// The settings a resumed sweep must share with the stored one; the budget and parallelism may
// change between sessions.
nlohmann::json resume_settings(const SweepSpec& spec) {
  return {{"space", spec.space.to_json()}, {"search", spec.search.to_json()}, {"extra", spec.settings}};
}

void check_same_settings(const nlohmann::json& stored, const nlohmann::json& now, const fs::path& path) {
  if (stored == now) return;
  for (const auto& [k, v] : now.items()) {
    const auto s = stored.value(k, nlohmann::json());
    if (s != v)
      throw Error(path.string() + ": the sweep was started with different '" + k + "' settings (" + s.dump() +
                  ", now " + v.dump() + "); use another out_dir for a new sweep");
  }
  throw Error(path.string() + ": the sweep was started with different settings; use another out_dir");
}

nlohmann::json outcome_json(const TrialOutcome& o) {
  return {{"interrupted", o.interrupted},
          {"pruned", o.pruned},
          {"objective", o.objective},
          {"steps", o.steps},
          {"message", o.message}};
}

TrialOutcome outcome_from_json(const nlohmann::json& j) {
  TrialOutcome o;
  o.interrupted = j.at("interrupted").get<bool>();
  o.pruned = j.at("pruned").get<bool>();
  o.objective = j.at("objective").is_number() ? j["objective"].get<double>() : NAN;  // a NaN travels as null
  o.steps = j.at("steps").get<int64_t>();
  o.message = j.at("message").get<std::string>();
  return o;
}

// A rank other than 0 in a sweep under MPI: runs the trials rank 0 sends, reporting back, until
// told to stop.
void serve_trials(const TrialFn& fn) {
  for (;;) {
    const nlohmann::json m = nlohmann::json::parse(comm::recv_text(0));
    if (m.contains("stop")) return;
    TrialContext ctx;
    ctx.trial = TrialRecord::from_json(m.at("trial"));
    ctx.resume = m.at("resume").get<bool>();
    ctx.report = [](int64_t step, double value) {
      comm::send_text(0, nlohmann::json{{"report", {step, value}}}.dump());
      return nlohmann::json::parse(comm::recv_text(0)).at("go").get<bool>();
    };
    ctx.add_run = [](int64_t run_id) { comm::send_text(0, nlohmann::json{{"run", run_id}}.dump()); };
    try {
      comm::send_text(0, nlohmann::json{{"done", outcome_json(fn(ctx))}}.dump());
    } catch (const Error& e) {
      comm::send_text(0, nlohmann::json{{"failed", e.what()}}.dump());
    }
  }
}

class SweepRunner {
 public:
  SweepRunner(const SweepSpec& spec, const TrialFn& fn)
      : spec_(spec), fn_(fn), sampler_(make_sampler(spec.search.algorithm, spec.search.tpe)) {}

  SweepState run(bool* interrupted) {
    spec_.search.validate();
    fs::create_directories(spec_.out_dir);
    const fs::path path = state_path(spec_);
    const nlohmann::json settings = resume_settings(spec_);
    if (auto loaded = SweepState::load(path)) {
      if (spec_.upgrade_settings && loaded->settings.contains("extra"))
        loaded->settings["extra"] = spec_.upgrade_settings(loaded->settings["extra"]);
      check_same_settings(loaded->settings, settings, path);
      state_ = std::move(*loaded);
      int64_t done = 0;
      for (const auto& t : state_.trials) {
        if (t.status == TrialStatus::running) resumable_.push_back(t.number);
        else ++done;
      }
      std::fprintf(stderr, "sweep %s: resuming with %lld finished trial(s)%s\n", state_.name.c_str(),
                   static_cast<long long>(done),
                   resumable_.empty() ? "" : (", " + std::to_string(resumable_.size()) + " to continue").c_str());
    } else {
      state_.name = spec_.name;
      state_.settings = settings;
      state_.save(path);
    }
    monitor::InterruptGuard guard;
    start_ = monotonic_seconds();
    const uint64_t total = spec_.search.trials > 0 ? static_cast<uint64_t>(spec_.search.trials) : 0;
    ProgressOptions po;
    po.enabled = spec_.progress;
    progress_ = std::make_unique<Progress>("sweep " + spec_.name, total, po);
    progress_->set(finished_count());

    // Under MPI one worker per rank: worker w runs its trials on rank w (0: here).
    const int workers_n = comm::world_size() > 1 ? comm::world_size() : spec_.search.parallel;
    std::vector<std::thread> workers;
    std::exception_ptr error;
    for (int w = 0; w < workers_n; ++w)
      workers.emplace_back([this, &error, w] {
        try {
          work(w);
        } catch (...) {
          std::lock_guard lock(mu_);
          if (!error) error = std::current_exception();
          stop_ = true;
        }
        if (w > 0 && comm::world_size() > 1) comm::send_text(w, R"({"stop": true})");  // its rank's loop ends
      });
    for (auto& t : workers) t.join();
    progress_->finish();
    {
      std::lock_guard lock(mu_);
      state_.elapsed_s += monotonic_seconds() - start_;
      state_.save(path);
    }
    if (error) std::rethrow_exception(error);
    if (interrupted) *interrupted = interrupted_;
    return state_;
  }

 private:
  uint64_t finished_count() const {
    uint64_t n = 0;
    for (const auto& t : state_.trials) n += t.status != TrialStatus::running;
    return n;
  }

  bool budget_left() const {
    const auto& s = spec_.search;
    if (s.time_budget_s > 0 && state_.elapsed_s + (monotonic_seconds() - start_) >= s.time_budget_s) return false;
    return true;
  }

  // Under mu_: the next trial to run, or nullopt when the sweep is over.
  std::optional<TrialContext> next_trial() {
    if (stop_ || monitor::interrupt_requested()) {
      interrupted_ = interrupted_ || monitor::interrupt_requested();
      return std::nullopt;
    }
    if (!budget_left()) return std::nullopt;
    TrialContext ctx;
    if (!resumable_.empty()) {
      ctx.trial = state_.trials[static_cast<size_t>(resumable_.front())];
      resumable_.erase(resumable_.begin());
      ctx.resume = true;
      return ctx;
    }
    if (spec_.search.trials > 0 && static_cast<int64_t>(state_.trials.size()) >= spec_.search.trials)
      return std::nullopt;
    std::vector<nlohmann::json> ranked;
    for (const TrialRecord* t : ranked_trials(state_)) ranked.push_back(t->params);
    TrialRecord t;
    t.number = static_cast<int64_t>(state_.trials.size());
    t.params = sampler_->sample(spec_.space, ranked, trial_seed(spec_.search.seed, t.number));
    t.out_dir = (spec_.out_dir / trial_dir_name(t.number)).string();
    state_.trials.push_back(t);
    state_.save(state_path(spec_));
    ctx.trial = t;
    return ctx;
  }

  void work(int worker) {
    for (;;) {
      TrialContext ctx;
      {
        std::lock_guard lock(mu_);
        auto next = next_trial();
        if (!next) return;
        ctx = std::move(*next);
      }
      const int64_t number = ctx.trial.number;
      ctx.report = [this, number](int64_t step, double value) { return report(number, step, value); };
      ctx.add_run = [this, number](int64_t run_id) {
        std::lock_guard lock(mu_);
        auto& ids = state_.trials[static_cast<size_t>(number)].run_ids;
        if (std::find(ids.begin(), ids.end(), run_id) == ids.end()) {
          ids.push_back(run_id);
          state_.save(state_path(spec_));
        }
      };
      const double t0 = monotonic_seconds();
      TrialOutcome out;
      std::string failure;
      try {
        out = worker > 0 && comm::world_size() > 1 ? run_remote(worker, ctx) : fn_(ctx);
      } catch (const Error& e) {
        failure = e.what();
      }
      std::lock_guard lock(mu_);
      TrialRecord& t = state_.trials[static_cast<size_t>(number)];
      t.seconds += monotonic_seconds() - t0;
      if (!failure.empty()) {
        t.status = TrialStatus::failed;
        t.message = failure;
      } else if (out.interrupted) {
        interrupted_ = true;
        stop_ = true;
        t.steps = out.steps;
        state_.save(state_path(spec_));
        continue;
      } else if (out.pruned) {
        t.status = TrialStatus::pruned;
        t.steps = out.steps;
        t.has_objective = !t.rungs.empty();
        if (t.has_objective) t.objective = t.rungs.rbegin()->second;
        t.message = out.message.empty() ? "pruned at step " + std::to_string(out.steps) : out.message;
      } else if (!std::isfinite(out.objective)) {
        t.status = TrialStatus::failed;
        t.steps = out.steps;
        t.message = "the objective is not finite";
      } else {
        t.status = TrialStatus::complete;
        t.steps = out.steps;
        t.objective = out.objective;
        t.has_objective = true;
        t.message = out.message;
      }
      consecutive_failures_ = t.status == TrialStatus::failed ? consecutive_failures_ + 1 : 0;
      state_.save(state_path(spec_));
      progress_->set(finished_count());
      if (spec_.on_trial_end) spec_.on_trial_end(t, state_);
      if (consecutive_failures_ >= spec_.search.max_consecutive_failures)
        throw Error("sweep " + spec_.name + ": " + std::to_string(consecutive_failures_) +
                    " trials failed in a row; the last: " + t.message);
    }
  }

  // Runs ctx's trial on rank `rank` and answers its reports and runs as they come.
  TrialOutcome run_remote(int rank, TrialContext& ctx) {
    comm::send_text(rank, nlohmann::json{{"trial", ctx.trial.to_json()}, {"resume", ctx.resume}}.dump());
    for (;;) {
      const nlohmann::json m = nlohmann::json::parse(comm::recv_text(rank));
      if (m.contains("report")) {
        const bool go = ctx.report(m["report"][0].get<int64_t>(), m["report"][1].get<double>());
        comm::send_text(rank, nlohmann::json{{"go", go}}.dump());
      } else if (m.contains("run")) {
        ctx.add_run(m["run"].get<int64_t>());
      } else if (m.contains("failed")) {
        throw Error(m["failed"].get<std::string>());
      } else {
        return outcome_from_json(m.at("done"));
      }
    }
  }

  bool report(int64_t number, int64_t step, double value) {
    if (!spec_.search.pruning.is_rung(step)) return true;
    std::lock_guard lock(mu_);
    TrialRecord& t = state_.trials[static_cast<size_t>(number)];
    if (t.rungs.contains(step)) return true;  // decided in an earlier session; it went on then
    t.rungs[step] = value;
    std::vector<double> values;
    for (const auto& other : state_.trials)
      if (auto it = other.rungs.find(step); it != other.rungs.end()) values.push_back(it->second);
    const bool promoted = asha_promotes(value, values, spec_.search.pruning.reduction_factor);
    t.steps = step;
    state_.save(state_path(spec_));
    return promoted;
  }

  SweepSpec spec_;
  const TrialFn& fn_;
  std::unique_ptr<Sampler> sampler_;
  std::mutex mu_;
  SweepState state_;
  std::vector<int64_t> resumable_;
  std::unique_ptr<Progress> progress_;
  double start_ = 0;
  bool stop_ = false, interrupted_ = false;
  int64_t consecutive_failures_ = 0;
};

}  // namespace

SweepState run_sweep(const SweepSpec& spec, const TrialFn& trial, bool* interrupted) {
  // Under MPI every trial trains on its own rank, alone; rank 0 keeps the sweep's state.
  const comm::Solo solo;
  if (comm::world_size() > 1) {
    require(comm::threads_may_communicate(),
            "sweep under MPI: this MPI library cannot serve several ranks at once "
            "from rank 0 (no MPI_THREAD_MULTIPLE)");
    if (comm::world_rank() != 0) {
      serve_trials(trial);
      return {};
    }
  }
  SweepRunner runner(spec, trial);
  return runner.run(interrupted);
}

}  // namespace pricer::sweep
