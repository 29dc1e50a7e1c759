// pricer's GGUF exports run in llama.cpp itself: node-llama-cpp's prebuilt CPU build, which
// scripts/setup installs pinned into tests/llama where npm is available (these tests skip with a
// message where it is not). On a small model the test makes: the merged export in every written
// format loads, its next-token log-probabilities after a price prompt agree with pricer's reading
// of the same file within the format's tolerance, and the greedy continuation is the same while
// the choice is clear; a base with pricer's adapter.gguf through llama.cpp's LoRA loading agrees
// with pricer's base + adapter and with the merged export; and the stories260K llama2.c
// checkpoint, exported, tells its reference story in llama.cpp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli_test_util.h"
#include "core/atomic_file.h"
#include "io/model_file.h"
#include "kernels/backend.h"
#include "tiny_pricer_model.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/train_bpe.h"
#include "tokenizer/vocab_export.h"
#include "train/adapter_io.h"

namespace fs = std::filesystem;
using namespace pricer;

namespace {

const fs::path kLlamaDir = fs::path(PRICER_SOURCE_DIR) / "tests/llama";
const fs::path kShared = PRICER_SHARED_DIR;

// The major version of the installed node, 0 when there is none.
int node_major_version() {
  std::FILE* p = ::popen("node -p 'process.versions.node.split(\".\")[0]' 2> /dev/null", "r");
  if (!p) return 0;
  int major = 0;
  if (std::fscanf(p, "%d", &major) != 1) major = 0;
  ::pclose(p);
  return major;
}

// Why llama.cpp cannot be run here, or "" when it can.
std::string llama_cpp_missing() {
  static const std::string why = [] {
    const int node = node_major_version();
    if (node == 0) return std::string("node is not installed");
    if (node < 20) return "node " + std::to_string(node) + " is too old for node-llama-cpp (it needs 20 or later)";
    if (!fs::exists(kLlamaDir / "node_modules/node-llama-cpp/package.json"))
      return std::string("node-llama-cpp is not installed in tests/llama (scripts/setup installs it with npm)");
    return std::string();
  }();
  return why;
}

// What a model predicts after a prompt: the next token's log-probabilities, then `greedy` tokens
// each the likeliest, with how far ahead of the runner-up each was (pricer's side only).
struct Prediction {
  std::vector<double> logprobs;
  std::vector<int32_t> greedy;
  std::vector<double> margins;
};

// llama.cpp's predictions for each prompt, reading the GGUF `model` (and the GGUF LoRA `lora`).
std::vector<Prediction> llama_cpp(const fs::path& dir, const std::string& model,
                                  const std::vector<std::vector<int32_t>>& prompts, int greedy,
                                  const std::string& lora = "") {
  const fs::path req = dir / "request.json", out = dir / "llama.json", err = dir / "llama.err";
  nlohmann::json request = {{"model", model}, {"prompts", prompts}, {"greedy", greedy}, {"out", out.string()}};
  if (!lora.empty()) request["lora"] = lora;
  write_file_atomic(req, request.dump());
  fs::remove(out);
  const std::string cmd =
      "node '" + (kLlamaDir / "next_token.mjs").string() + "' '" + req.string() + "' > '" + err.string() + "' 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << "llama.cpp failed on " << model << ": " << cli_test::slurp(err);
  std::vector<Prediction> results;
  const nlohmann::json j = nlohmann::json::parse(fs::exists(out) ? cli_test::slurp(out) : "", nullptr, false);
  if (j.is_discarded() || !j.contains("results")) {
    ADD_FAILURE() << "llama.cpp wrote no results for " << model << ": " << cli_test::slurp(err);
    return results;
  }
  for (const auto& r : j["results"]) {
    Prediction p;
    for (const auto& lp : r["logprobs"]) p.logprobs.push_back(lp.is_null() ? -INFINITY : lp.get<double>());
    p.greedy = r["greedy"].get<std::vector<int32_t>>();
    results.push_back(std::move(p));
  }
  return results;
}

std::vector<double> log_softmax(const std::vector<float>& logits) {
  const double top = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(l - top);
  std::vector<double> out;
  for (float l : logits) out.push_back(l - top - std::log(sum));
  return out;
}

// The likeliest token and its lead over the runner-up, in log-probability.
std::pair<int32_t, double> top_and_margin(const std::vector<double>& lp) {
  const auto best = std::max_element(lp.begin(), lp.end());
  double second = -INFINITY;
  for (auto it = lp.begin(); it != lp.end(); ++it)
    if (it != best) second = std::max(second, *it);
  return {static_cast<int32_t>(best - lp.begin()), *best - second};
}

// pricer's prediction of the same.
Prediction pricer_predicts(LlamaModel& m, const std::vector<int32_t>& prompt, int greedy) {
  auto be = make_cpu_backend();
  KvCache cache = m.make_cache(static_cast<int64_t>(prompt.size()) + greedy + 1);
  Prediction p;
  p.logprobs = log_softmax(m.prefill(cache, prompt, *be));
  std::vector<double> lp = p.logprobs;
  for (int i = 0; i < greedy; ++i) {
    const auto [token, margin] = top_and_margin(lp);
    p.greedy.push_back(token);
    p.margins.push_back(margin);
    lp = log_softmax(m.decode(cache, token, *be));
  }
  return p;
}

// The largest difference of log-probability over the tokens either side gives at least 1e-4 (below
// that, float rounding of tiny probabilities is all there is to see).
double logprob_gap(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  const double floor = std::log(1e-4);
  double gap = 0;
  for (size_t t = 0; t < std::min(a.size(), b.size()); ++t)
    if (a[t] > floor || b[t] > floor) gap = std::max(gap, std::fabs(a[t] - b[t]));
  return gap;
}

// How many greedy steps where pricer's choice leads by more than `clear` llama.cpp made the same
// choice; a different choice there fails. The comparison goes on while both chose alike and stops
// where they part on a near-tie (either continuation is right there).
int same_greedy_where_clear(const Prediction& pricer, const Prediction& llama, double clear) {
  int compared = 0;
  for (size_t i = 0; i < pricer.greedy.size() && i < llama.greedy.size(); ++i) {
    const bool is_clear = pricer.margins[i] > clear;
    if (llama.greedy[i] != pricer.greedy[i]) {
      EXPECT_FALSE(is_clear) << "greedy step " << i << ": llama.cpp chose " << llama.greedy[i] << ", pricer "
                             << pricer.greedy[i] << " by a margin of " << pricer.margins[i];
      break;
    }
    compared += is_clear ? 1 : 0;
  }
  return compared;
}

class LlamaCpp : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("pricer_llamacpp_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    bpe_ = new TrainedBpe(tiny::tokenizer_vocab());
    const ModelConfig c = tiny::block_model_config(*bpe_, 128);
    LlamaModel m = LlamaModel::random(c, 5, 0.08f);
    tiny::save_model(m, *bpe_, base());
    tiny::add_nonzero_lora(m, 9, 0.05f);
    save_peft_adapter(m, (dir_ / "adapter").string(), "base");
  }
  static void TearDownTestSuite() {
    fs::remove_all(dir_);
    delete bpe_;
  }
  void SetUp() override {
    if (const std::string why = llama_cpp_missing(); !why.empty()) GTEST_SKIP() << "llama.cpp not available: " << why;
  }

