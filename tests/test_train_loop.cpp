// The training loop (train/trainer.h) run in-process on a tiny model: learning-rate schedules,
// gradient accumulation, non-finite steps, checkpoints and resume, the memory check, the YAML
// config with command-line overrides, evaluation with best/last outputs and early stopping, and
// length-grouped batches.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <numbers>
#include <set>

#include "cli/train_options.h"
#include "core/atomic_file.h"
#include "core/dir_lock.h"
#include "core/threads.h"
#include "monitor/run_db.h"
#include "predict/price_distribution.h"
#include "predict/validation_prices.h"
#include "train/adapter_io.h"
#include "train/trainer.h"
#include "train_test_util.h"

namespace pricer {
namespace {

using namespace train_test;

class TrainLoop : public ::testing::Test {
 protected:
  std::vector<PricedExample> examples(uint64_t first, uint64_t n, int64_t max_length = 64) {
    const std::string path = dir_ / ("examples_" + std::to_string(first) + "_" + std::to_string(n) + ".jsonl");
    write_price_jsonl(path, price_prompts(7, first, n));
    DatasetOptions o;
    o.max_length = max_length;
    return load_examples(path, "train", tiny_tokenizer(), tiny_tokenizer().vocab_size(), o);
  }
  static LlamaModel lora_model(uint64_t seed = 1, float dropout = 0.0f) {
    LlamaModel m = LlamaModel::random(tiny_config(tiny_tokenizer().vocab_size()), seed, 0.1f);
    LoraConfig lc;
    lc.rank = 4;
    lc.alpha = 8.0f;
    lc.dropout = dropout;
    lc.targets = parse_lora_targets("all");
    m.add_lora(lc, seed);
    return m;
  }
  TrainConfig config(const std::string& out = "out") const {
    TrainConfig c;
    c.out_dir = dir_ / out;
    c.runs_db = dir_ / "runs.db";
    c.dataset = "synthetic";
    c.progress = false;
    c.eval_every = 0;
    c.save_every = 0;
    c.batch_size = 4;
    c.micro_batch = 4;
    c.max_length = 64;
    c.lr = 1e-2f;
    c.warmup_ratio = 0;
    c.max_grad_norm = 1.0f;
    return c;
  }
  TrainSummary train(const TrainConfig& c, LlamaModel& m, const std::vector<PricedExample>& tr,
                     const std::vector<PricedExample>& val = {}, const TrainHooks& hooks = {}) {
    TrainHooks with_prices = hooks;
    if (!with_prices.score_prices) with_prices.score_prices = validation_price_scorer(tiny_tokenizer());
    return run_training(c, m, tiny_tokenizer(), tr, val, false, with_prices, "test");
  }
  std::vector<monitor::MetricPoint> metric(int64_t run, const std::string& name) const {
    monitor::RunDb db(dir_ / "runs.db", monitor::RunDb::Mode::existing);
    return db.metric_series(run, name);
  }

