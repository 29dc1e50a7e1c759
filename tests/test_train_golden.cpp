// One training step through the real loop (run_training: micro-batches, clipping, schedule,
// optimizer) from a PEFT adapter made elsewhere, against tools/golden/make_train_golden.py, an
// independent PyTorch implementation (torch's clip_grad_norm_, SGD, AdamW, LambdaLR). The adapter
// after the step(s), the loss and the gradient norm must agree to 1e-4 relative.
#include <gtest/gtest.h>

#include <cmath>

#include "golden_util.h"
#include "monitor/run_db.h"
#include "train/adapter_io.h"
#include "train/trainer.h"
#include "train_test_util.h"

namespace pricer {
namespace {

using namespace train_test;

using namespace golden;

// The base with a context of 64, as the training examples need.
LlamaModel golden_model(const Golden& g) {
  ModelConfig cfg = config_of(g.manifest["config"]);
  cfg.max_seq_len = 64;
  return base_model(g, cfg);
}

std::string peft_module(const std::string& key) {  // "0.q_proj" -> "model.layers.0.self_attn.q_proj"
  const size_t dot = key.find('.');
  const std::string proj = key.substr(dot + 1, key.rfind('.') - dot - 1);
  const bool attn = proj == "q_proj" || proj == "k_proj" || proj == "v_proj" || proj == "o_proj";
  return "model.layers." + key.substr(0, dot) + (attn ? ".self_attn." : ".mlp.") + proj;
}

struct Case {
  std::string run;
  int64_t micro_batch;
};

class TrainGolden : public ::testing::TestWithParam<Case> {};

TEST_P(TrainGolden, StepsFromAPeftAdapterMatchPyTorch) {
  const Golden g("train_step");
  const auto& spec = g.manifest["runs"][GetParam().run];
  ScratchDir dir;
  LlamaModel m = golden_model(g);
  load_adapter(m, kDir + "train_step_adapter");
  ASSERT_EQ(m.lora_config().rank, 4);
  ASSERT_FLOAT_EQ(m.lora_config().scale(), g.manifest["lora"]["scale"].get<float>());
  const auto init = adapter_tensors(m);

  std::vector<PricedExample> data;
  for (const auto& e : g.manifest["examples"])
    data.push_back({e["tokens"].get<std::vector<int32_t>>(), e["prompt_len"].get<int64_t>(), NAN});
  TrainConfig c;
  c.dataset = "golden";
  c.out_dir = dir / "out";
  c.runs_db = dir / "runs.db";
  c.progress = false;
  c.optimizer = spec["optimizer"];
  c.lr = spec["lr"];
  c.schedule = spec["schedule"];
  c.warmup_ratio = 0;
  c.weight_decay = spec["weight_decay"];
  c.max_grad_norm = spec["max_grad_norm"];
  c.epochs = spec["steps"];  // the whole batch once an epoch
  c.batch_size = static_cast<int64_t>(data.size());
  c.micro_batch = GetParam().micro_batch;
  c.max_length = 64;
  c.eval_every = 0;
  c.save_every = 0;
  TrainHooks hooks;
  hooks.save_output = [](const LlamaModel& model, const std::string& d) { save_peft_adapter(model, d, "golden"); };
  const TrainSummary s = run_training(c, m, tiny_tokenizer(), data, {}, false, hooks, "golden");
  ASSERT_EQ(s.steps, spec["steps"].get<int64_t>());

  const auto after = adapter_tensors(m);
  for (const auto& [key, v] : after) {
    const std::string name =
        GetParam().run + "." + peft_module(key) + ".lora_" + key.substr(key.size() - 1) + ".weight";
    const std::vector<float> want = g.get<float>(name);
    const std::vector<float>& start = init.at(key);
    ASSERT_EQ(v.size(), want.size()) << name;
    double diff = 0, moved = 0;
    for (size_t i = 0; i < v.size(); ++i) {
      diff = std::max(diff, std::abs(double(v[i]) - want[i]));
      moved = std::max(moved, std::abs(double(want[i]) - start[i]));
    }
    EXPECT_GT(moved, 1e-4) << name << ": the step must move the tensor";
    EXPECT_LE(diff, 1e-4 * moved) << name << " (relative to the size of the update)";
  }
  // The saved adapter is the trained one.
  LlamaModel reloaded = golden_model(g);
  load_adapter(reloaded, dir / "out/last");
  EXPECT_EQ(adapter_tensors(reloaded), after);

  monitor::RunDb db(dir / "runs.db", monitor::RunDb::Mode::existing);
  const auto losses = db.metric_series(s.run_id, "train/loss");
  const auto norms = db.metric_series(s.run_id, "train/grad_norm");
  ASSERT_EQ(losses.size(), spec["losses"].size());
  for (size_t i = 0; i < losses.size(); ++i) {
    const double want_loss = spec["losses"][i], want_norm = spec["grad_norms"][i];
    EXPECT_NEAR(losses[i].value, want_loss, 1e-4 * want_loss) << "step " << i + 1;
    EXPECT_NEAR(norms[i].value, want_norm, 1e-4 * want_norm) << "step " << i + 1;
    EXPECT_GT(want_norm, c.max_grad_norm) << "the golden exercises clipping";
  }
}

// Micro-batch 1 accumulates three sequences of different lengths: the same step as one batch.
INSTANTIATE_TEST_SUITE_P(Runs, TrainGolden,
                         ::testing::Values(Case{"sgd", 3}, Case{"sgd", 1}, Case{"adamw", 3}, Case{"adamw", 1}),
                         [](const auto& info) {
                           return info.param.run + "_micro" + std::to_string(info.param.micro_batch);
                         });

}  // namespace
}  // namespace pricer
