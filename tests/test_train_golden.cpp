// One training step through the real loop (run_training: micro-batches, clipping, schedule,
// optimizer) from a PEFT adapter made elsewhere, against tools/golden/make_train_golden.py, an
// independent PyTorch implementation (torch's clip_grad_norm_, SGD, AdamW, LambdaLR). The adapter
// after the step(s), the loss and the gradient norm must agree to 1e-4 relative.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "monitor/run_db.h"
#include "train/adapter_io.h"
#include "train/trainer.h"
#include "train_test_util.h"

namespace pricer {
namespace {

using namespace train_test;

const std::string kGolden = std::string(PRICER_SOURCE_DIR) + "/tests/data/golden/";

struct Golden {
  nlohmann::json manifest;
  std::string blob;
  Golden() {
    std::ifstream js(kGolden + "train_step.json");
    if (!js) throw Error("cannot open " + kGolden + "train_step.json");
    manifest = nlohmann::json::parse(js);
    blob = read_file(kGolden + "train_step.bin", 1 << 24);
  }
  std::vector<float> get(const std::string& name) const {
    const auto& t = manifest["tensors"].at(name);
    int64_t n = 1;
    for (int64_t d : t.at("shape").get<std::vector<int64_t>>()) n *= d;
    const size_t off = t.at("offset").get<size_t>();
    if (off + n * 4 > blob.size()) throw Error("golden tensor " + name + " past the end");
    std::vector<float> v(n);
    std::memcpy(v.data(), blob.data() + off, n * 4);
    return v;
  }
};

LlamaModel golden_model(const Golden& g) {
  const auto& c = g.manifest["config"];
  ModelConfig cfg;
  cfg.vocab_size = c["vocab_size"];
  cfg.dim = c["dim"];
  cfg.n_layers = c["n_layers"];
  cfg.n_heads = c["n_heads"];
  cfg.n_kv_heads = c["n_kv_heads"];
  cfg.head_dim = c["head_dim"];
  cfg.ffn_dim = c["ffn_dim"];
  cfg.rms_eps = c["rms_eps"];
  cfg.rope_theta = c["rope_theta"];
  cfg.tied_embeddings = c["tied_embeddings"];
  cfg.max_seq_len = 64;
  std::map<std::string, Weight> w;
  for (const auto& [name, info] : g.manifest["tensors"].items()) {
    if (!name.starts_with("model.")) continue;
    const auto shape = info["shape"].get<std::vector<int64_t>>();
    const auto v = g.get(name);
    w[name] = Weight::from_f32(v.data(), shape.size() == 2 ? shape[0] : 1, shape.back(), DType::F32);
  }
  return LlamaModel::from_weights(cfg, std::move(w), "golden");
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
  const Golden g;
  const auto& spec = g.manifest["runs"][GetParam().run];
  ScratchDir dir;
  LlamaModel m = golden_model(g);
  load_adapter(m, kGolden + "train_step_adapter");
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
    const std::string name = GetParam().run + "." + peft_module(key) + ".lora_" + key.substr(key.size() - 1) + ".weight";
    const std::vector<float> want = g.get(name);
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
                         [](const auto& info) { return info.param.run + "_micro" + std::to_string(info.param.micro_batch); });

}  // namespace
}  // namespace pricer
