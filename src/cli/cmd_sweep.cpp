// `pricer sweep`: hyperparameter search over fine-tuning runs (random search or TPE, with ASHA
// pruning), resumable; writes the ranked trials, the best configuration as a `pricer train`
// config and an HTML report.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli/command.h"
#include "core/atomic_file.h"
#include "core/comm.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/threads.h"
#include "sweep/config.h"
#include "sweep/report.h"
#include "sweep/train_trial.h"

namespace fs = std::filesystem;

namespace pricer::cli {
namespace {

struct SweepArgs {
  std::string config;
  int64_t trials = -1;
  std::string time_budget;
  int parallel = 0;
  std::string out;
  std::string runs_db;
  bool quiet = false;
};

// The sweep's config file with the command line's overrides (budget, layout, run database).
sweep::SweepConfig load_config(const SweepArgs& a) {
  sweep::SweepConfig cfg = sweep::SweepConfig::load(a.config);
  if (a.trials >= 0) cfg.search.trials = a.trials;
  if (!a.time_budget.empty()) cfg.search.time_budget_s = sweep::parse_duration(a.time_budget, "--time-budget");
  if (a.parallel > 0) cfg.search.parallel = a.parallel;
  if (!a.out.empty()) cfg.out_dir = a.out;
  if (!a.runs_db.empty()) cfg.train.runs_db = a.runs_db;
  if (a.quiet) cfg.train.progress = false;
  cfg.search.validate();
  return cfg;
}

int run_sweep_command(const SweepArgs& a) {
  sweep::SweepConfig cfg = load_config(a);

  // The threads (pricer --threads) are divided between the trials that run at once; under MPI
  // each rank runs one trial with all of its own.
  if (comm::world_size() > 1) cfg.search.parallel = comm::world_size();
  const int per_trial = comm::world_size() > 1 ? threads() : std::max(1, threads() / cfg.search.parallel);
  set_threads(per_trial);
  std::fprintf(stderr, "sweep %s: %s, %s%s, %d trial(s) at once%s with %d thread(s) each -> %s\n", cfg.name.c_str(),
               cfg.search.algorithm.c_str(),
               cfg.search.trials > 0 ? (std::to_string(cfg.search.trials) + " trials").c_str() : "no trial limit",
               cfg.search.time_budget_s > 0 ? (", " + format_duration(cfg.search.time_budget_s)).c_str() : "",
               cfg.search.parallel, comm::world_size() > 1 ? " (one per MPI rank)" : "", per_trial,
               cfg.out_dir.c_str());

  const sweep::TrainTrialRunner runner(cfg);
  sweep::SweepSpec spec;
  spec.name = cfg.name;
  spec.out_dir = cfg.out_dir;
  spec.space = cfg.space;
  spec.search = cfg.search;
  nlohmann::json base = cfg.train.to_json();
  for (const char* k : {"out", "run_name"}) base.erase(k);
  spec.settings = {{"objective", cfg.objective}, {"train", base}};
  spec.upgrade_settings = sweep::upgrade_train_settings;
  spec.progress = cfg.train.progress;
  spec.on_trial_end = [&](const sweep::TrialRecord& t, const sweep::SweepState& st) {
    std::string params;
    for (const auto& [k, v] : t.params.items())
      params += " " + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
    const auto ranked = sweep::ranked_trials(st);
    std::fprintf(stderr, "\ntrial %lld %s:%s", static_cast<long long>(t.number),
                 std::string(to_string(t.status)).c_str(), params.c_str());
    if (t.has_objective) std::fprintf(stderr, " -> %s %.4f", cfg.objective.c_str(), t.objective);
    if (t.status == sweep::TrialStatus::failed) std::fprintf(stderr, " (%s)", t.message.c_str());
    if (!ranked.empty())
      std::fprintf(stderr, "; best: trial %lld (%.4f)", static_cast<long long>(ranked.front()->number),
                   ranked.front()->objective);
    std::fprintf(stderr, "\n");
  };
  bool interrupted = false;
  const sweep::SweepState st = sweep::run_sweep(spec, std::cref(runner), &interrupted);
  if (comm::world_rank() != 0) return 0;  // rank 0 reports the sweep

  std::cout << "\n" << sweep::format_ranked_table(st, cfg.space, cfg.objective, 20);
  const fs::path out(cfg.out_dir);
  write_file_atomic(out / "results.txt", sweep::format_ranked_table(st, cfg.space, cfg.objective));
  write_file_atomic(out / "report.html", sweep::sweep_report_html(st, cfg.space, cfg.objective));
  const auto ranked = sweep::ranked_trials(st);
  if (!ranked.empty() && ranked.front()->status == sweep::TrialStatus::complete) {
    const sweep::TrialRecord& best = *ranked.front();
    TrainConfig tc = sweep::trial_train_config(cfg, best);
    tc.out_dir = (out / "best-run").string();
    tc.eval_every = cfg.train.eval_every;  // the sweep evaluates at every rung; a plain run need not
    char comment[512];
    std::snprintf(comment, sizeof comment,
                  "Best configuration of sweep %s: trial %lld, validation %s %.6g after %lld steps.\n"
                  "Its adapters: %s/best. Train it again with: pricer train --config %s",
                  cfg.name.c_str(), static_cast<long long>(best.number), cfg.objective.c_str(), best.objective,
                  static_cast<long long>(best.steps), best.out_dir.c_str(), (out / "best.yaml").c_str());
    write_file_atomic(out / "best.yaml", sweep::train_config_yaml(tc, comment));
    std::cout << "best: trial " << best.number << " (" << cfg.objective << " " << best.objective << "), config "
              << (out / "best.yaml").string() << ", adapters " << best.out_dir << "/best\n";
  } else {
    std::cout << "no trial completed yet, so no best configuration\n";
  }
  std::cout << "report: " << (out / "report.html").string() << "; runs: pricer runs --sweep " << cfg.name << "\n";
  if (interrupted) {
    std::cout << "interrupted: run the same command again to continue the sweep\n";
    return 130;
  }
  return 0;
}

Registrar reg{
    "sweep", "Hyperparameter search over fine-tuning runs (random or TPE, ASHA pruning)", [](CLI::App& sub) {
      auto a = std::make_shared<SweepArgs>();
      sub.add_option("--config,-c", a->config, "Sweep YAML: base train settings, search space, budget (docs/sweep.md)")
          ->required()
          ->check(CLI::ExistingFile);
      sub.add_option("--trials", a->trials, "Budget in trials (overrides the config)");
      sub.add_option("--time-budget", a->time_budget, "Wall-time budget, e.g. 900, 30m, 2h (overrides the config)");
      sub.add_option("--parallel,-j", a->parallel, "Trials at once (overrides the config)");
      sub.add_option("--out", a->out, "Sweep directory (overrides out_dir)");
      sub.add_option("--runs-db", a->runs_db, "Run database (default runs/pricer.db or $PRICER_RUNS_DB)");
      sub.add_flag("--quiet,-q", a->quiet, "No progress output");
      return [a]() { return run_sweep_command(*a); };
    }};

}  // namespace
}  // namespace pricer::cli
