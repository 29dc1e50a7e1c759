#pragma once
// Running the built pricer binary (PRICER_BINARY) from a test as a user runs it from a shell: its
// exit status and what it printed; and slurp, for the files it writes.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace pricer::cli_test {

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

struct CliRun {
  int rc = -1;  // exit status; -1 when the binary did not exit normally
  std::string out;  // stdout, with stderr joined to it by run_cli
  std::string err;  // stderr, by run_cli_split
};

namespace detail {

inline CliRun run(const std::string& args, const std::string& input, const std::string& env, bool split_stderr) {
  static int calls = 0;
  const std::filesystem::path scratch = std::filesystem::temp_directory_path() /
                                        ("pricer_cli_" + std::to_string(::getpid()) + "_" + std::to_string(++calls));
  std::filesystem::create_directories(scratch);
  std::string cmd = env + " '" + std::string(PRICER_BINARY) + "' " + args;
  cmd += split_stderr ? " 2> '" + (scratch / "stderr").string() + "'" : std::string(" 2>&1");
  if (input.empty()) {
    cmd += " < /dev/null";
  } else {
    std::ofstream(scratch / "stdin", std::ios::binary) << input;
    cmd += " < '" + (scratch / "stdin").string() + "'";
  }
  CliRun r;
  if (std::FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
    const int status = ::pclose(p);
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  if (split_stderr) r.err = slurp(scratch / "stderr");
  std::filesystem::remove_all(scratch);
  return r;
}

}  // namespace detail

// Runs `PRICER_BINARY args` through the shell (args shell-quoted where needed) with `input` on
// stdin (empty: /dev/null) and the "NAME=value ..." assignments of `env`; stderr joined to stdout.
inline CliRun run_cli(const std::string& args, const std::string& input = "", const std::string& env = "") {
  return detail::run(args, input, env, false);
}
// The same with stderr captured apart, in CliRun::err.
inline CliRun run_cli_split(const std::string& args, const std::string& input = "", const std::string& env = "") {
  return detail::run(args, input, env, true);
}

}  // namespace pricer::cli_test
