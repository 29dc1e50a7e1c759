// pricer: the command-line entry point. Subcommands register themselves (see command.h).
#include <algorithm>
#include <cstdio>
#include <map>

#include "cli/command.h"
#include "core/error.h"
#include "core/threads.h"

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

int main(int argc, char** argv) {
  using namespace pricer::cli;
  for (int i = 0; i < argc; ++i) g_command_line += (i ? " " : "") + std::string(argv[i]);
  CLI::App app{"pricer: fine-tune a small open LLM into a product price estimator (QLoRA on CPU)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "pricer 0.1.0");
  int threads = 0;
  app.add_option("-t,--threads", threads, "Threads for every parallel stage (0 = all cores)")
      ->envname("PRICER_THREADS");

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
    return app.exit(e);
  }
  pricer::set_threads(threads);
  try {
    for (auto& [sub, run] : runners) {
      if (sub->parsed()) return run();
    }
  } catch (const pricer::Error& e) {
    std::fprintf(stderr, "pricer: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pricer: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