  ScratchDir dir_;
};

// ---------------------------------------------------------------------------------------------
// Schedules: transformers' get_{cosine,linear,constant}_schedule_with_warmup.

TEST(TrainSchedule, WarmupThenCosineLinearOrConstant) {
  TrainConfig c;
  c.lr = 2e-4f;
  c.warmup_ratio = 0.1;  // 10 of 100 steps
  const int64_t total = 100;
  for (const char* kind : {"cosine", "linear", "constant"}) {
    c.schedule = kind;
    EXPECT_FLOAT_EQ(scheduled_lr(c, 0, total), 0.0f) << kind;
    EXPECT_FLOAT_EQ(scheduled_lr(c, 5, total), 1e-4f) << kind;
    EXPECT_FLOAT_EQ(scheduled_lr(c, 10, total), 2e-4f) << kind;
  }
  c.schedule = "cosine";
  EXPECT_FLOAT_EQ(scheduled_lr(c, 55, total), 1e-4f);  // half way through the decay
  EXPECT_FLOAT_EQ(scheduled_lr(c, 40, total), 2e-4f * 0.5f * (1 + std::cos(std::numbers::pi_v<float> / 3)));
  EXPECT_NEAR(scheduled_lr(c, 99, total), 2e-4 * 0.5 * (1 + std::cos(std::numbers::pi * 89 / 90)), 1e-12);
  c.schedule = "linear";
  EXPECT_FLOAT_EQ(scheduled_lr(c, 55, total), 1e-4f);
  EXPECT_FLOAT_EQ(scheduled_lr(c, 82, total), 2e-4f * 0.2f);
  EXPECT_FLOAT_EQ(scheduled_lr(c, 100, total), 0.0f);
  c.schedule = "constant";
  EXPECT_FLOAT_EQ(scheduled_lr(c, 99, total), 2e-4f);
  // The default 1% warmup rounds up: 3 warmup steps of 250.
  c.warmup_ratio = 0.01;
  EXPECT_FLOAT_EQ(scheduled_lr(c, 2, 250), 2e-4f * 2 / 3);
  EXPECT_FLOAT_EQ(scheduled_lr(c, 3, 250), 2e-4f);
  // No warmup: full rate from the first step.
  c.warmup_ratio = 0;
  c.schedule = "cosine";
  EXPECT_FLOAT_EQ(scheduled_lr(c, 0, 10), 2e-4f);
}

// ---------------------------------------------------------------------------------------------
// Gradient accumulation: micro-batches weigh by their loss tokens, so any split equals one batch.

TEST_F(TrainLoop, MicroBatchAccumulationEqualsOneBigBatch) {
  auto data = examples(0, 12);
  for (size_t i = 0; i < data.size(); i += 3) data[i].tokens.push_back(data[i].tokens.back());  // longer completions
  std::set<size_t> lengths;
  for (const auto& e : data) lengths.insert(e.tokens.size() - e.prompt_len);
  ASSERT_GT(lengths.size(), 1u) << "completions of different lengths make an unweighted mean differ";
  std::map<std::string, std::vector<float>> whole;
  for (int64_t micro : {6, 1, 4}) {  // 4: micro-batches of 4 and 2
    SCOPED_TRACE("micro_batch " + std::to_string(micro));
    LlamaModel m = lora_model();
    // Non-zero B so both A and B move in the first step.
    for (int64_t l = 0; l < 2; ++l)
      for (float& b : m.lora(l, Proj::Q)->B) b = 0.05f;
    TrainConfig c = config("out" + std::to_string(micro));
    c.batch_size = 6;
    c.micro_batch = micro;
    c.optimizer = "sgd";
    c.lr = 0.5f;
    c.max_grad_norm = 0;  // no clipping: the step is the gradient itself
    c.max_steps = 2;
    train(c, m, data);
    if (whole.empty()) {
      whole = adapter_tensors(m);
    } else {
      EXPECT_LT(max_rel_diff(adapter_tensors(m), whole), 1e-5);
    }
  }
  LlamaModel untrained = lora_model();
  EXPECT_GT(max_rel_diff(adapter_tensors(untrained), whole), 1e-3) << "the steps must move the adapter";
}

// ---------------------------------------------------------------------------------------------
// Non-finite loss: the update is skipped, counted and logged; training goes on.

TEST_F(TrainLoop, NonFiniteStepIsSkippedAndReported) {
  auto data = examples(0, 6);
  // Untied: a NaN input embedding must not reach the head, so only the poisoned example is hit.
  ModelConfig untied = tiny_config(tiny_tokenizer().vocab_size());
  untied.tied_embeddings = false;
  LlamaModel m = LlamaModel::random(untied, 1, 0.1f);
  LoraConfig lc;
  lc.rank = 4;
  lc.targets = parse_lora_targets("q,v");
  m.add_lora(lc, 1);
  // A token no example uses, put into one of them, gets a NaN embedding.
  std::set<int32_t> used;
  for (const auto& e : data) used.insert(e.tokens.begin(), e.tokens.end());
  int32_t poison = 300;
  while (used.count(poison)) ++poison;
  data[2].tokens[1] = poison;
  m.embedding().f32()[static_cast<size_t>(poison) * 64] = NAN;
  TrainConfig c = config();
  c.batch_size = 1;
  c.micro_batch = 1;
  std::vector<std::map<std::string, std::vector<float>>> after(1, adapter_tensors(m));
  TrainHooks hooks;
  hooks.after_step = [&](int64_t) { after.push_back(adapter_tensors(m)); };
  testing::internal::CaptureStderr();
  const TrainSummary s = train(c, m, data, {}, hooks);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(s.steps, 6);
  EXPECT_EQ(s.skipped_steps, 1);
  EXPECT_NE(err.find("non-finite loss"), std::string::npos) << err;
  EXPECT_NE(err.find("update skipped"), std::string::npos) << err;
  const auto skipped = metric(s.run_id, "train/skipped_steps");
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].value, 1.0);
  // The skipped step is the one without a train/loss point; the adapter did not move in it.
  const auto losses = metric(s.run_id, "train/loss");
  ASSERT_EQ(losses.size(), 5u);
  std::set<int64_t> logged;
  for (const auto& p : losses) logged.insert(p.step);
  EXPECT_EQ(logged.count(skipped[0].step), 0u);
  for (size_t step = 1; step < after.size(); ++step) {
    for (const auto& [k, v] : after[step])
      for (float x : v) ASSERT_TRUE(std::isfinite(x)) << k << " at step " << step;
    const double moved = max_rel_diff(after[step], after[step - 1]);
    if (static_cast<int64_t>(step) == skipped[0].step) {
      EXPECT_EQ(moved, 0.0);
    } else {
      EXPECT_GT(moved, 0.0) << "step " << step;
    }
  }
}

