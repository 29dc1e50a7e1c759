// `pricer bench model`, `bench decode` and `bench train` as a user runs them: the benchmark's random
// model written as a GGUF file that loads (with a vocab padded to its rows), decode figures that add
// up (the bytes a decoded token reads are the file's weights, the bandwidth share follows from the
// rate), and the training step's linear rate as a share of the bf16 GEMM peak measured beside it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "cli_test_util.h"
#include "io/gguf.h"
#include "io/model_file.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using namespace pricer;

namespace {

class BenchCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pricer_bench_cli_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A small Llama shape: 2 layers, 256 wide, 2,048 rows of vocab.
  std::string write_model(const std::string& dtype) {
    const std::string out = (dir_ / ("m-" + dtype + ".gguf")).string();
    const auto r = cli_test::run_cli(
        "bench model --dim 256 --layers 2 --heads 4 --kv-heads 2 --ffn 512 --vocab 2048 "
        "--dtype " +
        dtype + " --embed-dtype " + dtype + " -o " + out);
    EXPECT_EQ(r.rc, 0) << r.out;
    return out;
  }

  fs::path dir_;
};

TEST_F(BenchCli, ModelIsALlamaGgufWithItsVocabPaddedToItsRows) {
  const std::string path = write_model("q8_0");
  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.find_tensor("blk.1.ffn_down.weight")->type, GgmlType::Q8_0);
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 2048u);
  const ModelFile mf = load_model_file(path);
  EXPECT_EQ(mf.config.n_layers, 2);
  EXPECT_EQ(mf.config.ffn_dim, 512);
  const auto tok = load_tokenizer(path);
  EXPECT_EQ(tok->decode(tok->encode("Price is $129.99")), "Price is $129.99");
  EXPECT_NE(cli_test::run_cli("bench model --dim 256 --layers 2 --heads 4 --kv-heads 2 --ffn 512 --vocab 100 -o " +
                              (dir_ / "small.gguf").string())
                .rc,
            0)
      << "a vocab smaller than the tokenizer's must be refused";
  // An existing file is never replaced unasked.
  const std::string before = cli_test::slurp(path);
  const auto again = cli_test::run_cli(
      "bench model --dim 256 --layers 2 --heads 4 --kv-heads 2 --ffn 512 --vocab 2048 "
      "--dtype bf16 -o " +
      path);
  EXPECT_NE(again.rc, 0);
  EXPECT_NE(again.out.find("--overwrite"), std::string::npos) << again.out;
  EXPECT_EQ(cli_test::slurp(path), before);
}

TEST_F(BenchCli, DecodeReportsRatesAndTheBytesEachTokenReads) {
  const std::string path = write_model("q4_0");
  int64_t weight_bytes = 0;
  for (const auto& [name, w] : load_model_file(path).tensors) weight_bytes += static_cast<int64_t>(w.bytes());
  for (const char* compute : {"f32", "q8_0"}) {
    SCOPED_TRACE(compute);
    const auto r = cli_test::run_cli_split("bench decode -m " + path + " --compute " + std::string(compute) +
                                           " --prompt-tokens 12 --decode-tokens 4 --repeats 1");
    ASSERT_EQ(r.rc, 0) << r.out << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["compute"], compute);
    EXPECT_GT(j["decode_tok_s"].get<double>(), 0);
    EXPECT_GT(j["prompt_tok_s"].get<double>(), 0);
    // Tied head: the embedding is read once per token, as the head.
    EXPECT_NEAR(j["weight_mib_per_token"].get<double>(), weight_bytes / 1048576.0, 1e-9);
    EXPECT_NEAR(j["bandwidth_fraction"].get<double>(),
                j["decode_tok_s"].get<double>() * weight_bytes * 1e-9 / j["read_bandwidth_gbs"].get<double>(), 1e-9);
  }
  const auto bad = cli_test::run_cli("bench decode -m " + path + " --compute q4_0");
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.out.find("compute dtype must be f32, bf16 or q8_0"), std::string::npos) << bad.out;
}

TEST_F(BenchCli, TrainReportsItsLinearRateAsAShareOfTheBf16GemmPeak) {
  const auto r = cli_test::run_cli_split(
      "bench train --dim 256 --layers 2 --heads 4 --kv-heads 2 --ffn 512 --vocab 2048 --steps 1 --warmup 0");
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const double peak = j["bf16_gemm_peak_gflops"].get<double>(), linear = j["linear_gflops"].get<double>();
  EXPECT_GT(peak, 0);
  EXPECT_GT(linear, 0);
  EXPECT_NEAR(j["linear_share_of_bf16_peak"].get<double>(), linear / peak, 1e-9);
  EXPECT_TRUE(std::isfinite(j["loss_or_logit"].get<double>()));
}

}  // namespace