  static std::string base() { return (dir_ / "base.gguf").string(); }

  static LlamaModel load(const std::string& path, const std::string& adapter = "") {
    return tiny::load_model(path, adapter);
  }

  // Price prompts of a few products, as token ids after BOS.
  static std::vector<std::vector<int32_t>> prompts() {
    const auto tok = make_trained_tokenizer(*bpe_);
    std::vector<std::vector<int32_t>> out;
    for (const auto& p : tiny::products(6, 4)) {
      std::vector<int32_t> ids = {tok->bos_id()};
      for (int32_t id : tok->encode("What does this cost to the nearest dollar?\n\n" + p.text + "\n\nPrice is $"))
        ids.push_back(id);
      out.push_back(ids);
    }
    return out;
  }

  static fs::path dir_;
  static TrainedBpe* bpe_;
};

fs::path LlamaCpp::dir_;
TrainedBpe* LlamaCpp::bpe_ = nullptr;

// llama.cpp rounds the activations to each weight format's dot-product type (f16, bf16, 8-bit
// blocks) where pricer keeps them f32: agreement is exact in f32 and within that rounding
// otherwise (tolerances about twice what is measured on this model).
struct FormatCase {
  const char* dtype;
  double tolerance;  // of a log-probability, pricer against llama.cpp on the same file
  // The weights' own rounding is larger than llama.cpp's of the activations, so llama.cpp must be
  // nearer pricer's reading of the file than the unrounded source: it decodes the blocks alike.
  bool rounding_shows;
};