// A run whose loss or weights go non-finite for good is an error, its run marked failed, and no
// last/ is written; so is starting from weights that hold a NaN.
TEST_F(TrainLoop, DivergedRunStopsWithAnErrorAndIsMarkedFailed) {
  const auto data = examples(0, 24);
  LlamaModel m = lora_model();
  TrainConfig c = config("diverged");
  c.lr = 1e30f;
  c.max_grad_norm = 0;
  TrainHooks hooks;
  bool saved = false;
  hooks.save_output = [&](const LlamaModel&, const std::string&) { saved = true; };
  try {
    train(c, m, data, {}, hooks);
    ADD_FAILURE() << "a run at lr 1e30 finished";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("training diverged"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(saved) << "a diverged run wrote its outputs";
  monitor::RunDb db(dir_ / "runs.db", monitor::RunDb::Mode::existing);
  EXPECT_EQ(db.list_runs().back().status, monitor::RunStatus::failed);

  LlamaModel poisoned = lora_model();
  poisoned.lora(1, Proj::Q)->A[3] = NAN;
  try {
    train(config("poisoned"), poisoned, data);
    ADD_FAILURE() << "training started from a NaN weight";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NaN or infinite"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints: always complete on disk, and a run resumed from one ends bitwise where an
// uninterrupted run ends (dropout on, several epochs, the crash mid-epoch).

TEST_F(TrainLoop, CheckpointIsAtomicAndResumeIsBitwise) {
  const auto data = examples(0, 10);
  TrainConfig c = config("ref");
  c.epochs = 2;
  c.batch_size = 3;
  c.micro_batch = 2;
  c.save_every = 2;
  c.schedule = "cosine";
  c.warmup_ratio = 0.2;
  LlamaModel ref = lora_model(3, 0.1f);
  const TrainSummary rs = train(c, ref, data);
  ASSERT_EQ(rs.steps, 8);

  c.out_dir = dir_ / "crash";
  LlamaModel crashed = lora_model(3, 0.1f);
  TrainHooks hooks;
  const fs::path ckpt = fs::path(c.out_dir) / "checkpoint.bin";
  hooks.after_step = [&](int64_t step) {
    // Only the checkpoint itself in the directory: no temporary file left beside it.
    for (const auto& e : fs::directory_iterator(c.out_dir)) EXPECT_EQ(e.path().filename(), "checkpoint.bin");
    if (step >= 2) {
      EXPECT_EQ(checkpoint_state(ckpt.string()).at("step").get<int64_t>(), step - step % 2);
    }
    if (step == 5) throw std::runtime_error("simulated crash");
  };
  EXPECT_THROW(train(c, crashed, data, {}, hooks), std::runtime_error);
  const nlohmann::json st = checkpoint_state(ckpt.string());
  EXPECT_EQ(st.at("step"), 4);
  EXPECT_EQ(st.at("epoch"), 1);  // 4 batches an epoch: the checkpoint resumes at the next epoch
  EXPECT_EQ(st.at("batch_in_epoch"), 0);

  c.resume = true;
  LlamaModel resumed = lora_model(3, 0.1f);
  testing::internal::CaptureStderr();
  const TrainSummary s = train(c, resumed, data);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("resuming from"), std::string::npos);
  EXPECT_EQ(s.steps, 8);
  EXPECT_EQ(adapter_tensors(resumed), adapter_tensors(ref));
}

// Fault injection: a run killed at each fsync and rename of its checkpoint and adapter writes (as
// kill -9 would: no destructor runs) resumes to the same adapters, byte for byte, as a run never
// killed, and leaves no temporary file behind. Every run happens in a child process, on one
// thread: a process that never started a thread pool forks safely.
TEST_F(TrainLoop, KilledAtAnyFsyncOrRenameResumesToTheSameAdapters) {
  set_threads(1);
  const auto data = examples(0, 10), val = examples(100, 4);
  const TrainHooks hooks = adapter_output_hooks("tiny");
  auto config_for = [&](const std::string& out) {
    TrainConfig c = config(out);
    c.epochs = 2;
    c.batch_size = 3;
    c.micro_batch = 3;
    c.save_every = 2;
    c.eval_every = 3;
    return c;
  };
  // Runs training in a child; kill_at > 0 ends it at that fsync/rename. Returns the events seen.
  // resume: continue from the checkpoint; else start over (replacing what a run killed before its
  // first checkpoint wrote, as --overwrite does).
  auto child = [&](const std::string& out, bool resume, long kill_at) -> long {
    const fs::path events = dir_ / (out + ".events");
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::alarm(120);
      long n = 0;
      set_durability_hook([&](std::string_view, const fs::path&) {
        if (++n == kill_at) ::_exit(9);
      });
      try {
        TrainConfig c = config_for(out);
        c.resume = resume;
        c.overwrite = !resume;
        const auto lock = prepare_output_dir(c);
        LlamaModel m = lora_model(3);
        train(c, m, data, val, hooks);
      } catch (const std::exception& e) {
        std::ofstream(dir_ / (out + ".error")) << e.what();
        ::_exit(3);
      }
      std::ofstream(events) << n;
      ::_exit(0);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status)) << out;
    if (kill_at > 0) {
      EXPECT_EQ(WEXITSTATUS(status), 9) << out << ": not killed at event " << kill_at;
      return 0;
    }
    EXPECT_EQ(WEXITSTATUS(status), 0) << out << ": " << slurp(dir_ / (out + ".error"));
    long n = 0;
    std::ifstream(events) >> n;
    return n;
  };
  auto files_of = [](const fs::path& dir) {
    std::map<std::string, std::string> out;
    for (const char* sub : {"best", "last"})
      for (const auto& e : fs::directory_iterator(dir / sub))
        out[std::string(sub) + "/" + e.path().filename().string()] = slurp(e.path());
    return out;
  };
  const long events = child("ref", false, 0);
  ASSERT_GT(events, 20) << "checkpoints and two adapter directories: many fsyncs and renames";
  const auto want = files_of(dir_ / "ref");
  ASSERT_EQ(want.size(), 6u);  // PEFT (config + weights) and GGUF, in best/ and last/
  for (long k = 1; k <= events; ++k) {
    const std::string out = "killed-" + std::to_string(k);
    child(out, false, k);
    const bool started = fs::exists(fs::path(dir_ / out) / "checkpoint.bin");
    if (started) child(out, true, 0);
    else child(out, false, 0);
    EXPECT_EQ(files_of(dir_ / out), want) << "killed at event " << k << " of " << events;
    for (const auto& e : fs::directory_iterator(dir_ / out))
      EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
    fs::remove_all(dir_ / out);
  }
}

// Training data is parsed strictly: a line that is not JSON, or holds a key twice, is an error
// naming the file and line (the last key would otherwise win silently).
TEST_F(TrainLoop, TrainingLinesAreParsedStrictly) {
  const std::string path = dir_ / "dup.jsonl";
  write_file_atomic(path,
                    "{\"prompt\": \"a\", \"completion\": \"1.00\"}\n"
                    "{\"prompt\": \"b\", \"completion\": \"2.00\", \"completion\": \"900.00\"}\n");
  try {
    load_examples(path, "train", tiny_tokenizer(), tiny_tokenizer().vocab_size(), DatasetOptions{});
    ADD_FAILURE() << "a duplicate key was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":2: duplicate JSON key 'completion'"), std::string::npos) << e.what();
  }
}

// One run per output directory: a second is refused while the first holds it, naming its pid.
TEST_F(TrainLoop, AnOutputDirectoryHoldsOneRunAtATime) {
  const TrainConfig c = config("locked");
  const auto held = prepare_output_dir(c);
  try {
    prepare_output_dir(c);
    ADD_FAILURE() << "a second run into a locked directory";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("in use by another run (pid " + std::to_string(::getpid()) + ")"),
              std::string::npos)
        << e.what();
  }
  // Stale temporaries of a killed writer go at the next start; other files stay.
  fs::create_directories(fs::path(dir_ / "free") / ".best.tmp.123.0");
  std::ofstream(fs::path(dir_ / "free") / ".checkpoint.bin.tmp.123.1") << "x";
  std::ofstream(fs::path(dir_ / "free") / "notes.txt") << "mine";
  const auto other = prepare_output_dir(config("free"));
  EXPECT_FALSE(fs::exists(fs::path(dir_ / "free") / ".best.tmp.123.0"));
  EXPECT_FALSE(fs::exists(fs::path(dir_ / "free") / ".checkpoint.bin.tmp.123.1"));
  EXPECT_TRUE(fs::exists(fs::path(dir_ / "free") / "notes.txt"));
}

