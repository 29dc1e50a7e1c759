// Learning is real: a tiny Llama is pretrained in-test (every parameter, on product text with a
// BPE tokenizer trained in-test), then fine-tuned with QLoRA on an NF4 copy of it on the synthetic
// catalog's price task (the price follows a hidden rule of the title's brand, type, size and
// material). Validation loss must fall well below the untuned model's, and so must the price MAE
// read from the next-token distribution.
#include <gtest/gtest.h>

#include "train/trainer.h"
#include "train_test_util.h"

namespace pricer {
namespace {

using namespace train_test;

std::vector<PricedExample> price_examples(const Tokenizer& tok, uint64_t first, uint64_t n) {
  std::vector<PricedExample> out;
  for (const auto& p : price_prompts(21, first, n)) {
    PricedExample e;
    e.tokens.push_back(tok.bos_id());
    for (int32_t id : tok.encode(p.prompt)) e.tokens.push_back(id);
    e.prompt_len = static_cast<int64_t>(e.tokens.size());
    for (int32_t id : tok.encode(p.completion)) e.tokens.push_back(id);
    e.price = p.price;
    out.push_back(std::move(e));
  }
  return out;
}

// Pretraining text: a product's title and details (weights, sizes, sales ranks, dates: numbers in
// many contexts), without its price. Loss on every token after BOS.
std::vector<PricedExample> text_examples(const Tokenizer& tok, uint64_t first, uint64_t n) {
  std::vector<PricedExample> out;
  for (uint64_t i = first; i < first + n; ++i) {
    const auto j = nlohmann::json::parse(data::synthetic_item(21, i, false).line);
    const auto& d = j["details"];
    std::string text = j["title"].get<std::string>() + "\nWeight " + d["Item Weight"].get<std::string>() + ", " +
                       d["Product Dimensions"].get<std::string>() + ", rank " +
                       std::to_string(d["Best Sellers Rank"].begin()->get<int64_t>()) + " since " +
                       d["Date First Available"].get<std::string>();
    PricedExample t;
    t.tokens.push_back(tok.bos_id());
    for (int32_t id : tok.encode(text)) t.tokens.push_back(id);
    t.prompt_len = 1;
    t.price = NAN;
    out.push_back(std::move(t));
  }
  return out;
}

TEST(TrainLearning, PretrainThenQloraFineTuneLearnsThePriceTask) {
  ScratchDir dir;
  const Tokenizer& tok = tiny_tokenizer();  // train_bpe on synthetic product text
  const auto train = price_examples(tok, 0, 768), val = price_examples(tok, 50000, 64);

  // 1. Pretraining, all parameters, from random weights.
  LlamaModel pre = LlamaModel::random(tiny_config(tok.vocab_size()), 4, 0.1f);
  pre.enable_full_training();
  TrainConfig pc;
  pc.out_dir = dir / "pretrain";
  pc.runs_db = dir / "runs.db";
  pc.dataset = "synthetic text";
  pc.progress = false;
  pc.lr = 1e-2f;
  pc.warmup_ratio = 0.05;
  pc.weight_decay = 0.01f;
  pc.max_grad_norm = 1.0f;
  pc.batch_size = 32;
  pc.micro_batch = 32;
  pc.max_length = 96;
  pc.max_steps = 48;
  pc.epochs = 10;  // max_steps decides
  pc.eval_every = 48;
  pc.eval_items = 64;
  const TrainSummary ps = run_training(pc, pre, tok, text_examples(tok, 0, 768), text_examples(tok, 50000, 64), true, {}, "test");
  EXPECT_LT(ps.last_eval_loss, 0.7 * ps.first_eval_loss) << "pretraining lowers the text loss";

  // 2. QLoRA: the pretrained weights frozen in NF4, adapters on every projection.
  LlamaModel ft = LlamaModel::from_weights(pre.config(), export_tensors(pre, false), "pretrained");
  ft.convert_base(DType::NF4);
  LoraConfig lc;
  lc.rank = 8;
  lc.alpha = 16;
  lc.dropout = 0.0f;
  lc.targets = parse_lora_targets("all");
  ft.add_lora(lc, 4);
  auto be = make_cpu_backend(dtype_from_name(TrainConfig{}.compute_dtype));  // as the trainer's
  const EvalResult untuned = evaluate(ft, *be, val, &tok, 0, 32);
  ASSERT_GT(untuned.mae, 0);

  TrainConfig fc = pc;
  fc.out_dir = dir / "finetune";
  fc.dataset = "synthetic prices";
  fc.lr = 2e-2f;
  fc.weight_decay = 0.001f;
  fc.max_grad_norm = 1.0f;
  fc.max_steps = 120;
  fc.eval_every = 40;
  fc.eval_items = 0;
  const TrainSummary fs_ = run_training(fc, ft, tok, train, val, false, {}, "test");
  EXPECT_DOUBLE_EQ(fs_.first_eval_loss, untuned.loss) << "the first evaluation is the untuned model";
  const EvalResult tuned = evaluate(ft, *be, val, &tok, 0, 32);
  RecordProperty("untuned_loss", std::to_string(untuned.loss));
  RecordProperty("tuned_loss", std::to_string(tuned.loss));
  RecordProperty("untuned_mae", std::to_string(untuned.mae));
  RecordProperty("tuned_mae", std::to_string(tuned.mae));
  EXPECT_LT(tuned.loss, 0.5 * untuned.loss) << "untuned " << untuned.loss;
  // The frozen head of a model this small reads magnitudes off number tokens that pretraining
  // barely shaped, so the MAE falls less than the loss.
  EXPECT_LT(tuned.mae, 0.85 * untuned.mae) << "untuned " << untuned.mae;
  EXPECT_DOUBLE_EQ(fs_.last_eval_loss, tuned.loss);
}

}  // namespace
}  // namespace pricer