constexpr int kGreedy = 16;

TEST_F(LlamaCpp, EveryExportFormatLoadsAndPredictsAsPricerReadsIt) {
  const auto ps = prompts();
  std::vector<Prediction> source;
  LlamaModel src = load(base());
  for (const auto& p : ps) source.push_back(pricer_predicts(src, p, 0));
  for (const FormatCase& c : {FormatCase{"f32", 1e-4, false},
                              {"f16", 2e-2, false},
                              {"bf16", 6e-2, true},
                              {"q8_0", 0.15, true},
                              {"q6_k", 0.25, true},
                              {"q4_0", 0.15, true},
                              {"q4_k", 0.35, true},
                              {"q5_k", 0.3, true},
                              {"q4_k_m", 0.35, true},
                              {"q5_k_m", 0.3, true}}) {
    SCOPED_TRACE(c.dtype);
    const fs::path out = dir_ / (std::string("m-") + c.dtype + ".gguf");
    const auto r = cli_test::run_cli("export -q --model " + base() + " --out " + out.string() + " --dtype " + c.dtype);
    ASSERT_EQ(r.rc, 0) << r.out;
    const auto llama = llama_cpp(dir_, out.string(), ps, kGreedy);
    ASSERT_EQ(llama.size(), ps.size());
    LlamaModel m = load(out.string());
    double worst = 0, from_source = 0;
    int compared = 0;
    for (size_t i = 0; i < ps.size(); ++i) {
      const Prediction mine = pricer_predicts(m, ps[i], kGreedy);
      worst = std::max(worst, logprob_gap(mine.logprobs, llama[i].logprobs));
      from_source = std::max(from_source, logprob_gap(source[i].logprobs, llama[i].logprobs));
      compared += same_greedy_where_clear(mine, llama[i], 2 * c.tolerance);
    }
    std::printf("%-5s llama.cpp against pricer on this file %.2e, against the unrounded source %.2e; %d greedy steps\n",
                c.dtype, worst, from_source, compared);
    EXPECT_LE(worst, c.tolerance);
    if (c.rounding_shows) {
      EXPECT_LT(worst, 0.75 * from_source);
    }
    EXPECT_GT(compared, 0) << "every greedy choice was a near-tie: nothing was compared";
  }
}

TEST_F(LlamaCpp, BasePlusAdapterGgufAgreesWithPricerAndWithTheMergedExport) {
  const auto ps = prompts();
  const fs::path split = dir_ / "split.gguf", lora = dir_ / "split.lora.gguf", merged = dir_ / "merged.gguf";
  const std::string adapter = (dir_ / "adapter").string();
  auto r = cli_test::run_cli("export -q --model " + base() + " --adapter " + adapter + " --out " + split.string());
  ASSERT_EQ(r.rc, 0) << r.out;
  ASSERT_TRUE(fs::exists(lora)) << r.out;
  r = cli_test::run_cli("export -q --model " + base() + " --adapter " + adapter + " --merge --out " + merged.string());
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto with_lora = llama_cpp(dir_, split.string(), ps, kGreedy, lora.string());
  const auto as_merged = llama_cpp(dir_, merged.string(), ps, kGreedy);
  const auto without = llama_cpp(dir_, split.string(), ps, 0);
  ASSERT_EQ(with_lora.size(), ps.size());
  ASSERT_EQ(as_merged.size(), ps.size());
  ASSERT_EQ(without.size(), ps.size());
  LlamaModel m = load(base(), adapter);
  for (size_t i = 0; i < ps.size(); ++i) {
    const Prediction mine = pricer_predicts(m, ps[i], kGreedy);
    EXPECT_LE(logprob_gap(mine.logprobs, with_lora[i].logprobs), 1e-3);
    EXPECT_LE(logprob_gap(as_merged[i].logprobs, with_lora[i].logprobs), 1e-3);
    EXPECT_EQ(as_merged[i].greedy, with_lora[i].greedy);
    same_greedy_where_clear(mine, with_lora[i], 2e-3);
    // The adapter is really applied: without it llama.cpp predicts otherwise.
    EXPECT_GT(logprob_gap(without[i].logprobs, with_lora[i].logprobs), 1e-2);
  }
}

