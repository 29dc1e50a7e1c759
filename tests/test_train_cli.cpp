// `pricer train` and `pricer pretrain` end to end through the built binary on a tiny generated
// model and dataset: the progress line, the run database, JSONL log and TensorBoard events; a run
// killed with SIGKILL and resumed ends bitwise where an uninterrupted run ends; SIGINT/SIGTERM
// save a checkpoint and exit cleanly; --init-adapter, the YAML config and the memory check.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <set>
#include <thread>

#include "data/cross_fit.h"
#include "io/gguf.h"
#include "monitor/run_db.h"
#include "monitor/tfevents.h"
#include "retrieval/comparables.h"
#include "tokenizer/tokenizer.h"
#include "train/adapter_io.h"
#include "train_test_util.h"

namespace pricer {
namespace {

using namespace train_test;

class TrainCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { suite_ = make_training_suite("train_cli"); }
  static void TearDownTestSuite() {
    fs::remove_all(*suite_);
    delete suite_;
  }
  static std::string suite(const std::string& rel) { return (*suite_ / rel).string(); }

  // `pricer -t 1 train` of the suite's tiny model on its training file into dir_/out (recorded in
  // dir_/runs.db), then `rest`.
  std::vector<std::string> suite_train(const std::string& out, const std::vector<std::string>& rest) const {
    std::vector<std::string> a = {"-t",
                                  "1",
                                  "train",
                                  "--model",
                                  suite("model.gguf"),
                                  "--tokenizer",
                                  suite("tokenizer.json"),
                                  "--data",
                                  suite("train.jsonl")};
    a.insert(a.end(), {"--out", dir_ / out, "--runs-db", dir_ / "runs.db"});
    a.insert(a.end(), rest.begin(), rest.end());
    return a;
  }
  // A QLoRA run over the 32 training examples: 8 steps an epoch.
  std::vector<std::string> train_args(const std::string& out, const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> a = suite_train(
        out, {"--rank", "4", "--alpha", "8", "--batch-size", "4", "--micro-batch", "2", "--max-length", "64"});
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  // The reference for the crash tests: 5 epochs (40 steps), checkpoints every 4 steps.
  const std::vector<std::string> long_run = {"--epochs", "5", "--save-every", "4", "--lr", "2e-3"};

  // The uninterrupted run's adapters (PEFT, GGUF), computed once for the suite.
  std::pair<std::string, std::string> reference_adapter() const {
    static const std::pair<std::string, std::string> ref = [this] {
      std::string err;
      const std::string out = suite("ref");
      EXPECT_EQ(run_pricer(train_args(out, long_run), *suite_ / "ref", nullptr, &err), 0) << err;
      return std::make_pair(slurp(out + "/last/adapter_model.safetensors"), slurp(out + "/last/adapter.gguf"));
    }();
    return ref;
  }

  // Starts a long run, waits for its first checkpoint, then sends `sig`.
  void start_and_signal(Child& child, const std::string& out, int sig) {
    const fs::path ckpt = dir_.path() / out / "checkpoint.bin";
    while (!fs::exists(ckpt) && !child.done()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    ASSERT_FALSE(child.done()) << "the run ended before its first checkpoint: " << child.err();
    child.signal(sig);
  }

  monitor::RunInfo last_run() const {
    monitor::RunDb db(dir_ / "runs.db", monitor::RunDb::Mode::existing);
    return db.list_runs().back();
  }

  static fs::path* suite_;
  ScratchDir dir_;
};
fs::path* TrainCli::suite_ = nullptr;

TEST_F(TrainCli, TrainRunIsMonitoredInTheBarDatabaseJsonlAndTensorBoard) {
  std::string out, err;
  ASSERT_EQ(run_pricer(train_args("out", {"--val", suite("val.jsonl"), "--max-steps", "6", "--eval-every", "3"}),
                       dir_.path() / "run", &out, &err),
            0)
      << err;
  // The progress line (stderr is a file here: plain lines) carries step, loss, lr, tokens/s, ETA.
  EXPECT_NE(err.find("step 6/6 loss "), std::string::npos) << err;
  EXPECT_NE(err.find(" lr "), std::string::npos) << err;
  EXPECT_NE(err.find(" tok/s ETA "), std::string::npos) << err;
  EXPECT_EQ(err.find('\r'), std::string::npos) << "no carriage returns in a log";
  EXPECT_NE(out.find("6 steps"), std::string::npos) << out;

  monitor::RunDb db(dir_ / "runs.db", monitor::RunDb::Mode::existing);
  const auto runs = db.list_runs();
  ASSERT_EQ(runs.size(), 1u);
  const monitor::RunInfo& run = runs[0];
  EXPECT_EQ(run.kind, monitor::RunKind::train);
  EXPECT_EQ(run.status, monitor::RunStatus::finished);
  EXPECT_EQ(run.base_model, suite("model.gguf"));
  for (const char* name : {"train/loss", "train/grad_norm", "train/lr", "train/tokens_per_s"}) {
    const auto series = db.metric_series(run.id, name);
    ASSERT_EQ(series.size(), 6u) << name;
    for (size_t i = 0; i < 6; ++i) EXPECT_EQ(series[i].step, static_cast<int64_t>(i + 1)) << name;
  }
  std::vector<int64_t> eval_steps;
  for (const auto& p : db.metric_series(run.id, "eval/loss")) eval_steps.push_back(p.step);
  EXPECT_EQ(eval_steps, (std::vector<int64_t>{0, 3, 6}));
  EXPECT_EQ(db.metric_series(run.id, "eval/mae").size(), 3u);
  const auto params = db.params(run.id);
  EXPECT_EQ(params["rank"], 4);
  EXPECT_EQ(params["base_dtype"], "nf4");
  EXPECT_EQ(params["mode"], "lora");
  EXPECT_EQ(params["total_steps"], 6);

  // JSONL: one line per logged step with its metrics.
  std::ifstream jl(fs::path(run.log_dir) / "metrics.jsonl");
  ASSERT_TRUE(jl.good()) << run.log_dir;
  std::set<int64_t> loss_steps;
  for (std::string line; std::getline(jl, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["metrics"].contains("train/loss")) loss_steps.insert(j["step"].get<int64_t>());
  }
  EXPECT_EQ(loss_steps, (std::set<int64_t>{1, 2, 3, 4, 5, 6}));
  // TensorBoard: an events file whose records all pass their CRCs, with the scalars per step.
  std::vector<fs::path> events;
  for (const auto& e : fs::directory_iterator(run.log_dir))
    if (e.path().filename().string().starts_with("events.out.tfevents.")) events.push_back(e.path());
  ASSERT_EQ(events.size(), 1u);
  std::map<std::string, int> tags;
  for (const auto& ev : monitor::read_events(events[0]))
    for (const auto& s : ev.scalars) ++tags[s.tag];
  EXPECT_EQ(tags["train/loss"], 6);
  EXPECT_EQ(tags["eval/loss"], 3);

  // Adapters in both formats, best and last.
  for (const char* d : {"best", "last"}) {
    EXPECT_TRUE(fs::exists(dir_ / (std::string("out/") + d + "/adapter_model.safetensors"))) << d;
    EXPECT_TRUE(fs::exists(dir_ / (std::string("out/") + d + "/adapter_config.json"))) << d;
    EXPECT_TRUE(fs::exists(dir_ / (std::string("out/") + d + "/adapter.gguf"))) << d;
  }
}

TEST_F(TrainCli, PretrainWritesAModelWithItsTokenizerAndIsMonitored) {
  std::string corpus;
  for (const auto& p : price_prompts(5, 0, 200)) corpus += nlohmann::json{{"text", p.prompt}}.dump() + "\n";
  write_file_atomic(dir_ / "corpus.jsonl", corpus);
  std::string out, err;
  ASSERT_EQ(run_pricer(small_pretrain_args(dir_ / "corpus.jsonl", dir_ / "pre",
                                           {"--batch-size", "8", "--micro-batch", "4", "--max-steps", "6",
                                            "--eval-every", "3", "--runs-db", dir_ / "runs.db"}),
                       dir_.path() / "pre", &out, &err),
            0)
      << err;
  EXPECT_NE(err.find("pretrain ["), std::string::npos) << err;
  EXPECT_NE(err.find("step 6/6 loss "), std::string::npos) << err;
  const std::string model = dir_ / "pre/model.gguf";
  const ModelFile mf = load_model_file(model);
  EXPECT_EQ(mf.config.dim, 64);
  EXPECT_EQ(mf.config.n_layers, 2);
  EXPECT_EQ(mf.config.vocab_size, 1300);
  // The embedded tokenizer: every number 0-999 is one token.
  const auto tok = load_tokenizer(model);
  EXPECT_EQ(tok->vocab_size(), 1300);
  for (const char* n : {"0", "7", "42", "999"}) EXPECT_EQ(tok->encode(n).size(), 1u) << n;
  EXPECT_EQ(tok->encode("1234").size(), 2u);
  EXPECT_EQ(tok->decode(tok->encode("Price is $742")), "Price is $742");
  EXPECT_TRUE(fs::exists(dir_ / "pre/tokenizer.json"));
  EXPECT_TRUE(fs::exists(dir_ / "pre/best/model.gguf"));

  // The same run from a --config file: the model's shape and the corpus are keys as well (the
  // command line still wins: --layers 1 here).
  write_file_atomic(dir_ / "pre.yaml",
                    "corpus: " + (dir_ / "corpus.jsonl") +
                        "\nvocab_size: 1300\ndim: 64\nlayers: 2\n"
                        "heads: 4\nkv_heads: 2\nffn: 128\ncontext: 128\nmax_length: 32\nbatch_size: 8\n"
                        "micro_batch: 4\nmax_steps: 2\nout: " +
                        (dir_ / "pre-yaml") + "\n");
  ASSERT_EQ(
      run_pricer({"-t", "1", "pretrain", "--config", dir_ / "pre.yaml", "--layers", "1", "--quiet", "--no-record"},
                 dir_.path() / "pre-yaml", &out, &err),
      0)
      << err;
  const ModelFile from_yaml = load_model_file(dir_ / "pre-yaml/model.gguf");
  EXPECT_EQ(from_yaml.config.dim, 64);
  EXPECT_EQ(from_yaml.config.n_layers, 1);
  EXPECT_EQ(from_yaml.config.vocab_size, 1300);

  const monitor::RunInfo run = last_run();
  EXPECT_EQ(run.kind, monitor::RunKind::pretrain);
  EXPECT_EQ(run.status, monitor::RunStatus::finished);
  monitor::RunDb db(dir_ / "runs.db", monitor::RunDb::Mode::existing);
  EXPECT_EQ(db.metric_series(run.id, "train/loss").size(), 6u);
  const auto evals = db.metric_series(run.id, "eval/loss");
  ASSERT_EQ(evals.size(), 3u);
  EXPECT_LT(evals.back().value, evals.front().value) << "six steps from random weights already lower the loss";
  EXPECT_EQ(db.params(run.id)["mode"], "full");
  EXPECT_TRUE(fs::exists(fs::path(run.log_dir) / "metrics.jsonl"));

  // The pretrained model is a base for `pricer train`.
  ASSERT_EQ(run_pricer({"-t",    "1",           "train",     "--model",        model,    "--data", suite("train.jsonl"),
                        "--out", dir_ / "ft",   "--runs-db", dir_ / "runs.db", "--rank", "2",      "--batch-size",
                        "8",     "--max-steps", "2",         "--max-length",   "64",     "--quiet"},
                       dir_.path() / "ft", nullptr, &err),
            0)
      << err;
  EXPECT_TRUE(fs::exists(dir_ / "ft/last/adapter.gguf"));
  EXPECT_NE(err.find("full fine-tuning (--full"), std::string::npos) << "a tiny base gets the advice: " << err;
}

TEST_F(TrainCli, FullFineTuningTrainsEveryWeightAndSavesTheWholeModel) {
  std::string err;
  auto full_args = [&](const std::string& out, const std::vector<std::string>& extra) {
    std::vector<std::string> a =
        suite_train(out, {"--val", suite("val.jsonl"), "--full", "--batch-size", "4", "--max-length", "64",
                          "--max-steps", "4", "--eval-every", "2", "--lr", "1e-3", "--quiet"});
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  // Full fine-tuning trains f32 weights: a quantized base is refused up front, with what to add.
  EXPECT_NE(run_pricer(full_args("nf4", {}), dir_.path() / "nf4", nullptr, &err), 0);
  EXPECT_NE(err.find("--base-dtype f32"), std::string::npos) << err;

  std::string out;
  ASSERT_EQ(run_pricer(full_args("full", {"--base-dtype", "f32"}), dir_.path() / "full", &out, &err), 0) << err;
  EXPECT_NE(out.find("last: " + (dir_ / "full/last") + " (model.gguf)"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir_ / "full/last/adapter.gguf"));
  EXPECT_FALSE(GgufFile::open(dir_ / "full/last/model.gguf").has(data::kCrossFitFoldsKey)) << "not cross-fitted";
  const ModelFile base = load_model_file(suite("model.gguf"));
  const ModelFile tuned = load_model_file(dir_ / "full/last/model.gguf");
  EXPECT_EQ(tuned.config.dim, base.config.dim);
  EXPECT_EQ(tuned.config.vocab_size, base.config.vocab_size);
  // Every tensor the loss reaches moved: embedding, norms, every projection of every layer.
  for (const auto& [name, w] : base.tensors) {
    ASSERT_TRUE(tuned.tensors.contains(name)) << name;
    EXPECT_NE(tuned.tensors.at(name).to_f32(), w.to_f32()) << name << " was not trained";
  }
  // The tokenizer travels inside the model file, so the result is a base like any other.
  const auto tok = load_tokenizer(dir_ / "full/last/model.gguf");
  EXPECT_EQ(tok->encode("Price is $42"), load_tokenizer(suite("tokenizer.json"))->encode("Price is $42"));

  const monitor::RunInfo run = last_run();
  monitor::RunDb db(dir_ / "runs.db", monitor::RunDb::Mode::existing);
  EXPECT_EQ(db.params(run.id)["mode"], "full");
  EXPECT_EQ(db.params(run.id)["full"], true);
  // Validation reads prices off the model as in QLoRA runs.
  EXPECT_EQ(db.metric_series(run.id, "eval/mae").size(), 3u);
}

TEST_F(TrainCli, ARunIsNeverReplacedWithoutOverwriteAndResumeNeedsACheckpoint) {
  std::string out, err;
  const std::vector<std::string> once = {"--max-steps", "2", "--save-every", "1", "--quiet"};
  ASSERT_EQ(run_pricer(train_args("kept", once), dir_.path() / "kept1", &out, &err), 0) << err;
  const std::string ckpt = slurp(dir_ / "kept/checkpoint.bin");
  // Again without --resume: refused before any work, the run untouched.
  EXPECT_NE(run_pricer(train_args("kept", once), dir_.path() / "kept2", &out, &err), 0);
  EXPECT_NE(err.find("holds a run already"), std::string::npos) << err;
  EXPECT_NE(err.find("--resume"), std::string::npos) << err;
  EXPECT_NE(err.find("--overwrite"), std::string::npos) << err;
  EXPECT_EQ(slurp(dir_ / "kept/checkpoint.bin"), ckpt);
  // --overwrite replaces it whole: nothing of the old run survives (no stale best/).
  fs::create_directories(dir_ / "kept/best");
  std::ofstream(dir_ / "kept/best/stale") << "old";
  std::vector<std::string> over = once;
  over.push_back("--overwrite");
  ASSERT_EQ(run_pricer(train_args("kept", over), dir_.path() / "kept3", &out, &err), 0) << err;
  EXPECT_FALSE(fs::exists(dir_ / "kept/best/stale"));
  EXPECT_TRUE(fs::exists(dir_ / "kept/last/adapter.gguf"));
  // `pricer info` on the adapter, in either form: its LoRA settings and its base, not an error.
  for (const std::string& a : {dir_ / "kept/last", dir_ / "kept/last/adapter.gguf"}) {
    ASSERT_EQ(run_pricer({"info", a}, dir_.path(), &out, &err), 0) << err;
    EXPECT_NE(out.find("rank         4, alpha 8"), std::string::npos) << out;
    EXPECT_NE(out.find("targets      q_proj,k_proj,v_proj,o_proj"), std::string::npos) << out;
    EXPECT_NE(out.find("base model   "), std::string::npos) << out;
    EXPECT_EQ(out.find("(not named in the file)"), std::string::npos) << out;
  }
  // --resume with nothing to resume is an error, not a fresh start.
  std::vector<std::string> resume = once;
  resume.push_back("--resume");
  EXPECT_NE(run_pricer(train_args("empty", resume), dir_.path() / "empty", &out, &err), 0);
  EXPECT_NE(err.find("no checkpoint.bin to resume from"), std::string::npos) << err;
  // --no-record: the run stays out of the database; its metrics are in <out>/logs.
  std::vector<std::string> quiet = train_args("unrecorded", once);
  quiet.push_back("--no-record");
  quiet[std::find(quiet.begin(), quiet.end(), "--runs-db") - quiet.begin() + 1] = dir_ / "other.db";
  ASSERT_EQ(run_pricer(quiet, dir_.path() / "unrecorded", &out, &err), 0) << err;
  EXPECT_FALSE(fs::exists(dir_ / "other.db"));
  EXPECT_TRUE(fs::exists(dir_ / "unrecorded/logs/metrics.jsonl"));
  EXPECT_TRUE(fs::exists(dir_ / "unrecorded/last/adapter.gguf"));
}

TEST_F(TrainCli, ComparablesTravelWithTheModelAndPredictionAddsThemOrRefuses) {
  std::string out, err;
  const std::vector<std::string> args = suite_train(
      "cmp", {"--val", suite("val.jsonl"), "--full", "--base-dtype", "f32", "--batch-size", "4", "--max-length", "96",
              "--max-steps", "2", "--eval-every", "1", "--comparables", "3", "--quiet"});
  ASSERT_EQ(run_pricer(args, dir_.path() / "cmp", &out, &err), 0) << err;
  EXPECT_NE(err.find("prices of its 3 most similar training items"), std::string::npos) << err;
  for (const char* d : {"last", "best"}) {
    const auto index = retrieval::ComparablesIndex::load((dir_.path() / "cmp" / d / "comparables.gguf").string());
    EXPECT_EQ(index.k(), 3);
    EXPECT_EQ(index.size(), 32u);
    EXPECT_EQ(GgufFile::open((dir_.path() / "cmp" / d / "model.gguf").string()).get_int(retrieval::kComparablesKey), 3);
  }
  // Prediction finds the index beside the model and says so; without it, it refuses.
  const std::string model = dir_ / "cmp/last/model.gguf";
  const std::vector<std::string> predict = {
      "-t", "1", "predict", "--model", model, "--base-dtype", "f32", "oak dining table, seats six"};
  ASSERT_EQ(run_pricer(predict, dir_.path(), &out, &err), 0) << err;
  EXPECT_NE(err.find("comparables"), std::string::npos) << err;
  EXPECT_NE(out.find("$"), std::string::npos) << out;
  fs::remove(dir_ / "cmp/last/comparables.gguf");
  EXPECT_NE(run_pricer(predict, dir_.path(), &out, &err), 0);
  EXPECT_NE(err.find("trained with comparables"), std::string::npos) << err;
  // An adapter trained with comparables is marked the same way: without its index, refused.
  ASSERT_EQ(run_pricer(train_args("cmp-lora", {"--max-steps", "2", "--comparables", "2", "--quiet"}),
                       dir_.path() / "cmp-lora", &out, &err),
            0)
      << err;
  EXPECT_EQ(GgufFile::open((dir_.path() / "cmp-lora/last/adapter.gguf").string()).get_int(retrieval::kComparablesKey),
            2);
  for (const std::string& adapter : {dir_ / "cmp-lora/last", dir_ / "cmp-lora/last/adapter.gguf"}) {
    const std::vector<std::string> lora = {
        "-t",        "1",     "predict",         "--model", suite("model.gguf"), "--tokenizer", suite("tokenizer.json"),
        "--adapter", adapter, "oak dining table"};
    ASSERT_EQ(run_pricer(lora, dir_.path(), &out, &err), 0) << err;
    EXPECT_NE(err.find("comparables: " + (dir_ / "cmp-lora/last/comparables.gguf")), std::string::npos) << err;
  }
  fs::remove(dir_ / "cmp-lora/last/comparables.gguf");
  const std::vector<std::string> lora = {"-t",
                                         "1",
                                         "predict",
                                         "--model",
                                         suite("model.gguf"),
                                         "--tokenizer",
                                         suite("tokenizer.json"),
                                         "--adapter",
                                         dir_ / "cmp-lora/last",
                                         "oak table"};
  EXPECT_NE(run_pricer(lora, dir_.path(), &out, &err), 0);
  EXPECT_NE(err.find("trained with comparables"), std::string::npos) << err;
  // Resuming with another k is refused, naming the setting.
  std::vector<std::string> resume = args;
  resume.back() = "--resume";
  resume[resume.size() - 2] = "2";
  resume.insert(resume.end() - 1, "--quiet");
  EXPECT_NE(run_pricer(resume, dir_.path() / "cmp", &out, &err), 0);
  EXPECT_NE(err.find("comparables"), std::string::npos) << err;
}

// A cross-fitting run says which fold it left out, and its model and adapter carry the fold.
TEST_F(TrainCli, ACrossFittingRunMarksItsOutputsWithTheFoldLeftOut) {
  std::string err;
  const std::vector<std::string> fold = {"--cross-fit-folds", "3", "--cross-fit-fold", "2"};
  std::vector<std::string> full = suite_train("cf", {"--full", "--base-dtype", "f32", "--batch-size", "4",
                                                     "--max-length", "64", "--max-steps", "1", "--quiet"});
  full.insert(full.end(), fold.begin(), fold.end());
  ASSERT_EQ(run_pricer(full, dir_.path() / "cf", nullptr, &err), 0) << err;
  EXPECT_NE(err.find("cross-fitting: fold 2 of 3 left out ("), std::string::npos) << err;
  const GgufFile model = GgufFile::open((dir_.path() / "cf/last/model.gguf").string());
  EXPECT_EQ(model.get_int(data::kCrossFitFoldsKey), 3);
  EXPECT_EQ(model.get_int(data::kCrossFitFoldKey), 2);
  ASSERT_EQ(run_pricer(train_args("cf-lora",
                                  {"--max-steps", "1", "--cross-fit-folds", "3", "--cross-fit-fold", "0", "--quiet"}),
                       dir_.path() / "cf-lora", nullptr, &err),
            0)
      << err;
  const GgufFile adapter = GgufFile::open((dir_.path() / "cf-lora/last/adapter.gguf").string());
  EXPECT_EQ(adapter.get_int(data::kCrossFitFoldsKey), 3);
  EXPECT_EQ(adapter.get_int(data::kCrossFitFoldKey), 0);
  // A fold past the last is refused before any work.
  EXPECT_NE(run_pricer(train_args("cf-bad", {"--max-steps", "1", "--cross-fit-folds", "3", "--cross-fit-fold", "3"}),
                       dir_.path() / "cf-bad", nullptr, &err),
            0);
  EXPECT_NE(err.find("cross_fit_fold must be 0 to cross_fit_folds - 1 (3 of 3 folds)"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dir_ / "cf-bad/last"));
}

TEST_F(TrainCli, TrainableNumberTokenRowsAreTrainedSavedAndCheckedOnResume) {
  std::string err;
  const std::vector<std::string> extra = {
      "--trainable-tokens", "numbers", "--max-steps", "6", "--save-every", "3", "--lr", "1e-2", "--quiet"};
  ASSERT_EQ(run_pricer(train_args("rows", extra), dir_.path() / "rows", nullptr, &err), 0) << err;
  EXPECT_NE(err.find("training 1000 token rows"), std::string::npos) << err;
  const auto cfg = nlohmann::json::parse(slurp(dir_ / "rows/last/adapter_config.json"));
  ASSERT_TRUE(cfg["trainable_token_indices"].contains("embed_tokens")) << cfg.dump();
  EXPECT_EQ(cfg["trainable_token_indices"]["embed_tokens"].size(), 1000u);
  EXPECT_TRUE(fs::exists(dir_ / "rows/last/adapter.tokens.gguf"));
  // Both forms load and agree; the rows the prices were trained on moved away from the base.
  const ModelFile mf = load_model_file(suite("model.gguf"));
  LlamaModel peft = LlamaModel::from_weights(mf.config, mf.tensors, "base");
  LlamaModel gguf = peft, base = peft;
  load_adapter(peft, dir_ / "rows/last");
  load_adapter(gguf, dir_ / "rows/last/adapter.gguf");
  EXPECT_EQ(peft.trainable_tokens().embed, gguf.trainable_tokens().embed);
  base.add_trainable_tokens(peft.trainable_tokens().ids);
  EXPECT_NE(peft.trainable_tokens().embed, base.trainable_tokens().embed);
  const monitor::RunInfo run = last_run();
  monitor::RunDb db(dir_ / "runs.db", monitor::RunDb::Mode::existing);
  EXPECT_EQ(db.params(run.id)["trainable_tokens"], "numbers");

  // A resume must train the same rows; a spec that is not a list of ids is refused up front.
  EXPECT_NE(run_pricer(train_args("rows", {"--max-steps", "6", "--save-every", "3", "--lr", "1e-2", "--resume"}),
                       dir_.path() / "rows-resume", nullptr, &err),
            0);
  EXPECT_NE(err.find("trainable_tokens"), std::string::npos) << err;
  EXPECT_NE(run_pricer(train_args("bad", {"--trainable-tokens", "7,x"}), dir_.path() / "bad", nullptr, &err), 0);
  EXPECT_NE(err.find("'x' is not a token id"), std::string::npos) << err;
}

TEST_F(TrainCli, KilledWithSigkillAndResumedEndsBitwiseLikeAnUninterruptedRun) {
  const auto [ref, ref_gguf] = reference_adapter();
  ASSERT_FALSE(ref.empty());
  {
    Child child(train_args("crash", long_run), dir_.path() / "crash");
    start_and_signal(child, "crash", SIGKILL);
    EXPECT_EQ(child.term_signal(), SIGKILL) << child.err();
  }
  const auto st = checkpoint_state(dir_ / "crash/checkpoint.bin");
  EXPECT_GE(st["step"].get<int64_t>(), 4);
  EXPECT_LT(st["step"].get<int64_t>(), 40) << "killed before the end";
  EXPECT_FALSE(fs::exists(dir_ / "crash/last")) << "killed before the end";
  EXPECT_EQ(last_run().status, monitor::RunStatus::running) << "nothing ran after the kill";

  std::string err;
  ASSERT_EQ(run_pricer(train_args("crash", {"--epochs", "5", "--save-every", "4", "--lr", "2e-3", "--resume"}),
                       dir_.path() / "resume", nullptr, &err),
            0)
      << err;
  EXPECT_NE(err.find("resuming from"), std::string::npos) << err;
  EXPECT_EQ(slurp(dir_ / "crash/last/adapter_model.safetensors"), ref) << "bitwise equal adapters";
  EXPECT_EQ(slurp(dir_ / "crash/last/adapter.gguf"), ref_gguf);

  // A resume with other settings is refused, naming the setting.
  ASSERT_NE(run_pricer(train_args("crash", {"--epochs", "5", "--resume", "--lr", "1e-3"}), dir_.path() / "bad", nullptr,
                       &err),
            0);
  EXPECT_NE(err.find("lr"), std::string::npos) << err;
}

// --resume continues only the run saved there: every setting but the step budget, cadence, name
// and paths must match, and so must the base model and the examples (by fingerprint, not by
// name); all differences are listed at once.
TEST_F(TrainCli, ResumeRefusesAnotherRunListingEveryDifference) {
  std::string out, err;
  const std::vector<std::string> once = {"--max-steps", "2", "--save-every", "1", "--quiet"};
  ASSERT_EQ(run_pricer(train_args("ident", once), dir_.path() / "i1", &out, &err), 0) << err;
  auto resumed = [&](std::vector<std::string> args) {
    args.push_back("--resume");
    return run_pricer(args, dir_.path() / "i2", &out, &err);
  };
  std::vector<std::string> other = once;
  for (const char* a : {"--lr", "1e-3", "--weight-decay", "0.5", "--dropout", "0.2"}) other.push_back(a);
  EXPECT_NE(resumed(train_args("ident", other)), 0);
  for (const char* key : {"lr: saved", "weight_decay: saved", "dropout: saved", "--epochs/--max-steps"})
    EXPECT_NE(err.find(key), std::string::npos) << key << "\n" << err;

  std::vector<std::string> data = train_args("ident", once);
  data[std::find(data.begin(), data.end(), "--data") - data.begin() + 1] = suite("val.jsonl");
  EXPECT_NE(resumed(data), 0);
  EXPECT_NE(err.find("the training examples differ"), std::string::npos) << err;

  // The same model under another name is the same run; a changed one is not.
  fs::copy_file(suite("model.gguf"), dir_ / "copy.gguf");
  fs::copy_file(suite("model.gguf"), dir_ / "changed.gguf");
  {
    std::fstream f(dir_ / "changed.gguf", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-1, std::ios::end);
    const char last = static_cast<char>(f.get());
    f.seekp(-1, std::ios::end);
    f.put(static_cast<char>(last ^ 1));
  }
  std::vector<std::string> model = train_args("ident", once);
  const auto at = std::find(model.begin(), model.end(), "--model") - model.begin() + 1;
  model[at] = dir_ / "changed.gguf";
  EXPECT_NE(resumed(model), 0);
  EXPECT_NE(err.find("the base model is not the one"), std::string::npos) << err;
  model[at] = dir_ / "copy.gguf";
  model[std::find(model.begin(), model.end(), "--max-steps") - model.begin() + 1] = "3";  // extending is allowed
  EXPECT_EQ(resumed(model), 0) << err;
  EXPECT_EQ(checkpoint_state(dir_ / "ident/checkpoint.bin")["step"].get<int64_t>(), 3) << out << err;
}

class TrainCliSignal : public TrainCli, public ::testing::WithParamInterface<int> {};

TEST_P(TrainCliSignal, SignalSavesACheckpointAndExitsCleanly) {
  const std::string ref = reference_adapter().first;
  std::string err;
  {
    Child child(train_args("sig", long_run), dir_.path() / "sig");
    start_and_signal(child, "sig", GetParam());
    EXPECT_EQ(child.exit_code(), 130) << child.err();
    err = child.err();
    // The summary names what is on disk: the checkpoint, not a last/ that was never written.
    EXPECT_FALSE(fs::exists(dir_ / "sig/last"));
    EXPECT_EQ(child.out().find("last: "), std::string::npos) << child.out();
    EXPECT_NE(child.out().find("checkpoint: "), std::string::npos) << child.out();
  }
  EXPECT_NE(err.find("interrupted: checkpoint saved to"), std::string::npos) << err;
  const int64_t step = checkpoint_state(dir_ / "sig/checkpoint.bin")["step"].get<int64_t>();
  EXPECT_GE(step, 4);
  EXPECT_LT(step, 40);
  const monitor::RunInfo run = last_run();
  EXPECT_EQ(run.status, monitor::RunStatus::interrupted);
  monitor::RunDb db(dir_ / "runs.db", monitor::RunDb::Mode::existing);
  EXPECT_EQ(db.metric_series(run.id, "train/loss").back().step, step) << "the checkpoint holds the last step done";

  ASSERT_EQ(run_pricer(train_args("sig", {"--epochs", "5", "--save-every", "4", "--lr", "2e-3", "--resume"}),
                       dir_.path() / "resume", nullptr, &err),
            0)
      << err;
  EXPECT_EQ(slurp(dir_ / "sig/last/adapter_model.safetensors"), ref) << "bitwise equal adapters";
}

INSTANTIATE_TEST_SUITE_P(Signals, TrainCliSignal, ::testing::Values(SIGINT, SIGTERM),
                         [](const auto& info) { return info.param == SIGINT ? "SIGINT" : "SIGTERM"; });

TEST_F(TrainCli, InitAdapterAndYamlConfigWithOverrides) {
  // An adapter made elsewhere: rank 2 on q and v, non-zero B.
  const ModelFile mf = load_model_file(suite("model.gguf"));
  LlamaModel base = LlamaModel::from_weights(mf.config, mf.tensors, mf.source);
  LoraConfig lc;
  lc.rank = 2;
  lc.alpha = 4;
  lc.targets = parse_lora_targets("q_proj,v_proj");
  base.add_lora(lc, 99);
  for (int64_t l = 0; l < 2; ++l)
    for (Proj p : {Proj::Q, Proj::V})
      for (size_t i = 0; i < base.lora(l, p)->B.size(); ++i) base.lora(l, p)->B[i] = 0.01f * static_cast<float>(i % 7);
  save_peft_adapter(base, dir_ / "init", "tiny");
  const auto init = adapter_tensors(base);

  const std::string yaml = dir_ / "train.yaml";
  write_file_atomic(yaml, "init_adapter: " + (dir_ / "init") + "\nmax_steps: 5\noptimizer: adamw\n");
  std::string out, err;
  ASSERT_EQ(run_pricer(train_args("out", {"--config", yaml, "--max-steps", "1", "--lr", "1e-4", "--warmup-ratio", "0"}),
                       dir_.path() / "run", &out, &err),
            0)
      << err;
  EXPECT_NE(out.find("1 steps"), std::string::npos) << "the command line overrides max_steps: " << out;
  EXPECT_NE(err.find("starting from adapter"), std::string::npos) << err;
  const auto params = monitor::RunDb(dir_ / "runs.db", monitor::RunDb::Mode::existing).params(last_run().id);
  EXPECT_EQ(params["rank"], 2) << "the adapter's settings, not the defaults";
  EXPECT_EQ(params["targets"], "q_proj,v_proj");
  EXPECT_EQ(params["init_adapter"], dir_ / "init");

  LlamaModel trained = LlamaModel::from_weights(mf.config, mf.tensors, mf.source);
  load_adapter(trained, dir_ / "out/last");
  EXPECT_EQ(trained.lora_config().rank, 2);
  EXPECT_EQ(trained.lora(0, Proj::K), nullptr);
  // One AdamW step of lr 1e-4 moves each value by at most about 1e-4: it started from `init`.
  double moved = 0;
  for (const auto& [k, v] : adapter_tensors(trained))
    for (size_t i = 0; i < v.size(); ++i) moved = std::max(moved, std::abs(double(v[i]) - init.at(k)[i]));
  EXPECT_GT(moved, 1e-6);
  EXPECT_LT(moved, 1.5e-4);

  // An unknown key in the file is an error naming the file and the key; so is a bad init adapter.
  write_file_atomic(yaml, "lr: 0.001\nwarmup_steps: 10\n");
  EXPECT_EQ(run_pricer(train_args("out2", {"--config", yaml}), dir_.path() / "bad", nullptr, &err), 1);
  EXPECT_NE(err.find(yaml + ": unknown key 'warmup_steps' at line 2"), std::string::npos) << err;
  fs::remove(dir_ / "init/adapter_config.json");
  EXPECT_EQ(run_pricer(train_args("out3", {"--init-adapter", dir_ / "init"}), dir_.path() / "bad2", nullptr, &err), 1);
  EXPECT_NE(err.find("adapter_config.json"), std::string::npos) << err;
}

TEST_F(TrainCli, RunThatWillNotFitStopsWithAClearError) {
  ::setenv("PRICER_AVAILABLE_MEMORY", "300K", 1);
  std::string err;
  const int rc = run_pricer(train_args("out"), dir_.path() / "mem", nullptr, &err);
  ::unsetenv("PRICER_AVAILABLE_MEMORY");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find("this run needs about"), std::string::npos) << err;
  EXPECT_NE(err.find("only 300 KiB are available"), std::string::npos) << err;
  EXPECT_EQ(err.find("validation examples"), std::string::npos) << "stopped before reading the dataset: " << err;
}

}  // namespace
}  // namespace pricer
