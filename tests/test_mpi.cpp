// Training across processes: `mpirun -np 2 pricer train|pretrain` against one process on the same
// global batches and seed, through the built binary on a tiny model. The ranks' gradients are
// added in a fixed order, but not in one process's order (its micro-batches one after another),
// so the two agree to float rounding, not bitwise: every tensor within 1e-3 of its own largest
// value. Skipped where pricer was built without MPI or mpirun is missing (scripts/setup installs
// both).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <set>
#include <sstream>
#include <thread>

#include "core/comm.h"
#include "io/safetensors.h"
#include "monitor/run_db.h"
#include "sweep/state.h"
#include "train_test_util.h"

namespace pricer {
namespace {

using namespace train_test;

std::string mpirun() {
  for (const char* p : {"/usr/bin/mpirun", "/usr/local/bin/mpirun"})
    if (::access(p, X_OK) == 0) return p;
  return "";
}

// Runs `mpirun -np N pricer ARGS` (N = 0: pricer alone), output to log (stderr to err_log when
// given: mpirun forwards the ranks' two streams separately, so lines of one may land inside lines
// of the other); the exit status.
int launch(int ranks, const std::vector<std::string>& args, const fs::path& log, const fs::path& err_log = {}) {
  std::string cmd = ranks > 0 ? "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 " + mpirun() +
                                    " --oversubscribe -np " + std::to_string(ranks) + " "
                              : std::string("timeout 300 ");
  cmd += std::string("'") + PRICER_BINARY + "'";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " > '" + log.string() + "' " + (err_log.empty() ? std::string("2>&1") : "2> '" + err_log.string() + "'");
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Every tensor of two adapter or model files agrees within 1e-4 of its own largest value.
void expect_same_tensors(const std::string& a, const std::string& b) {
  const SafetensorsFile fa = SafetensorsFile::open(a), fb = SafetensorsFile::open(b);
  ASSERT_EQ(fa.tensors().size(), fb.tensors().size());
  double worst = 0;
  for (const auto& t : fa.tensors()) {
    const SafetensorsTensor* u = fb.find(t.name);
    ASSERT_TRUE(u != nullptr && t.dtype == "F32" && u->numel() == t.numel()) << t.name;
    const auto* x = reinterpret_cast<const float*>(fa.data(t).data());
    const auto* y = reinterpret_cast<const float*>(fb.data(*u).data());
    double peak = 0, diff = 0;
    for (int64_t i = 0; i < t.numel(); ++i) {
      peak = std::max(peak, std::abs(static_cast<double>(x[i])));
      diff = std::max(diff, std::abs(static_cast<double>(x[i]) - y[i]));
    }
    EXPECT_LE(diff, 1e-4 * peak + 1e-12) << t.name << ": " << diff << " against " << peak;
    worst = std::max(worst, peak > 0 ? diff / peak : 0.0);
  }
  std::printf("largest difference, relative to its tensor's largest value: %.2e\n", worst);
}

class Mpi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { suite_ = make_training_suite("mpi"); }
  static void TearDownTestSuite() {
    fs::remove_all(*suite_);
    delete suite_;
  }
  void SetUp() override {
    if (!comm::built_with_mpi()) GTEST_SKIP() << "pricer was built without MPI (scripts/setup installs libopenmpi-dev)";
    if (mpirun().empty()) GTEST_SKIP() << "mpirun is not installed (scripts/setup installs openmpi-bin)";
  }
  static std::string suite(const std::string& rel) { return (*suite_ / rel).string(); }

  // QLoRA over the 32 examples: global batches of 8 in micro-batches of 2 (four per step), with
  // LoRA dropout, so the ranks must draw the masks one process draws.
  std::vector<std::string> train_args(const std::string& out, const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> a = {"-t", "1", "train", "--model", suite("model.gguf"), "--tokenizer",
                                  suite("tokenizer.json"), "--data", suite("train.jsonl"), "--val", suite("val.jsonl"),
                                  "--out", dir_ / out, "--runs-db", dir_ / "runs.db", "--rank", "4", "--alpha", "8",
                                  "--dropout", "0.1", "--batch-size", "8", "--micro-batch", "2", "--max-length", "64",
                                  "--lr", "2e-3", "--eval-every", "2",
                                  // f32 products: the ranks' summation order is the only
                                  // difference, where bf16 rounding of the activations would turn
                                  // it into whole bf16 steps that Adam carries on.
                                  "--compute-dtype", "f32"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  std::string log(const std::string& name) const { return slurp(dir_ / (name + ".log")); }

  static fs::path* suite_;
  ScratchDir dir_;
};
fs::path* Mpi::suite_ = nullptr;

TEST_F(Mpi, TwoRanksTrainTheAdaptersOneProcessTrains) {
  ASSERT_EQ(launch(0, train_args("one", {"--epochs", "2"}), dir_.path() / "one.log"), 0) << log("one");
  ASSERT_EQ(launch(2, train_args("two", {"--epochs", "2"}), dir_.path() / "two.log"), 0) << log("two");
  expect_same_tensors(dir_ / "one/last/adapter_model.safetensors", dir_ / "two/last/adapter_model.safetensors");
  // Rank 0 alone recorded the run, with its rank count, and spoke once.
  monitor::RunDb db(dir_ / "runs.db", monitor::RunDb::Mode::existing);
  const auto runs = db.list_runs();
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(db.params(runs[0].id)["ranks"], 1);
  EXPECT_EQ(db.params(runs[1].id)["ranks"], 2);
  EXPECT_EQ(db.metric_series(runs[1].id, "train/loss").size(), 8u);
  // One summary line ("run N: ..."), not one per rank.
  std::istringstream out(log("two"));
  int summaries = 0;
  for (std::string line; std::getline(out, line);) summaries += line.starts_with("run ");
  EXPECT_EQ(summaries, 1) << log("two");
}

TEST_F(Mpi, ATwoRankCheckpointResumesOnOneProcess) {
  // A constant learning rate, so that a budget of 3 steps and one of 6 share their first 3 steps.
  const std::vector<std::string> flat = {"--schedule", "constant", "--warmup-ratio", "0"};
  auto with = [&](std::vector<std::string> v, std::vector<std::string> more) {
    v.insert(v.end(), more.begin(), more.end());
    return v;
  };
  ASSERT_EQ(launch(0, train_args("straight", with(flat, {"--max-steps", "6"})), dir_.path() / "straight.log"), 0)
      << log("straight");
  ASSERT_EQ(launch(2, train_args("split", with(flat, {"--max-steps", "3"})), dir_.path() / "split.log"), 0)
      << log("split");
  ASSERT_EQ(launch(0, train_args("split", with(flat, {"--max-steps", "6", "--resume"})), dir_.path() / "resumed.log"),
            0)
      << log("resumed");
  expect_same_tensors(dir_ / "straight/last/adapter_model.safetensors", dir_ / "split/last/adapter_model.safetensors");
}

TEST_F(Mpi, PretrainingOnTwoRanksMatchesOneProcess) {
  std::string corpus;
  for (const auto& p : price_prompts(5, 0, 200)) corpus += nlohmann::json{{"text", p.prompt}}.dump() + "\n";
  write_file_atomic(dir_ / "corpus.jsonl", corpus);
  auto args = [&](const std::string& out) {
    return small_pretrain_args(dir_ / "corpus.jsonl", dir_ / out,
                               {"--batch-size", "8", "--micro-batch", "2", "--max-steps", "4", "--no-record"});
  };
  ASSERT_EQ(launch(0, args("one"), dir_.path() / "pre1.log"), 0) << log("pre1");
  ASSERT_EQ(launch(2, args("two"), dir_.path() / "pre2.log"), 0) << log("pre2");
  const ModelFile a = load_model_file(dir_ / "one/model.gguf"), b = load_model_file(dir_ / "two/model.gguf");
  double worst = 0;
  for (const auto& [name, w] : a.tensors) {
    const std::vector<float> x = w.to_f32(), y = b.tensors.at(name).to_f32();
    double peak = 0, diff = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      peak = std::max(peak, std::abs(static_cast<double>(x[i])));
      diff = std::max(diff, std::abs(static_cast<double>(x[i]) - y[i]));
    }
    EXPECT_LE(diff, 1e-3 * peak + 1e-12) << name;
    worst = std::max(worst, peak > 0 ? diff / peak : 0.0);
  }
  std::printf("pretraining: largest relative difference %.2e\n", worst);
}

TEST_F(Mpi, AKilledRankEndsTheJobWithAnErrorNotAHang) {
  // A long run; once it has checkpointed, one of its ranks is killed.
  const fs::path out = dir_ / "killed";
  std::thread job([&] {
    EXPECT_NE(launch(2, train_args("killed", {"--epochs", "200", "--save-every", "2"}), dir_.path() / "killed.log"), 0);
  });
  const auto t0 = std::chrono::steady_clock::now();
  while (!fs::exists(out / "checkpoint.bin") && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(fs::exists(out / "checkpoint.bin")) << log("killed");
  // The ranks are the pricer processes training into this directory.
  const std::string pids = [&] {
    std::string s;
    if (std::FILE* p = ::popen(("pgrep -f -- '--out " + out.string() + "' | head -n 5").c_str(), "r")) {
      char buf[256];
      while (std::fgets(buf, sizeof buf, p)) s += buf;
      ::pclose(p);
    }
    return s;
  }();
  std::vector<pid_t> ranks;
  for (size_t at = 0; at < pids.size();) {
    const size_t end = pids.find('\n', at);
    const pid_t pid = static_cast<pid_t>(std::stol(pids.substr(at, end - at)));
    if (slurp("/proc/" + std::to_string(pid) + "/comm").starts_with("pricer")) ranks.push_back(pid);
    at = end + 1;
  }
  ASSERT_EQ(ranks.size(), 2u) << pids;
  ::kill(ranks.back(), SIGKILL);
  const auto killed_at = std::chrono::steady_clock::now();
  job.join();  // launch() gives up after 300 s: a hang fails here, it does not block the suite
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, std::chrono::seconds(60)) << log("killed");
}

}  // namespace
}  // namespace pricer

namespace pricer {
namespace {

TEST_F(Mpi, EvalOnTwoRanksPricesAsOneProcessDoes) {
  // Items with texts and prices; the classic baselines fit on the training split, the model
  // prices through its own prompt.
  std::string test, train;
  for (const auto& p : price_prompts(4, 0, 41))
    test += nlohmann::json{{"text", p.prompt}, {"price", p.price}}.dump() + "\n";
  for (const auto& p : price_prompts(4, 500, 60))
    train += nlohmann::json{{"text", p.prompt}, {"price", p.price}}.dump() + "\n";
  write_file_atomic(dir_ / "test.jsonl", test);
  write_file_atomic(dir_ / "train.jsonl", train);
  auto args = [&](const std::string& out) {
    return std::vector<std::string>{"-t",
                                    "1",
                                    "eval",
                                    "--data",
                                    dir_ / "test.jsonl",
                                    "--train",
                                    dir_ / "train.jsonl",
                                    "--pricers",
                                    "mean,linear,tfidf,finetuned",
                                    "--param",
                                    "finetuned_model=" + suite("model.gguf"),
                                    "--param",
                                    "tokenizer=" + suite("tokenizer.json"),
                                    "--param",
                                    "base_dtype=f32",
                                    "--out",
                                    dir_ / out,
                                    "--runs-db",
                                    dir_ / "runs.db"};
  };
  ASSERT_EQ(launch(0, args("one"), dir_.path() / "eval1.log"), 0) << log("eval1");
  ASSERT_EQ(launch(2, args("two"), dir_.path() / "eval2.log"), 0) << log("eval2");
  const auto one = nlohmann::json::parse(slurp(dir_ / "one/results.json"));
  const auto two = nlohmann::json::parse(slurp(dir_ / "two/results.json"));
  ASSERT_EQ(two["items"].size(), 41u);
  EXPECT_EQ(two["meta"]["ranks"], 2);
  for (size_t i = 0; i < 41; ++i) {
    for (const char* p : {"mean", "linear", "tfidf"})  // the same arithmetic on every rank: exact
      EXPECT_EQ(two["items"][i]["predictions"][p], one["items"][i]["predictions"][p]) << p << " item " << i;
    // The model's prompts are batched with other neighbours on each rank: equal to rounding.
    const double a = one["items"][i]["predictions"]["finetuned"], b = two["items"][i]["predictions"]["finetuned"];
    EXPECT_NEAR(b, a, 1e-5 * std::max(1.0, a)) << "item " << i;
  }
  // One run recorded for the two ranks.
  monitor::RunDb db(dir_ / "runs.db", monitor::RunDb::Mode::existing);
  EXPECT_EQ(db.list_runs().size(), 2u);

  // predict --jsonl: the two ranks' shares printed by rank 0 in input order.
  auto predict = [&](int ranks, const std::string& name) {
    EXPECT_EQ(launch(ranks,
                     {"-t", "1", "predict", "--model", suite("model.gguf"), "--tokenizer", suite("tokenizer.json"),
                      "--base-dtype", "f32", "--jsonl", dir_ / "test.jsonl"},
                     dir_.path() / (name + ".log"), dir_.path() / (name + ".err")),
              0)
        << log(name) << slurp(dir_ / (name + ".err"));
    std::vector<nlohmann::json> rows;
    std::istringstream in(log(name));
    for (std::string line; std::getline(in, line);)
      if (line.starts_with("{")) rows.push_back(nlohmann::json::parse(line));
    return rows;
  };
  const auto alone = predict(0, "predict1"), shared = predict(2, "predict2");
  ASSERT_EQ(alone.size(), 41u);
  ASSERT_EQ(shared.size(), 41u);
  for (size_t i = 0; i < 41; ++i) {
    EXPECT_EQ(shared[i]["line"], i + 1);
    EXPECT_NEAR(shared[i]["price"].get<double>(), alone[i]["price"].get<double>(),
                1e-5 * std::max(1.0, alone[i]["price"].get<double>()));
  }
}

}  // namespace
}  // namespace pricer

namespace pricer {
namespace {

TEST_F(Mpi, ASweepRunsOneTrialPerRankWithOneStateOnRankZero) {
  // A tiny base grown from synthetic data, then a 4-trial sweep on 2 ranks with pruning.
  ASSERT_EQ(launch(0,
                   {"curate", "--synthetic", "160", "--seed", "3", "--train", "120", "--val", "20", "--test", "20",
                    "-o", dir_ / "data", "--no-charts"},
                   dir_.path() / "curate.log"),
            0)
      << log("curate");
  ASSERT_EQ(launch(0,
                   {"-t",
                    "1",
                    "pretrain",
                    "--corpus",
                    dir_ / "data/train.jsonl",
                    "--vocab-size",
                    "1300",
                    "--tokenizer-texts",
                    "120",
                    "--dim",
                    "16",
                    "--layers",
                    "1",
                    "--heads",
                    "2",
                    "--kv-heads",
                    "1",
                    "--ffn",
                    "32",
                    "--context",
                    "256",
                    "--max-length",
                    "64",
                    "--batch-size",
                    "4",
                    "--micro-batch",
                    "4",
                    "--max-steps",
                    "1",
                    "--eval-every",
                    "0",
                    "--out",
                    dir_ / "base",
                    "-q",
                    "--no-record"},
                   dir_.path() / "pretrain.log"),
            0)
      << log("pretrain");
  write_file_atomic(dir_ / "sweep.yaml",
                    "name: ranks\nout_dir: " + (dir_ / "sw") +
                        "\nseed: 5\nalgorithm: tpe\nstartup_trials: 2\ntrials: 4\n"
                        "pruning: {min_steps: 2, reduction_factor: 2}\n"
                        "train:\n  model: " +
                        (dir_ / "base/model.gguf") + "\n  dataset: " + (dir_ / "data") +
                        "\n  base_dtype: f32\n  max_length: 96\n  batch_size: 4\n  micro_batch: 4\n  max_steps: 6\n"
                        "  eval_items: 8\n  save_every: 0\n"
                        "space:\n  lr: {type: log_uniform, low: 1.0e-4, high: 1.0e-1}\n  rank: [2, 4]\n");
  ASSERT_EQ(launch(2, {"-t", "1", "sweep", "--config", dir_ / "sweep.yaml", "-q", "--runs-db", dir_ / "runs.db"},
                   dir_.path() / "sweep.log"),
            0)
      << log("sweep");
  EXPECT_NE(log("sweep").find("one per MPI rank"), std::string::npos) << log("sweep");
  const auto st = sweep::SweepState::load(dir_.path() / "sw" / "sweep.json");
  ASSERT_TRUE(st);
  ASSERT_EQ(st->trials.size(), 4u);
  for (const auto& t : st->trials) {
    EXPECT_TRUE(t.status == sweep::TrialStatus::complete || t.status == sweep::TrialStatus::pruned) << t.message;
    EXPECT_EQ(t.rungs.count(2), 1u) << "every trial reported its first rung to rank 0";
    ASSERT_EQ(t.run_ids.size(), 1u) << "each trial's run reached rank 0's state";
    EXPECT_TRUE(fs::exists(fs::path(t.out_dir) / "last" / "adapter_model.safetensors") ||
                t.status == sweep::TrialStatus::pruned)
        << t.out_dir;
  }
  monitor::RunDb db(dir_ / "runs.db", monitor::RunDb::Mode::existing);
  EXPECT_EQ(db.list_runs().size(), 4u);
  std::set<int> ran_on;
  for (const auto& r : db.list_runs()) {
    EXPECT_EQ(db.params(r.id)["ranks"], 1) << "a trial trains alone on its rank";
    ran_on.insert(db.params(r.id)["world_rank"].get<int>());
  }
  EXPECT_EQ(ran_on, (std::set<int>{0, 1}));
  EXPECT_TRUE(fs::exists(dir_.path() / "sw" / "report.html"));
}

}  // namespace
}  // namespace pricer
