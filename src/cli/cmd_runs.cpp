// pricer runs: list the recorded runs, show one run in detail with its loss curve, or check and
// dump a TensorBoard event file.
#include <chrono>
#include <cstdio>
#include <iostream>

#include "cli/command.h"
#include "core/atomic_file.h"
#include "core/clock.h"
#include "core/error.h"
#include "monitor/recorder.h"
#include "monitor/run_report.h"
#include "monitor/tfevents.h"

namespace pricer::cli {
namespace {

struct RunsOptions {
  std::string db = monitor::default_runs_db().string();
  std::int64_t show_id = 0;
  std::string svg;
  bool no_svg = false;
  std::string events_file;
  std::string sweep;
};

int show_run(const RunsOptions& o) {
  monitor::RunDb db(o.db, monitor::RunDb::Mode::existing);
  std::cout << monitor::format_run_details(db, o.show_id, unix_seconds());
  if (o.no_svg) return 0;
  std::string svg = monitor::loss_chart_svg(db, o.show_id);
  if (svg.empty()) {
    std::cout << "\nno loss logged, so no loss chart\n";
    return 0;
  }
  std::filesystem::path out = o.svg;
  if (out.empty()) {
    auto log_dir = db.get_run(o.show_id).log_dir;
    if (log_dir.empty() || !std::filesystem::is_directory(log_dir)) {
      std::cout << "\nthe run's log directory is missing; pass --svg PATH for the loss chart\n";
      return 0;
    }
    out = std::filesystem::path(log_dir) / "loss.svg";
  }
  write_file_atomic(out, svg);
  std::cout << "\nloss chart: " << out.string() << "\n";
  return 0;
}

int dump_events(const std::string& file) {
  auto events = monitor::read_events(file);
  std::size_t values = 0;
  for (const auto& e : events) {
    if (!e.file_version.empty()) std::printf("wall_time %.3f  file_version %s\n", e.wall_time, e.file_version.c_str());
    for (const auto& s : e.scalars) {
      std::printf("step %lld  %s = %.9g\n", static_cast<long long>(e.step), s.tag.c_str(),
                  static_cast<double>(s.value));
      ++values;
    }
  }
  std::printf("%s: %zu records, %zu scalar values, all checksums valid\n", file.c_str(), events.size(), values);
  return 0;
}

Runner setup(CLI::App& sub) {
  auto o = std::make_shared<RunsOptions>();
  sub.add_option("--db", o->db, "Run database (default runs/pricer.db)")->envname("PRICER_RUNS_DB");
  sub.add_option("--sweep", o->sweep, "List only the trials of this sweep");
  CLI::App* show = sub.add_subcommand("show", "Summary of one run with its loss curve");
  show->add_option("id", o->show_id, "Run id (see `pricer runs`)")->required();
  show->add_option("--svg", o->svg, "Where to write the loss chart (default: <log dir>/loss.svg)");
  show->add_flag("--no-svg", o->no_svg, "Do not write the loss chart");
  show->fallthrough();
  CLI::App* events = sub.add_subcommand("events", "Verify and print a TensorBoard event file");
  events->add_option("file", o->events_file, "events.out.tfevents.* file")->required()->check(CLI::ExistingFile);
  sub.require_subcommand(0, 1);
  return [o, show, events]() -> int {
    if (show->parsed()) return show_run(*o);
    if (events->parsed()) return dump_events(o->events_file);
    monitor::RunDb db(o->db, monitor::RunDb::Mode::existing);
    auto runs = db.summarize_runs();
    if (!o->sweep.empty()) std::erase_if(runs, [&](const auto& r) { return r.run.sweep_id != o->sweep; });
    std::cout << monitor::format_run_table(runs, unix_seconds());
    return 0;
  };
}

Registrar reg{"runs", "List recorded training/eval runs, show one with its loss curve", setup};

}  // namespace
}  // namespace pricer::cli
