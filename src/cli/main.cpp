// pricer: the command-line entry point. Subcommands register themselves (see command.h).
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>

#include "cli/command.h"
#include "core/comm.h"
#include "core/error.h"
#include "core/suggest.h"
#include "core/threads.h"
#include "monitor/interrupt.h"

namespace pricer::cli {
std::vector<CommandSpec>& registry() {
  static std::vector<CommandSpec> commands;
  return commands;
}

namespace {
std::string g_command_line;
}
const std::string& command_line() { return g_command_line; }
}  // namespace pricer::cli

namespace {

// Far beyond any machine's cores; larger counts crash the OpenMP runtime.
constexpr int kMaxThreads = 1024;

// The first argument that is neither an option nor the value of -t/--threads: the command word.
std::string first_word(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-t" || a == "--threads") {
      ++i;
      continue;
    }
    if (!a.empty() && a[0] != '-') return a;
  }
  return "";
}

}  // namespace

namespace {

// The subcommand's exit code; under MPI an error on any rank ends every rank, naming it.
int run_command(const std::map<CLI::App*, pricer::cli::Runner>& runners) {
  const bool job = pricer::comm::size() > 1;
  try {
    for (auto& [sub, run] : runners) {
      if (sub->parsed()) return run();
    }
  } catch (const pricer::Error& e) {
    if (job) pricer::comm::abort_job(std::string("error: ") + e.what(), 1);
    std::fprintf(stderr, "pricer: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    if (job) pricer::comm::abort_job(std::string("internal error: ") + e.what(), 2);
    std::fprintf(stderr, "pricer: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}

// The OpenMP threads every parallel stage (and oneDNN) runs on, started now (each thread counts
// itself, so that the compiler cannot drop the region as empty).
void start_compute_threads() {
  static std::atomic<int> started{0};
#pragma omp parallel num_threads(pricer::threads())
  started.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

// The whole command line: setup, parsing, the command. main() adds only the last-resort catch.
int run_main(int argc, char** argv) {
  using namespace pricer::cli;
  pricer::comm::init(argc, argv);
  for (int i = 0; i < argc; ++i) g_command_line += (i ? " " : "") + std::string(argv[i]);
  CLI::App app{"pricer: fine-tune a small open LLM into a product price estimator (QLoRA on CPU)"};
  app.require_subcommand(1);
  app.set_version_flag(
      "--version", std::string("pricer 0.1.0 (") +
                       (pricer::comm::built_with_mpi() ? "with MPI: mpirun -np N pricer train ... runs data-parallel"
                                                       : "without MPI: one process") +
                       ")");
  int threads = 0;
  app.add_option("-t,--threads", threads, "Threads for every parallel stage (0 = all cores)")
      ->envname("PRICER_THREADS")
      ->check(CLI::Range(0, kMaxThreads));

  auto& specs = registry();
  std::sort(specs.begin(), specs.end(), [](auto& a, auto& b) { return a.name < b.name; });
  std::map<CLI::App*, Runner> runners;
  for (auto& spec : specs) {
    CLI::App* sub = app.add_subcommand(spec.name, spec.help);
    runners[sub] = spec.setup(*sub);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::vector<std::string> names;
    for (const auto& spec : specs) names.push_back(spec.name);
    if (const std::string word = first_word(argc, argv);
        !word.empty() && std::find(names.begin(), names.end(), word) == names.end()) {
      std::fprintf(stderr, "pricer: unknown command '%s'%s (pricer --help lists them)\n", word.c_str(),
                   pricer::did_you_mean(word, names).c_str());
      pricer::comm::finalize();
      return 2;
    }
    const int code = app.exit(e);
    pricer::comm::finalize();
    return code;
  }
  pricer::set_threads(threads);
  pricer::monitor::route_signals_to_this_thread(start_compute_threads);
  const int code = run_command(runners);
  pricer::comm::finalize();
  return code;
}

int main(int argc, char** argv) {
  try {
    return run_main(argc, argv);
  } catch (const std::exception& e) {  // setting up the command line itself failed
    std::fprintf(stderr, "pricer: internal error: %s\n", e.what());
    return 2;
  }
}
