// Learning is real: a tiny Llama is pretrained in-test (every parameter, on product text with a
// BPE tokenizer trained in-test), then fine-tuned with QLoRA on an NF4 copy of it on a price task
// the title decides: a price per brand tier times the pack count the title shows. Validation loss
// and the price MAE read from the next-token distribution must fall well below the untuned
// model's, and the MAE below the best constant guess's, so the adapter learned the rule and not
// only which numbers prices are.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "core/random.h"
#include "data/text.h"
#include "predict/validation_prices.h"
#include "train/trainer.h"
#include "train_test_util.h"

namespace pricer {
namespace {

using namespace train_test;

// Dollars per brand (the synthetic catalog's five tiers, budget to luxury).
double tier_price(const std::string& title) {
  static const std::map<std::string, double> by_brand = {
      {"Basix", 25},   {"Valuo", 25},    {"Homely", 40}, {"Trekka", 40},       {"Norvant", 50},
      {"Kestrel", 50}, {"Aurelian", 80}, {"Veltra", 80}, {"Maison Orla", 130}, {"Stratos Pro", 130}};
  for (const auto& [brand, dollars] : by_brand)
    if (title.find(brand) != std::string::npos) return dollars;
  ADD_FAILURE() << "no known brand in " << title;
  return 0;
}

// "Pack of N" in the title, else a single unit.
int pack_count(const std::string& title) {
  const auto at = title.find("Pack of ");
  return at == std::string::npos ? 1 : title[at + 8] - '0';
}

std::vector<PricedExample> price_examples(const Tokenizer& tok, uint64_t first, uint64_t n) {
  std::vector<PricedExample> out;
  for (const auto& p : price_prompts(21, first, n)) {
    const double price = tier_price(p.prompt) * pack_count(p.prompt);
    PricedExample e;
    e.tokens.push_back(tok.bos_id());
    for (int32_t id : tok.encode(p.prompt)) e.tokens.push_back(id);
    e.prompt_len = static_cast<int64_t>(e.tokens.size());
    for (int32_t id : tok.encode(std::to_string(static_cast<long>(price)) + ".00")) e.tokens.push_back(id);
    e.price = price;
    out.push_back(std::move(e));
  }
  return out;
}

// Pretraining text: a product's title and details (weights, sizes, ratings, sales ranks, dates),
// without its price. Loss on every token after BOS. The round-number ratings matter: a frozen head
// can only put mass on number tokens whose embeddings pretraining shaped, and real product text is
// full of round numbers.
std::vector<PricedExample> text_examples(const Tokenizer& tok, uint64_t first, uint64_t n) {
  std::vector<PricedExample> out;
  for (uint64_t i = first; i < first + n; ++i) {
    const auto j = nlohmann::json::parse(data::synthetic_item(21, i, false).line);
    const auto& d = j["details"];
    const uint64_t h = mix64(i + 777);
    const int watts = 5 * (1 + static_cast<int>(h % 30)), ml = 10 * (1 + static_cast<int>((h >> 16) % 60)),
              grams = 5 * (1 + static_cast<int>((h >> 32) % 120));
    std::string text = j["title"].get<std::string>() + "\nWeight " + d["Item Weight"].get<std::string>() + ", " +
                       d["Product Dimensions"].get<std::string>() + "\nRated " + std::to_string(watts) + " W, " +
                       std::to_string(ml) + " ml, " + std::to_string(grams) + " g, rank " +
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
  const auto train = price_examples(tok, 0, 768), val = price_examples(tok, 50000, 256);

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
  pc.max_steps = 100;
  pc.epochs = 10;  // max_steps decides
  pc.eval_every = 50;
  pc.eval_items = 64;
  const TrainSummary ps =
      run_training(pc, pre, tok, text_examples(tok, 0, 768), text_examples(tok, 50000, 64), true, {}, "test");
  EXPECT_LT(ps.last_eval_loss, 0.7 * ps.first_eval_loss) << "pretraining lowers the text loss";

  // 2. QLoRA: the pretrained weights frozen in NF4, adapters on every projection.
  LlamaModel ft = LlamaModel::from_weights(pre.config(), export_tensors(pre, false), "pretrained");
  ft.convert_base(DType::NF4);
  LoraConfig lc;
  lc.rank = 16;
  lc.alpha = 32;
  lc.dropout = 0.0f;
  lc.targets = parse_lora_targets("all");
  ft.add_lora(lc, 4);
  auto be = make_cpu_backend(dtype_from_name(TrainConfig{}.compute_dtype));  // as the trainer's
  const EvalResult untuned = evaluate(ft, *be, val, 0, 32, validation_price_scorer(tok));
  ASSERT_GT(untuned.prices.mae, 0);

  TrainConfig fc = pc;
  fc.out_dir = dir / "finetune";
  fc.dataset = "synthetic prices";
  fc.lr = 1e-2f;
  fc.weight_decay = 0.001f;
  fc.max_grad_norm = 1.0f;
  fc.epochs = 40;  // max_steps decides
  fc.max_steps = 360;
  fc.eval_every = 120;
  fc.eval_items = 0;
  const TrainSummary fs_ = run_training(fc, ft, tok, train, val, false, with_price_scores({}, tok), "test");
  EXPECT_DOUBLE_EQ(fs_.first_eval_loss, untuned.loss) << "the first evaluation is the untuned model";
  const EvalResult tuned = evaluate(ft, *be, val, 0, 32, validation_price_scorer(tok));
  RecordProperty("untuned_loss", std::to_string(untuned.loss));
  RecordProperty("tuned_loss", std::to_string(tuned.loss));
  RecordProperty("untuned_mae", std::to_string(untuned.prices.mae));
  RecordProperty("tuned_mae", std::to_string(tuned.prices.mae));
  RecordProperty("untuned_mae_mean", std::to_string(untuned.prices.mae_mean));
  RecordProperty("tuned_mae_mean", std::to_string(tuned.prices.mae_mean));
  // The best constant guess for absolute error: the median training price.
  std::vector<double> prices;
  for (const auto& e : train) prices.push_back(e.price);
  std::nth_element(prices.begin(), prices.begin() + prices.size() / 2, prices.end());
  double constant_mae = 0;
  for (const auto& e : val) constant_mae += std::abs(e.price - prices[prices.size() / 2]);
  constant_mae /= static_cast<double>(val.size());
  RecordProperty("constant_mae", std::to_string(constant_mae));
  // Measured: loss about 0.1x the untuned model's, MAE 0.2-0.45x over nearby seeds and corpora.
  // A 64-wide frozen head bounds how sharply an adapter can point at one number token, so the
  // MAE stays well above zero; it still beats the best constant guess, which knowing only the
  // price distribution cannot.
  EXPECT_LT(tuned.loss, 0.25 * untuned.loss) << "untuned " << untuned.loss;
  EXPECT_LT(tuned.prices.mae, 0.6 * untuned.prices.mae) << "untuned " << untuned.prices.mae;
  EXPECT_LT(tuned.prices.mae_mean, 0.6 * untuned.prices.mae_mean) << "untuned " << untuned.prices.mae_mean;
  EXPECT_LT(tuned.prices.mae, 0.9 * constant_mae) << "a constant guess " << constant_mae;
  EXPECT_DOUBLE_EQ(fs_.last_eval_loss, tuned.loss);
}

}  // namespace
}  // namespace pricer
