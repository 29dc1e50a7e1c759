// `pricer tokenize` end to end: the CLI's output must equal the library's encode of each line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_test_util.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Byte-level vocab: bytes in byte order, merges "Ġ t", "h e", "Ġt he"; <s> (BOS) and </s>.
json vocab_json() {
  json vocab = json::object();
  const auto& sp = pricer::tok::byte_to_unicode();
  for (int b = 0; b < 256; ++b) vocab[sp[b]] = b;
  vocab[sp[' '] + "t"] = 256;
  vocab["he"] = 257;
  vocab[sp[' '] + "the"] = 258;
  return {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {sp[' '] + " t", "h e", sp[' '] + "t he"}}}},
      {"added_tokens",
       {{{"id", 259}, {"content", "<s>"}, {"special", true}}, {{"id", 260}, {"content", "</s>"}, {"special", true}}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}}}};
}

class TokenizeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pricer_tokcli_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "tokenizer.json") << vocab_json().dump();
  }
  void TearDown() override { fs::remove_all(dir_); }
  // Runs the CLI on `input`; returns the exit status, stdout in out, stderr in err.
  int run(const std::string& args, const std::string& input, std::string& out, std::string& err) {
    const auto r = pricer::cli_test::run_cli_split(
        "tokenize --tokenizer " + (dir_ / "tokenizer.json").string() + " " + args, input);
    out = r.out;
    err = r.err;
    return r.rc;
  }
  fs::path dir_;
};

}  // namespace

TEST_F(TokenizeCli, LinesAndJsonLines) {
  auto tok = pricer::load_tokenizer((dir_ / "tokenizer.json").string());
  std::vector<std::string> texts = {"the theme", "", " the</s>", "caf\xC3\xA9 \"quoted\"", "tab\there"};
  std::string input;
  for (size_t i = 0; i < texts.size(); ++i)
    input += i % 2 ? json{{"text", texts[i]}, {"price", 1.5}}.dump() + "\n" : texts[i] + "\n";
  std::string out, err;
  ASSERT_EQ(run("--bos", input, out, err), 0) << err;
  std::istringstream lines(out);
  std::string line;
  for (const auto& t : texts) {
    ASSERT_TRUE(std::getline(lines, line)) << "missing output for '" << t << "'";
    std::vector<int32_t> expected = {tok->bos_id()};
    auto enc = tok->encode(t);
    expected.insert(expected.end(), enc.begin(), enc.end());
    EXPECT_EQ(json::parse(line).get<std::vector<int32_t>>(), expected) << t;
  }
  EXPECT_FALSE(std::getline(lines, line));
  EXPECT_EQ(tok->bos_id(), 259);

  // --special matches special-token text.
  ASSERT_EQ(run("--special", "the</s>\n", out, err), 0) << err;
  EXPECT_EQ(json::parse(out).get<std::vector<int32_t>>(), (std::vector<int32_t>{'t', 257, 260}));
}

TEST_F(TokenizeCli, BadInputFailsCleanly) {
  std::string out, err;
  EXPECT_EQ(run("", "fine\n{\"text\": 3}\n", out, err), 1);
  EXPECT_NE(err.find("line 2"), std::string::npos) << err;
  EXPECT_EQ(run("", "{not json\n", out, err), 1);
  EXPECT_NE(err.find("line 1"), std::string::npos) << err;
}
