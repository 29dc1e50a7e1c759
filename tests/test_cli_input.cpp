// Mistakes a user makes on the command line get a clear error naming what is wrong (and what was
// probably meant) before any work, never a crash or a silently ignored setting.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "cli_test_util.h"

namespace {

namespace fs = std::filesystem;
using pricer::cli_test::run_cli;

class CliInput : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pricer_cli_input_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "items.jsonl") << R"({"text": "a steel mug", "price": 12})"
                                           "\n"
                                        << R"({"text": "a lamp", "price": 30})"
                                           "\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const char* name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(CliInput, AMistypedCommandIsNamedWithTheNearestOne) {
  auto r = run_cli("trian --model m.gguf");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("unknown command 'trian'; did you mean 'train'?"), std::string::npos) << r.out;
  r = run_cli("-t 2 xyzzy");
  EXPECT_EQ(r.rc, 2);
  EXPECT_NE(r.out.find("unknown command 'xyzzy'"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("did you mean"), std::string::npos) << "nothing near: no guess\n" << r.out;
}

TEST_F(CliInput, AThreadCountBeyondAnyMachineIsRefused) {
  const auto r =
      run_cli("-t 100000 eval --data " + path("items.jsonl") + " --pricers mean --no-record --out " + path("out"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.rc, -1) << "a clean exit, not a crash";
  EXPECT_NE(r.out.find("--threads"), std::string::npos) << r.out;
}

TEST_F(CliInput, EvalRefusesParamKeysNoPricerReads) {
  const std::string eval = "eval --data " + path("items.jsonl") + " --pricers mean --no-record --out " + path("out");
  auto r = run_cli(eval + " --param cverage=0.9");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("no pricer reads 'cverage'; did you mean 'coverage'?"), std::string::npos) << r.out;
  r = run_cli(eval + " --param coverage=0.9 --param coverage=0.8");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("--param coverage is given twice"), std::string::npos) << r.out;
}

TEST_F(CliInput, PredictRefusesPromptsThatCannotBeMeant) {
  const std::string predict = "predict --model " + path("absent.gguf") + " ";
  auto r = run_cli(predict + "--prompt-template 'What is this worth?' 'a mug'");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("has no {text}"), std::string::npos) << r.out;
  r = run_cli(predict + "--raw-prompt --prompt-template 'Q: {text}' 'a mug'");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("cannot go with --prompt-template"), std::string::npos) << r.out;
  r = run_cli(predict + "--jsonl " + dir_.string());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("a directory; --jsonl reads one JSON-lines file"), std::string::npos) << r.out;
}

TEST_F(CliInput, PretrainRefusesAContextShorterThanItsWindows) {
  const auto r =
      run_cli("pretrain --corpus " + path("items.jsonl") + " --max-length 128 --context 16 --out " + path("pre"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("--context 16 is shorter than --max-length 128"), std::string::npos) << r.out;
}

// Outputs are checked before the work: a file where a directory should go, or a directory that
// cannot be written, is an error naming it at once, not an internal error after the compute.
TEST_F(CliInput, OutputsThatCannotBeWrittenAreRefusedUpFront) {
  std::ofstream(dir_ / "a-file") << "x";
  auto r = run_cli("eval --data " + path("items.jsonl") + " --pricers mean --no-record --out " + path("a-file"));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("a-file (--out): exists and is not a directory"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("eval: mean"), std::string::npos) << "refused before pricing\n" << r.out;
  r = run_cli("curate " + path("items.jsonl") + " -o " + path("a-file"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("exists and is not a directory"), std::string::npos) << r.out;
  if (::geteuid() != 0) {  // root writes anywhere
    fs::create_directories(dir_ / "locked");
    fs::permissions(dir_ / "locked", fs::perms::owner_read | fs::perms::owner_exec);
    r = run_cli("eval --data " + path("items.jsonl") + " --pricers mean --no-record --out " + path("locked"));
    EXPECT_NE(r.out.find("cannot write there"), std::string::npos) << r.out;
    fs::permissions(dir_ / "locked", fs::perms::owner_all);
  }
  // A directory given to curate as input names what to give instead.
  r = run_cli("curate " + dir_.string() + " -o " + path("cur"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("a directory; give the JSON-lines files in it"), std::string::npos) << r.out;
}

}  // namespace