TEST_F(LlamaCpp, Stories260KExportTellsItsReferenceStory) {
  const fs::path st = kShared / "fixtures/stories260K";
  if (!fs::exists(st / "stories260K.bin")) GTEST_SKIP() << "shared fixture " << st << " not present";
  const fs::path out = dir_ / "stories.gguf";
  const auto r = cli_test::run_cli("export -q --model " + (st / "stories260K.bin").string() + " --tokenizer " +
                                   (st / "tok512.bin").string() + " --out " + out.string() + " --dtype f32");
  ASSERT_EQ(r.rc, 0) << r.out;
  std::vector<int32_t> want;
  std::istringstream in(cli_test::slurp(st / "expected_greedy_ids_200.txt"));
  for (int32_t id; in >> id;) want.push_back(id);
  ASSERT_FALSE(want.empty());
  const auto llama = llama_cpp(dir_, out.string(), {{1}}, static_cast<int>(want.size()));
  ASSERT_EQ(llama.size(), 1u);
  EXPECT_EQ(llama[0].greedy, want);
}

TEST_F(LlamaCpp, ThePhoneExamplePricesAProductAsPricerPredicts) {
  const fs::path model = dir_ / "phone.gguf";
  const auto r = cli_test::run_cli("export -q --model " + base() + " --out " + model.string() + " --dtype f32");
  ASSERT_EQ(r.rc, 0) << r.out;
  // The example as a user runs it: a folder of its own, node-llama-cpp installed beside it.
  const fs::path ex = dir_ / "phone";
  fs::create_directories(ex);
  fs::copy_file(fs::path(PRICER_SOURCE_DIR) / "examples/phone/price.mjs", ex / "price.mjs",
                fs::copy_options::overwrite_existing);
  if (!fs::exists(ex / "node_modules")) fs::create_directory_symlink(kLlamaDir / "node_modules", ex / "node_modules");
  for (const auto& p : tiny::products(3, 7)) {
    SCOPED_TRACE(p.text);
    const std::string cmd = "node '" + (ex / "price.mjs").string() + "' '" + model.string() + "' '" + p.text + "' > '" +
                            (ex / "out").string() + "' 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cli_test::slurp(ex / "out");
    const std::string out = cli_test::slurp(ex / "out");
    const nlohmann::json phone = nlohmann::json::parse(out.substr(out.rfind('{')), nullptr, false);
    ASSERT_FALSE(phone.is_discarded()) << out;
    const auto mine = cli_test::run_cli_split("predict --model " + model.string() +
                                              " --base-dtype f32 --compute-dtype f32 --json '" + p.text + "'");
    ASSERT_EQ(mine.rc, 0) << mine.err;
    const nlohmann::json want = nlohmann::json::parse(mine.out);
    EXPECT_EQ(phone["price"].get<double>(), want["price"].get<double>()) << out << "\n" << mine.out;
    EXPECT_EQ(phone["low"].get<double>(), want["interval"]["lo"].get<double>());
    EXPECT_EQ(phone["high"].get<double>(), want["interval"]["hi"].get<double>());
    EXPECT_NEAR(phone["number_mass"].get<double>(), want["number_mass"].get<double>(), 1e-4);
  }
}

}  // namespace