// --ema: training itself is unchanged, the saved model is the moving average of the weights (as a
// plain loop over the per-step weights computes it), and a resumed run saves the same average.
TEST_F(TrainLoop, WeightAverageIsWhatIsSavedAndResumesBitwise) {
  const auto data = examples(0, 10);
  TrainConfig c = config("plain");
  c.epochs = 2;
  c.batch_size = 3;
  c.micro_batch = 3;
  c.save_every = 2;
  LlamaModel plain = lora_model(3);
  train(c, plain, data);

  c.out_dir = dir_ / "ema";
  c.ema = 0.8;
  LlamaModel m = lora_model(3);
  std::vector<std::map<std::string, std::vector<float>>> live(1, adapter_tensors(m));
  std::map<std::string, std::vector<float>> saved;
  TrainHooks hooks;
  hooks.after_step = [&](int64_t) { live.push_back(adapter_tensors(m)); };
  hooks.save_output = [&](const LlamaModel& at, const std::string&) { saved = adapter_tensors(at); };
  train(c, m, data, {}, hooks);
  ASSERT_EQ(live.size(), 9u);
  EXPECT_EQ(adapter_tensors(m), adapter_tensors(plain)) << "the average must not change training";
  // The scalar twin: shadow = d shadow + (1 - d) w after each step, d = min(0.8, (1 + n) / (10 + n)).
  auto expect = live[0];
  for (std::size_t n = 0; n + 1 < live.size(); ++n) {
    const float d = static_cast<float>(std::min(0.8, (1.0 + static_cast<double>(n)) / (10.0 + static_cast<double>(n))));
    for (auto& [k, v] : expect)
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = d * v[i] + (1.0f - d) * live[n + 1].at(k)[i];
  }
  EXPECT_LT(max_rel_diff(saved, expect), 1e-5);
  EXPECT_GT(max_rel_diff(saved, live.back()), 1e-3) << "the saved weights are the average, not the last step's";

  // Crash after step 5, resume: the same average is saved, bit for bit.
  c.out_dir = dir_ / "ema-crash";
  LlamaModel crashed = lora_model(3);
  TrainHooks crash;
  crash.after_step = [&](int64_t step) {
    if (step == 5) throw std::runtime_error("simulated crash");
  };
  EXPECT_THROW(train(c, crashed, data, {}, crash), std::runtime_error);
  c.resume = true;
  LlamaModel resumed = lora_model(3);
  std::map<std::string, std::vector<float>> saved_resumed;
  TrainHooks after;
  after.save_output = [&](const LlamaModel& at, const std::string&) { saved_resumed = adapter_tensors(at); };
  train(c, resumed, data, {}, after);
  EXPECT_EQ(saved_resumed, saved);
  EXPECT_EQ(adapter_tensors(resumed), adapter_tensors(plain));
}

