#pragma once
// Each src/cli/cmd_<name>.cpp registers one subcommand of `pricer` with a static Registrar:
//   static pricer::cli::Registrar reg{"train", "Fine-tune ...", setup_fn};
// setup_fn adds options to the CLI11 subcommand and returns the function that runs it.
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace pricer::cli {

using Runner = std::function<int()>;
using Setup = std::function<Runner(CLI::App& sub)>;

struct CommandSpec {
  std::string name;
  std::string help;
  Setup setup;
};

std::vector<CommandSpec>& registry();

// The command line as typed (recorded with runs).
const std::string& command_line();

struct Registrar {
  Registrar(std::string name, std::string help, Setup setup) {
    registry().push_back({std::move(name), std::move(help), std::move(setup)});
  }
};

}  // namespace pricer::cli