TEST_F(TrainLoop, BadCheckpointsAreRejectedWithTheReason) {
  const auto data = examples(0, 4);
  TrainConfig c = config();
  c.max_steps = 1;
  LlamaModel m = lora_model();
  train(c, m, data);
  const std::string ckpt = (fs::path(c.out_dir) / "checkpoint.bin").string();
  const std::string good = slurp(ckpt);
  c.resume = true;

  TrainConfig other = c;
  other.lr = 5e-3f;
  LlamaModel m2 = lora_model();
  try {
    train(other, m2, data);
    ADD_FAILURE() << "a checkpoint of other settings was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lr"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(ckpt), std::string::npos) << e.what();
  }

  write_file_atomic(ckpt, good.substr(0, good.size() - 100));
  LlamaModel m3 = lora_model();
  try {
    train(c, m3, data);
    ADD_FAILURE() << "a truncated checkpoint was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(ckpt), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }

  write_file_atomic(ckpt, "PRICERCK" + std::string(8, '\xff'));
  LlamaModel m4 = lora_model();
  EXPECT_THROW(train(c, m4, data), Error);

  // Another LoRA shape than the checkpoint's.
  write_file_atomic(ckpt, good);
  LlamaModel m5 = LlamaModel::random(tiny_config(tiny_tokenizer().vocab_size()), 1, 0.1f);
  LoraConfig lc;
  lc.rank = 2;
  lc.targets = parse_lora_targets("q,v");
  m5.add_lora(lc, 1);
  try {
    train(c, m5, data);
    ADD_FAILURE() << "a checkpoint of another adapter shape was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensors"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Memory: the estimate tracks the settings, and a run that will not fit stops before training.

TEST_F(TrainLoop, MemoryEstimateAndClearErrorWhenTheRunWillNotFit) {
  LlamaModel m = lora_model();
  TrainConfig c = config();
  const uint64_t base = estimate_training_memory(m, c, false);
  c.micro_batch = 16;
  EXPECT_GT(estimate_training_memory(m, c, false), base);
  const uint64_t micro16 = estimate_training_memory(m, c, false);
  c.checkpoint_layers = true;
  EXPECT_LT(estimate_training_memory(m, c, false), micro16);
  EXPECT_GT(estimate_training_memory(m, config(), true), base)
      << "full mode trains (and stores moments of) every weight";
  LlamaModel nf4 = lora_model();
  nf4.convert_base(DType::NF4);
  EXPECT_LT(estimate_training_memory(nf4, config(), false), base);

  EXPECT_EQ(parse_memory_size("1048576", "x"), 1048576u);
  EXPECT_EQ(parse_memory_size("512M", "x"), 512ull << 20);
  EXPECT_EQ(parse_memory_size("2.5GiB", "x"), 5ull << 29);
  EXPECT_THROW(parse_memory_size("lots", "x"), Error);
  EXPECT_THROW(parse_memory_size("-1G", "x"), Error);

  ::setenv("PRICER_AVAILABLE_MEMORY", "1M", 1);
  EXPECT_EQ(available_memory(), 1u << 20);
  const auto data = examples(0, 4);
  try {
    train(config(), m, data);
    ADD_FAILURE() << "a run needing more than 1 MiB started";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("needs about"), std::string::npos) << msg;
    EXPECT_NE(msg.find("only 1 MiB are available"), std::string::npos) << msg;
    EXPECT_NE(msg.find("micro_batch"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(fs::path(config().out_dir) / "checkpoint.bin"));
  ::setenv("PRICER_AVAILABLE_MEMORY", "64G", 1);
  EXPECT_NO_THROW(train(config(), m, data));
  ::unsetenv("PRICER_AVAILABLE_MEMORY");
}

// ---------------------------------------------------------------------------------------------
// YAML config: keys as the options, unknown keys and bad values named with the file and line;
// options given on the command line win over the file.

TEST_F(TrainLoop, YamlConfigWithCommandLineOverrides) {
  const std::string yaml = dir_ / "train.yaml";
  write_file_atomic(yaml,
                    "# recipe\nlr: 0.0002\nlora_r: 16\nalpha: 32\nschedule: linear\nbatch_size: 8\n"
                    "targets: all\nrslora: true\nmax_steps: 40\n");
  TrainConfig c;
  c.apply_yaml_file(yaml);
  EXPECT_FLOAT_EQ(c.lr, 2e-4f);
  EXPECT_EQ(c.rank, 16);
  EXPECT_FLOAT_EQ(c.alpha, 32.0f);
  EXPECT_EQ(c.schedule, "linear");
  EXPECT_EQ(c.batch_size, 8);
  EXPECT_EQ(c.targets, "all");
  EXPECT_TRUE(c.rslora);
  EXPECT_EQ(c.micro_batch, 0) << "keys not in the file keep their defaults";
  EXPECT_EQ(c.micro(), 8) << "the batch of 8 in one pass";

  CLI::App app;
  cli::TrainOptionSet set(app, TrainCommand::train, TrainConfig{});
  app.parse("--max-steps 5 --lr 0.001 --config " + yaml, false);
  const TrainConfig r = set.resolve();
  EXPECT_FLOAT_EQ(r.lr, 1e-3f) << "the command line overrides the file";
  EXPECT_EQ(r.max_steps, 5);
  EXPECT_EQ(r.rank, 16) << "the file overrides the defaults";
  EXPECT_EQ(r.schedule, "linear");
  EXPECT_FLOAT_EQ(r.weight_decay, 0.001f) << "neither: the default";

  auto expect_error = [&](const std::string& text, const std::vector<std::string>& parts) {
    write_file_atomic(yaml, text);
    TrainConfig t;
    try {
      t.apply_yaml_file(yaml);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
      for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  };
  expect_error("lr: 0.001\nlearnig_rate: 0.1\n", {yaml, "unknown key 'learnig_rate'", "line 2", "(keys: model, "});
  expect_error("lr: 0.001\nbatch_sise: 8\n", {"did you mean 'batch_size'?"});
  expect_error("lr: 0.001\nlr: 0.1\n", {yaml, "'lr' at line 2 is given twice"});
  // The keys are the long options: data and out as --data and --out.
  write_file_atomic(yaml, "data: d.jsonl\nout: runs/x\ndropout: 0.1\n");
  TrainConfig aliases;
  aliases.apply_yaml_file(yaml);
  EXPECT_EQ(aliases.dataset, "d.jsonl");
  EXPECT_EQ(aliases.out_dir, "runs/x");
  EXPECT_EQ(aliases.to_json()["dropout"].dump(), "0.1") << "settings read as given, not as float noise";
  // Settings that cannot be meant are refused.
  auto refused = [](const std::function<void(TrainConfig&)>& set, const std::string& part) {
    TrainConfig t;
    set(t);
    try {
      t.validate();
      ADD_FAILURE() << "accepted: " << part;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  refused([](TrainConfig& t) { t.batch_size = 4, t.micro_batch = 8; }, "micro_batch (8) cannot exceed batch_size (4)");
  refused([](TrainConfig& t) { t.max_steps = -1; }, "max_steps cannot be negative");
  refused([](TrainConfig& t) { t.weight_decay = -0.1f; }, "weight_decay");
  refused([](TrainConfig& t) { t.max_grad_norm = -1; }, "max_grad_norm");
  expect_error("rank: sixteen\n", {yaml, "'rank'", "line 1"});
  expect_error("- lr\n- rank\n", {yaml, "mapping"});
  expect_error("lr: [0.1\n", {yaml});
}

// The settings table is the one declaration: every setting is an option of the commands it
// applies to, a YAML key and a recorded value (or, for an invocation's controls, neither), and a
// value set through any front end reads back the same through the others.

// A value for `s` other than its default, by type.
nlohmann::json changed_value(const TrainConfig& d, const TrainSetting& s) {
  const nlohmann::json v = setting_value(d, s);
  switch (s.type()) {
    case SettingType::text: return v.get<std::string>() + "x";
    case SettingType::integer: return v.get<int64_t>() + 3;
    case SettingType::real: return v.get<double>() * 2 + 0.5;
    case SettingType::boolean: return !v.get<bool>();
  }
  return v;
}

TEST(TrainSettings, EachSettingIsAnOptionAKeyAndARecordAlike) {
  const TrainConfig defaults;
  TrainConfig direct;
  std::string yaml;
  std::vector<std::string> args;
  for (const TrainSetting& s : train_settings()) {
    const nlohmann::json v = changed_value(defaults, s);
    set_setting(direct, s, v);
    EXPECT_EQ(setting_value(direct, s), v) << s.name;
    std::string option = "--" + std::string(s.name);
    std::replace(option.begin(), option.end(), '_', '-');
    args.push_back(option);
    if (s.type() != SettingType::boolean) args.push_back(v.is_string() ? v.get<std::string>() : v.dump());
    if (s.recorded) yaml += std::string(s.name) + ": " + v.dump() + "\n";
    EXPECT_EQ(defaults.to_json().contains(std::string(s.name)), s.recorded) << s.name;
  }
  EXPECT_EQ(defaults.to_json().size(),
            static_cast<size_t>(std::count_if(train_settings().begin(), train_settings().end(),
                                              [](const TrainSetting& s) { return s.recorded; })))
      << "nothing recorded outside the table";

  CLI::App app;
  cli::TrainOptionSet set(app, TrainCommand::train, defaults);
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 parses a vector from the back
  app.parse(reversed);
  const TrainConfig from_cli = set.resolve();
  TrainConfig from_yaml;
  from_yaml.apply_yaml(YAML::Load(yaml), "settings.yaml");
  EXPECT_EQ(from_cli.to_json(), direct.to_json());
  EXPECT_EQ(from_yaml.to_json(), direct.to_json());
  for (const TrainSetting& s : train_settings())
    EXPECT_EQ(setting_value(from_cli, s), setting_value(direct, s)) << s.name;

  // Pretraining has the loop's settings, not the base's or the adapters'.
  CLI::App pre;
  cli::TrainOptionSet pre_set(pre, TrainCommand::pretrain, defaults);
  for (const TrainSetting& s : train_settings()) {
    const std::string option = s.option_names().substr(0, s.option_names().find(','));
    bool has = true;
    try {
      pre.get_option(option);
    } catch (const CLI::OptionNotFound&) {
      has = false;
    }
    EXPECT_EQ(has, !s.fine_tuning_only) << option;
  }
  TrainConfig p;
  try {
    p.apply_yaml(YAML::Load("lr: 0.01\nrank: 8\n"), "pre.yaml", TrainCommand::pretrain);
    ADD_FAILURE() << "pretraining took an adapter setting";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pre.yaml: unknown key 'rank' at line 2 (a fine-tuning setting)"),
              std::string::npos)
        << e.what();
  }
  try {
    p.apply_yaml(YAML::Load("resume: true\n"), "pre.yaml", TrainCommand::pretrain);
    ADD_FAILURE() << "a file resumed a run";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a command-line option only"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Evaluation every N steps with best and last adapters; early stopping when the validation
// metric stops improving.

TEST_F(TrainLoop, EvalEveryNStepsKeepsBestAndLast) {
  const auto tr = examples(0, 16);
  const auto val = examples(100, 6);
  TrainConfig c = config();
  c.eval_every = 2;
  c.eval_items = 0;
  c.epochs = 2;
  c.lr = 3e-2f;
  LlamaModel m = lora_model();
  std::map<int64_t, std::map<std::string, std::vector<float>>> at;
  TrainHooks hooks;
  hooks.after_step = [&](int64_t step) { at[step] = adapter_tensors(m); };
  hooks.save_output = [](const LlamaModel& model, const std::string& dir) { save_peft_adapter(model, dir, "tiny"); };
  const TrainSummary s = train(c, m, tr, val, hooks);
  ASSERT_EQ(s.steps, 8);
  const auto evals = metric(s.run_id, "eval/loss");
  std::vector<int64_t> steps;
  for (const auto& p : evals) steps.push_back(p.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{0, 2, 4, 6, 8}));
  EXPECT_EQ(metric(s.run_id, "eval/mae").size(), evals.size()) << "price MAE read at every evaluation";
  EXPECT_LT(s.last_eval_loss, s.first_eval_loss);
  // best/ holds the adapter of the step with the lowest eval loss; last/ the final one.
  size_t best = 0;
  for (size_t i = 1; i < evals.size(); ++i)
    if (evals[i].value < evals[best].value) best = i;
  EXPECT_DOUBLE_EQ(s.best_eval_loss, evals[best].value);
  ASSERT_GT(evals[best].step, 0);
  LlamaModel loaded = LlamaModel::random(tiny_config(tiny_tokenizer().vocab_size()), 1, 0.1f);
  load_adapter(loaded, (fs::path(c.out_dir) / "best").string());
  EXPECT_EQ(adapter_tensors(loaded), at.at(evals[best].step));
  EXPECT_TRUE(fs::exists(fs::path(c.out_dir) / "last" / "adapter_model.safetensors"));
  load_adapter(loaded, (fs::path(c.out_dir) / "last").string());
  EXPECT_EQ(adapter_tensors(loaded), adapter_tensors(m));
  monitor::RunDb db(dir_ / "runs.db", monitor::RunDb::Mode::existing);
  std::set<std::string> kinds;
  for (const auto& a : db.artifacts(s.run_id)) kinds.insert(a.kind);
  EXPECT_EQ(kinds, (std::set<std::string>{"best", "last"}));
}

TEST_F(TrainLoop, EarlyStoppingWhenValidationStopsImproving) {
  // The validation split asks the opposite of what training teaches, so it soon gets worse.
  auto tr = examples(0, 16);
  auto val = examples(0, 8);
  const std::vector<int32_t> one = tiny_tokenizer().encode("1"), two = tiny_tokenizer().encode("2");
  ASSERT_EQ(one.size(), 1u);
  ASSERT_EQ(two.size(), 1u);
  for (auto& e : tr) {
    e.tokens.resize(e.prompt_len);
    e.tokens.push_back(one[0]);
  }
  for (auto& e : val) {
    e.tokens.resize(e.prompt_len);
    e.tokens.push_back(two[0]);
  }
  TrainConfig c = config();
  c.eval_every = 1;
  c.early_stopping = 2;
  c.epochs = 3;
  c.lr = 5e-2f;
  LlamaModel m = lora_model();
  testing::internal::CaptureStderr();
  c.progress = true;
  const TrainSummary s = train(c, m, tr, val);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(s.early_stopped);
  EXPECT_LT(s.steps, 12);
  EXPECT_EQ(s.stop_message, "early stopped at step " + std::to_string(s.steps) + ": 2 evaluations without improvement");
  EXPECT_NE(err.find(s.stop_message), std::string::npos) << err;
  {
    monitor::RunDb db(dir_ / "runs.db", monitor::RunDb::Mode::existing);
    const auto run = db.get_run(s.run_id);
    EXPECT_EQ(run.status, monitor::RunStatus::finished);
    EXPECT_EQ(run.message, s.stop_message) << "the run says why it ended early";
  }
  // Replaying the rule on the logged evaluations: the run stops at the first evaluation that is
  // the second in a row without a new best, and is evaluated once there.
  const auto evals = metric(s.run_id, "eval/loss");
  ASSERT_EQ(evals.size(), static_cast<size_t>(s.steps + 1));
  double best = INFINITY;
  int64_t worse = 0, stop_at = -1;
  for (const auto& p : evals) {
    if (p.value < best) {
      best = p.value;
      worse = 0;
    } else if (++worse == 2 && stop_at < 0) {
      stop_at = p.step;
    }
  }
  EXPECT_EQ(stop_at, s.steps);
  EXPECT_DOUBLE_EQ(s.best_eval_loss, best);
  EXPECT_GT(s.last_eval_loss, s.best_eval_loss);
}

// A hook sees every evaluation with the best values so far and can stop the run there, cleanly.
TEST_F(TrainLoop, EvalHookSeesEachEvaluationAndCanStopTheRun) {
  const auto tr = examples(0, 16);
  const auto val = examples(100, 6);
  TrainConfig c = config();
  c.eval_every = 2;
  c.epochs = 3;
  c.lr = 3e-2f;
  LlamaModel m = lora_model();
  int64_t started = 0;
  std::vector<EvalReport> seen;
  TrainHooks hooks;
  hooks.save_output = [](const LlamaModel& model, const std::string& dir) { save_peft_adapter(model, dir, "tiny"); };
  hooks.on_start = [&](int64_t id) { started = id; };
  hooks.on_eval = [&](const EvalReport& r) -> std::string {
    seen.push_back(r);
    return r.step == 6 ? "stopped by the test at step 6" : "";
  };
  const TrainSummary s = train(c, m, tr, val, hooks);
  EXPECT_EQ(started, s.run_id);
  EXPECT_EQ(s.steps, 6) << "12 steps planned";
  EXPECT_FALSE(s.early_stopped);
  EXPECT_EQ(s.stop_message, "stopped by the test at step 6");
  const auto evals = metric(s.run_id, "eval/loss");
  ASSERT_EQ(seen.size(), evals.size()) << "no second evaluation at the step it stopped";
  double best = INFINITY;
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].step, evals[i].step);
    EXPECT_DOUBLE_EQ(seen[i].result.loss, evals[i].value);
    best = std::min(best, evals[i].value);
    EXPECT_DOUBLE_EQ(seen[i].best_loss, best);
    EXPECT_GE(seen[i].best_mae, 0.0);
    EXPECT_FALSE(seen[i].final_eval);
  }
  monitor::RunDb db(dir_ / "runs.db", monitor::RunDb::Mode::existing);
  const auto run = db.get_run(s.run_id);
  EXPECT_EQ(run.status, monitor::RunStatus::finished);
  EXPECT_EQ(run.message, s.stop_message);
  EXPECT_EQ(checkpoint_state((fs::path(c.out_dir) / "checkpoint.bin").string()).at("step"), 6);
  LlamaModel loaded = LlamaModel::random(tiny_config(tiny_tokenizer().vocab_size()), 1, 0.1f);
  load_adapter(loaded, (fs::path(c.out_dir) / "last").string());
  EXPECT_EQ(adapter_tensors(loaded), adapter_tensors(m));

  // A run that goes to its end: the final evaluation is marked so, and its answer is moot.
  seen.clear();
  hooks.on_eval = [&](const EvalReport& r) -> std::string {
    seen.push_back(r);
    return r.final_eval ? "too late to stop" : "";
  };
  TrainConfig full = config("full");
  full.eval_every = 5;
  full.epochs = 2;
  LlamaModel m2 = lora_model();
  const TrainSummary s2 = train(full, m2, tr, val, hooks);
  EXPECT_EQ(s2.steps, 8);
  EXPECT_TRUE(s2.stop_message.empty());
  ASSERT_EQ(seen.size(), 3u) << "steps 0, 5 and the final 8";
  EXPECT_TRUE(seen.back().final_eval);
  EXPECT_EQ(seen.back().step, 8);

  // A stop at the untrained baseline trains nothing.
  hooks.on_eval = [](const EvalReport& r) -> std::string { return r.step == 0 ? "nothing to do" : ""; };
  LlamaModel m3 = lora_model();
  const auto before = adapter_tensors(m3);
  TrainConfig none = config("none");
  none.eval_every = 4;
  const TrainSummary s3 = train(none, m3, tr, val, hooks);
  EXPECT_EQ(s3.steps, 0);
  EXPECT_EQ(s3.stop_message, "nothing to do");
  EXPECT_EQ(adapter_tensors(m3), before);
}

// ---------------------------------------------------------------------------------------------
// Batches grouped by length: every example once an epoch, a new order each epoch, little padding.

TEST_F(TrainLoop, PriceSmoothingSpreadsThePriceTokensLabelOverNearbyPrices) {
  const auto data = examples(0, 12);
  const PriceDistribution pd(tiny_tokenizer());
  const NumberTokens numbers{pd.ids(), pd.values()};
  auto value_of = [&](int32_t id) {
    const auto it = std::find(numbers.ids.begin(), numbers.ids.end(), id);
    return it == numbers.ids.end() ? -1 : numbers.values[it - numbers.ids.begin()];
  };
  const std::vector<int64_t> idx = {3, 0, 7, 11};
  Batch b = batch_of(data, idx);
  add_price_smoothing(b, data, idx, numbers, 0.1);
  b.validate(tiny_tokenizer().vocab_size(), 1 << 20, "smoothed batch");  // rows masked, distributions
  ASSERT_EQ(b.soft_targets.size(), idx.size()) << "every example's price token gets a spread label";
  for (size_t s = 0; s < idx.size(); ++s) {
    const SoftTarget& st = b.soft_targets[s];
    const int truth = value_of(b.targets[st.position]);
    ASSERT_GE(truth, 0) << "the smoothed position predicts the price token";
    EXPECT_EQ(st.position, b.cu_seqlens[s] + data[idx[s]].prompt_len - 1);
    // The peak is the true price; weight falls with the distance in log price, both ways.
    const size_t peak = std::max_element(st.probs.begin(), st.probs.end()) - st.probs.begin();
    EXPECT_EQ(value_of(st.ids[peak]), truth);
    for (size_t k = 0; k < st.ids.size(); ++k)
      for (size_t l = 0; l < st.ids.size(); ++l) {
        const double dk = std::abs(std::log1p(value_of(st.ids[k])) - std::log1p(truth));
        const double dl = std::abs(std::log1p(value_of(st.ids[l])) - std::log1p(truth));
        if (dk + 1e-9 < dl) {
          EXPECT_GT(st.probs[k], st.probs[l]);
        }
      }
    EXPECT_GT(st.ids.size(), 1u);
  }
  // A wider Gaussian shares more of the credit.
  Batch wide = batch_of(data, idx);
  add_price_smoothing(wide, data, idx, numbers, 0.5);
  EXPECT_GT(wide.soft_targets[0].ids.size(), b.soft_targets[0].ids.size());
  EXPECT_THROW(add_price_smoothing(wide, data, idx, numbers, 0.0), Error);

  // In training it changes what is learned, and is recorded with the run.
  TrainConfig c = config("smooth");
  c.max_steps = 3;
  c.price_smoothing = 0.1f;
  LlamaModel smooth = lora_model(), plain = lora_model();
  const TrainSummary ss = train(c, smooth, data);
  EXPECT_TRUE(std::isfinite(ss.last_train_loss));
  c.price_smoothing = 0;
  c.out_dir = dir_ / "plain";
  train(c, plain, data);
  EXPECT_NE(smooth.lora(0, Proj::Q)->B, plain.lora(0, Proj::Q)->B);
  monitor::RunDb db(dir_ / "runs.db", monitor::RunDb::Mode::existing);
  EXPECT_FLOAT_EQ(db.params(ss.run_id)["price_smoothing"].get<float>(), 0.1f);
}

TEST(TrainBatches, GroupedByLengthShuffledAndComplete) {
  std::vector<PricedExample> data(2000);
  uint64_t x = 12345;
  for (auto& e : data) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    e.tokens.assign(4 + (x >> 33) % 120, 1);
    e.prompt_len = 2;
  }
  auto padding = [&](const std::vector<std::vector<int64_t>>& batches) {
    double pad = 0;
    for (const auto& b : batches) {
      size_t longest = 0;
      for (int64_t i : b) longest = std::max(longest, data[i].tokens.size());
      for (int64_t i : b) pad += static_cast<double>(longest - data[i].tokens.size());
    }
    return pad;
  };
  const auto e0 = epoch_batches(data, 16, 42, 0), e1 = epoch_batches(data, 16, 42, 1);
  EXPECT_EQ(e0, epoch_batches(data, 16, 42, 0)) << "a pure function of (seed, epoch)";
  EXPECT_NE(e0, e1);
  EXPECT_NE(e0, epoch_batches(data, 16, 43, 0));
  for (const auto* ep : {&e0, &e1}) {
    std::vector<int> seen(data.size());
    for (const auto& b : *ep) {
      EXPECT_LE(b.size(), 16u);
      for (int64_t i : b) ++seen[i];
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), static_cast<long>(data.size()));
    EXPECT_EQ(ep->size(), 125u);
  }
  // Ungrouped: consecutive runs of 16 from a plain shuffle.
  std::vector<std::vector<int64_t>> plain;
  for (size_t i = 0; i < data.size(); i += 16) {
    plain.emplace_back();
    for (size_t j = i; j < i + 16; ++j) plain.back().push_back(static_cast<int64_t>((j * 7919) % data.size()));
  }
  EXPECT_LT(padding(e0), 0.1 * padding(plain));
  // Batch order is shuffled too: not sorted by length across the epoch.
  std::vector<size_t> first_len;
  for (const auto& b : e0) first_len.push_back(data[b[0]].tokens.size());
  EXPECT_FALSE(std::is_sorted(first_len.begin(), first_len.end()));
}

}  // namespace
}  // namespace pricer
