// ModelPricer and `pricer predict` on a tiny model built here: the price read from the next-token
// distribution checked against a hand computation from the model's own logits, intervals,
// batching, adapters, greedy decoding, prompt shortening, calibration, and the CLI in every
// input form.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_test_util.h"
#include "core/error.h"
#include "data/text.h"
#include "io/gguf.h"
#include "io/model_file.h"
#include "predict/calibration.h"
#include "predict/model_average.h"
#include "predict/model_pricer.h"
#include "predict/price_text.h"
#include "tiny_pricer_model.h"
#include "train/trainer.h"

namespace pricer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// What the model says after `ids`, computed without ModelPricer: the logits of a KV-cache
// prefill, a softmax by hand, and the tokens that spell 0-999 found by hand.
struct HandEstimate {
  double expected = 0, mass = 0, lo = 0, hi = 0, top3 = 0;
  int32_t best_id = -1;
};

bool spells_number(const std::string& s) {
  if (s.empty() || s.size() > 3 || (s.size() > 1 && s[0] == '0')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

HandEstimate hand_estimate(LlamaModel& m, const Tokenizer& tok, const std::vector<int32_t>& ids, double coverage) {
  auto be = make_cpu_backend();
  KvCache cache = m.make_cache(static_cast<int64_t>(ids.size()));
  const std::vector<float> lg = m.prefill(cache, ids, *be);
  double mx = -1e300;
  for (float v : lg) mx = std::max(mx, static_cast<double>(v));
  double z = 0;
  for (float v : lg) z += std::exp(v - mx);
  std::vector<std::pair<int, double>> num;  // (value, prob)
  std::vector<std::pair<double, int32_t>> by_prob;
  HandEstimate h;
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    const std::string s = tok.token_bytes(id);
    if (!spells_number(s)) continue;
    const double p = std::exp(lg[id] - mx) / z;
    num.push_back({std::stoi(s), p});
    by_prob.push_back({p, id});
    h.mass += p;
  }
  for (auto& [v, p] : num) {
    p /= h.mass;
    h.expected += v * p;
  }
  std::sort(num.begin(), num.end());
  double cum = 0;
  bool lo_set = false, hi_set = false;
  for (const auto& [v, p] : num) {
    cum += p;
    if (!lo_set && cum >= (1 - coverage) / 2) h.lo = v, lo_set = true;
    if (!hi_set && cum >= (1 + coverage) / 2) h.hi = v, hi_set = true;
  }
  std::sort(by_prob.rbegin(), by_prob.rend());
  h.best_id = by_prob[0].second;
  double num3 = 0, den3 = 0;
  for (int k = 0; k < 3; ++k) {
    num3 += by_prob[k].first * std::stoi(tok.token_bytes(by_prob[k].second));
    den3 += by_prob[k].first;
  }
  h.top3 = num3 / den3;
  return h;
}

LlamaModel load_f32(const fs::path& path, const std::string& adapter = "") {
  ModelFile mf = load_model_file(path.string(), DType::F32);
  LlamaModel m = LlamaModel::from_weights(mf.config, std::move(mf.tensors), mf.source);
  if (!adapter.empty()) load_adapter(m, adapter);
  return m;
}

ModelPricerOptions f32_options(const tiny::World& w, bool with_adapter) {
  ModelPricerOptions o;
  o.model = w.base.string();
  if (with_adapter) o.adapter = w.adapter.string();
  o.base_dtype = "f32";
  return o;
}

std::vector<std::string> texts(int n, uint32_t seed) {
  std::vector<std::string> t;
  for (const auto& p : tiny::products(n, seed)) t.push_back(p.text);
  return t;
}

class Predict : public ::testing::Test {
 protected:
  void SetUp() override { w_ = tiny::make_world(tiny::temp_dir("predict")); }
  void TearDown() override { fs::remove_all(w_.dir); }
  tiny::World w_;
};

TEST_F(Predict, ExpectedValueAndIntervalMatchHandComputation) {
  ModelPricer mp(f32_options(w_, false));
  LlamaModel m = load_f32(w_.base);
  std::vector<std::string> prompts;
  for (const auto& t : texts(4, 3)) prompts.push_back(mp.prompt_for(t));
  const auto preds = mp.predict(prompts, PriceMode::Expected);
  ASSERT_EQ(preds.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    // The prompt is BOS + its tokens (short prompts are not cut).
    std::vector<int32_t> ids = {mp.tokenizer().bos_id()};
    for (int32_t id : mp.tokenizer().encode(prompts[i])) ids.push_back(id);
    ASSERT_EQ(mp.encode_prompt(prompts[i]), ids);
    const HandEstimate h = hand_estimate(m, mp.tokenizer(), ids, 0.8);
    const PricePrediction& p = preds[i];
    EXPECT_NEAR(p.price, h.expected, 1e-4 * h.expected) << i;
    EXPECT_NEAR(p.dist.number_mass, h.mass, 1e-5) << i;
    EXPECT_EQ(p.dist.lo, h.lo) << i;
    EXPECT_EQ(p.dist.hi, h.hi) << i;
    EXPECT_LE(p.dist.lo, p.dist.hi);
    ASSERT_EQ(p.dist.top.size(), 5u);
    EXPECT_EQ(p.dist.top[0].id, h.best_id);
    for (size_t k = 1; k < p.dist.top.size(); ++k) EXPECT_GE(p.dist.top[k - 1].prob, p.dist.top[k].prob);
  }
  // The course's top-3 average, on the same distribution.
  const auto top3 = mp.predict(prompts, PriceMode::Top3);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const HandEstimate h = hand_estimate(m, mp.tokenizer(), mp.encode_prompt(prompts[i]), 0.8);
    EXPECT_NEAR(top3[i].price, h.top3, 1e-4 * h.top3) << i;
  }
}

TEST_F(Predict, RawTextsAreCutToCurationsTokenBudgetBeforeTheTemplate) {
  // One setting on both sides: what curation keeps of a text, and what training and prediction
  // keep of a prompt.
  EXPECT_EQ(ModelPricerOptions{}.text_token_budget, data::CleanOptions{}.token_budget);
  EXPECT_EQ(ModelPricerOptions{}.max_prompt_tokens, TrainConfig{}.max_length);
  EXPECT_EQ(ModelPricerOptions{}.max_prompt_tokens, DatasetOptions{}.max_length);

  ModelPricerOptions o = f32_options(w_, false);
  o.text_token_budget = 4;
  ModelPricer mp(o);
  const std::string text = "Item steel drill pro deluxe cable lamp mug";
  uint32_t kept = 0;
  const std::string cut = data::cut_to_tokens(text, mp.tokenizer(), 4, &kept);
  EXPECT_LT(cut.size(), text.size());
  EXPECT_EQ(text.rfind(cut, 0), 0u) << "a prefix of the text: " << cut;
  EXPECT_EQ(kept, mp.tokenizer().encode(cut).size());
  EXPECT_LE(kept, 4u);
  EXPECT_EQ(mp.prompt_for(text), "What does this cost to the nearest dollar?\n\n" + cut + "\n\nPrice is $");
  EXPECT_EQ(data::cut_to_tokens("Item mug", mp.tokenizer(), 4), "Item mug") << "short texts stay whole";
  o.text_token_budget = 0;
  EXPECT_NE(ModelPricer(o).prompt_for(text).find(text), std::string::npos) << "0: no cut";
  o.text_token_budget = -1;
  EXPECT_THROW(ModelPricer{o}, Error) << "a negative budget is refused, not read as no cut";
}

TEST_F(Predict, IntervalWidensWithCoverage) {
  ModelPricerOptions narrow = f32_options(w_, true), wide = narrow;
  narrow.coverage = 0.3;
  wide.coverage = 0.95;
  ModelPricer a(narrow), b(wide);
  const std::vector<std::string> prompts = {a.prompt_for("Item steel deluxe kit")};
  const auto pa = a.predict(prompts, PriceMode::Expected), pb = b.predict(prompts, PriceMode::Expected);
  EXPECT_LE(pb[0].dist.lo, pa[0].dist.lo);
  EXPECT_GE(pb[0].dist.hi, pa[0].dist.hi);
  EXPECT_LT(pa[0].dist.hi - pa[0].dist.lo, pb[0].dist.hi - pb[0].dist.lo);
  EXPECT_NEAR(pa[0].price, pb[0].price, 1e-9);  // the point estimate does not depend on coverage
}

TEST_F(Predict, BatchedEqualsOneByOne) {
  ModelPricerOptions o = f32_options(w_, true);
  o.batch = 3;
  ModelPricer batched(o);
  o.batch = 1;
  ModelPricer single(o);
  std::vector<std::string> prompts;
  for (const auto& t : texts(7, 4)) prompts.push_back(batched.prompt_for(t));
  const auto a = batched.predict(prompts, PriceMode::Expected), b = single.predict(prompts, PriceMode::Expected);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_NEAR(a[i].price, b[i].price, 1e-4) << i;
    EXPECT_NEAR(a[i].dist.number_mass, b[i].dist.number_mass, 1e-6) << i;
    EXPECT_EQ(a[i].dist.lo, b[i].dist.lo) << i;
    EXPECT_EQ(a[i].dist.hi, b[i].dist.hi) << i;
  }
  // Greedy mode (one KV cache per prompt) reads the same first-token distribution, and decoding
  // three prompts together (finished ones dropping out) generates what each does alone.
  const auto g = single.predict(prompts, PriceMode::Greedy), gb = batched.predict(prompts, PriceMode::Greedy);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_NEAR(g[i].dist.expected, b[i].price, 1e-4) << i;
    EXPECT_EQ(gb[i].text, g[i].text) << i;
    EXPECT_EQ(gb[i].parsed, g[i].parsed) << i;
    EXPECT_NEAR(gb[i].price, g[i].price, 1e-6 * std::max(1.0, g[i].price)) << i;  // unparsed: the mean
  }
}

TEST_F(Predict, AdapterChangesPredictionsAsLoaded) {
  ModelPricer base(f32_options(w_, false)), tuned(f32_options(w_, true));
  LlamaModel m = load_f32(w_.base, w_.adapter.string());
  std::vector<std::string> prompts;
  for (const auto& t : texts(3, 5)) prompts.push_back(base.prompt_for(t));
  const auto pb = base.predict(prompts, PriceMode::Expected), pt = tuned.predict(prompts, PriceMode::Expected);
  double max_diff = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(pb[i].price - pt[i].price));
    const HandEstimate h = hand_estimate(m, tuned.tokenizer(), tuned.encode_prompt(prompts[i]), 0.8);
    EXPECT_NEAR(pt[i].price, h.expected, 1e-4 * h.expected) << i;
  }
  EXPECT_GT(max_diff, 1.0);
  // The default NF4 base stays close to the f32 one.
  ModelPricerOptions nf4 = f32_options(w_, true);
  nf4.base_dtype = "nf4";
  const auto pq = ModelPricer(nf4).predict(prompts, PriceMode::Expected);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_NEAR(pq[i].price, pt[i].price, 0.1 * pt[i].price + 20) << i;
}

// A model whose next token depends only on the current one: after "42" it says ".", after
// anything else "42". Row 0 of the residual stream is the token's embedding (+5, or -5 for "42")
// because o_proj and down_proj write nothing there; the final norm keeps only that row, and the
// head maps its sign to "42" or ".".
void save_two_state_model(const tiny::World& w, const fs::path& path, bool dot_first) {
  const ModelConfig c = tiny::model_config(w.bpe);
  auto tok = make_trained_tokenizer(w.bpe);
  const auto id42 = tok->encode("42"), dot = tok->encode(".");
  ASSERT_EQ(id42.size(), 1u);
  ASSERT_EQ(dot.size(), 1u);
  auto t = export_tensors(LlamaModel::random(c, 3, 0.3f), false);
  auto edit = [&](const std::string& name, auto fn) {
    const Weight& old = t.at(name);
    std::vector<float> v = old.to_f32();
    fn(v, old.cols());
    t[name] = Weight::from_f32(v.data(), old.rows(), old.cols(), DType::F32);
  };
  edit("model.embed_tokens.weight", [&](std::vector<float>& v, int64_t cols) {
    for (int64_t r = 0; r < c.vocab_size; ++r) v[r * cols] = r == id42[0] && !dot_first ? -5.0f : 5.0f;
  });
  for (int64_t l = 0; l < c.n_layers; ++l) {
    for (const char* n : {".self_attn.o_proj.weight", ".mlp.down_proj.weight"}) {
      edit("model.layers." + std::to_string(l) + n,
           [](std::vector<float>& v, int64_t cols) { std::fill(v.begin(), v.begin() + cols, 0.0f); });
    }
  }
  edit("model.norm.weight", [](std::vector<float>& v, int64_t) {
    std::fill(v.begin(), v.end(), 0.0f);
    v[0] = 1.0f;
  });
  edit("lm_head.weight", [&](std::vector<float>& v, int64_t cols) {
    std::fill(v.begin(), v.end(), 0.0f);
    v[id42[0] * cols] = dot_first ? -3.0f : 3.0f;
    v[dot[0] * cols] = dot_first ? 3.0f : -3.0f;
  });
  tiny::save_model(LlamaModel::from_weights(c, std::move(t), "two-state"), w.bpe, path.string());
}

TEST_F(Predict, GreedyParsesTheGeneratedText) {
  save_two_state_model(w_, w_.dir / "two.gguf", false);
  ModelPricerOptions o;
  o.model = (w_.dir / "two.gguf").string();
  o.base_dtype = "f32";
  ModelPricer mp(o);
  const auto p = mp.predict({mp.prompt_for("Item lamp"), mp.prompt_for("Item mug pro")}, PriceMode::Greedy);
  for (const auto& x : p) {
    // "42", ".", "42": the number is complete once it has two decimals, so generation stops.
    EXPECT_EQ(x.text, "42.42");
    EXPECT_TRUE(x.parsed);
    EXPECT_DOUBLE_EQ(x.price, 42.42);
    EXPECT_EQ(x.dist.top[0].value, 42);
  }
  // A model that never says a number: the completion is kept, the price falls back to the mean.
  save_two_state_model(w_, w_.dir / "dots.gguf", true);
  o.model = (w_.dir / "dots.gguf").string();
  o.greedy_max_tokens = 5;
  ModelPricer dots(o);
  const auto q = dots.predict({dots.prompt_for("Item lamp")}, PriceMode::Greedy);
  EXPECT_EQ(q[0].text, ".....");
  EXPECT_FALSE(q[0].parsed);
  EXPECT_DOUBLE_EQ(q[0].price, q[0].dist.expected);
}

TEST_F(Predict, GreedyFromKvCacheMatchesFullRecompute) {
  ModelPricerOptions o = f32_options(w_, true);
  o.greedy_max_tokens = 4;
  ModelPricer mp(o);
  LlamaModel m = load_f32(w_.base, w_.adapter.string());
  auto be = make_cpu_backend();
  for (const auto& text : texts(3, 6)) {
    const std::string prompt = mp.prompt_for(text);
    const auto p = mp.predict({prompt}, PriceMode::Greedy);
    // The same 4 tokens by re-running the whole sequence each step, no cache.
    std::vector<int32_t> seq = mp.encode_prompt(prompt);
    std::string hand;
    for (int step = 0; step < 4; ++step) {
      Batch b;
      b.tokens = seq;
      for (size_t t = 0; t < seq.size(); ++t) b.positions.push_back(static_cast<int32_t>(t));
      b.cu_seqlens = {0, static_cast<int32_t>(seq.size())};
      const int64_t last = static_cast<int64_t>(seq.size()) - 1;
      const auto lg = m.logits(b, std::span<const int64_t>(&last, 1), *be);
      const auto next = static_cast<int32_t>(std::max_element(lg.begin(), lg.end()) - lg.begin());
      if (next == mp.tokenizer().eos_id()) break;
      hand += mp.tokenizer().token_bytes(next);
      seq.push_back(next);
    }
    ASSERT_FALSE(p[0].text.empty());
    EXPECT_EQ(hand.substr(0, p[0].text.size()), p[0].text);
    if (p[0].parsed) {
      EXPECT_DOUBLE_EQ(p[0].price, *price_in_text(p[0].text));
    } else {
      EXPECT_DOUBLE_EQ(p[0].price, p[0].dist.expected);
    }
  }
}

TEST_F(Predict, LongPromptsKeepHeadAndTailWithinContext) {
  ModelPricerOptions o = f32_options(w_, false);
  ModelPricer mp(o);  // context 96, greedy budget 8: at most 88 prompt tokens
  std::string text = "Item";
  for (int i = 0; i < 120; ++i) text += " " + tiny::product_words()[i % 12];
  const std::string prompt = mp.prompt_for(text);
  std::vector<int32_t> full = {mp.tokenizer().bos_id()};
  for (int32_t id : mp.tokenizer().encode(prompt)) full.push_back(id);
  ASSERT_GT(full.size(), 100u);
  const auto cut = mp.encode_prompt(prompt);
  ASSERT_EQ(cut.size(), 88u);
  EXPECT_TRUE(std::equal(cut.begin(), cut.begin() + 72, full.begin()));
  EXPECT_TRUE(std::equal(cut.end() - 16, cut.end(), full.end() - 16));
  EXPECT_EQ(mp.tokenizer().decode({cut.end() - 4, cut.end()}).back(), '$');
  EXPECT_NO_THROW(mp.predict({prompt}, PriceMode::Greedy));
  o.max_prompt_tokens = 40;
  EXPECT_EQ(ModelPricer(o).encode_prompt(prompt).size(), 40u);
}

// One reader of prices in free text, for completions and API replies alike.
TEST(PriceText, ReadsTheFirstPriceAndRefusesWhatIsNone) {
  EXPECT_EQ(price_in_text("123.00"), 123.0);
  EXPECT_EQ(price_in_text(" $1,299.50 or so"), 1299.5);
  EXPECT_EQ(price_in_text("$1,299.99 each"), 1299.99);
  EXPECT_EQ(price_in_text("45"), 45.0);
  EXPECT_EQ(price_in_text("7. Next"), 7.0);
  EXPECT_EQ(price_in_text("Price is 12."), 12.0);
  EXPECT_EQ(price_in_text("about .5 dollars"), 0.5);
  EXPECT_EQ(price_in_text("30-40 dollars"), 30.0);
  EXPECT_EQ(price_in_text("$ 7"), 7.0);
  EXPECT_EQ(price_in_text("12, 13"), 12.0);
  EXPECT_EQ(price_in_text("1.5e3"), 1500.0);
  EXPECT_EQ(price_in_text("3 each"), 3.0);  // an "e" that starts a word is no exponent
  EXPECT_FALSE(price_in_text("no idea").has_value());
  EXPECT_FALSE(price_in_text("").has_value());
  EXPECT_FALSE(price_in_text("-$45").has_value());
  EXPECT_FALSE(price_in_text("$-45").has_value());
  EXPECT_FALSE(price_in_text("-45").has_value());
  EXPECT_FALSE(price_in_text("1e999").has_value());
  EXPECT_FALSE(price_in_text("2e9").has_value());  // beyond any product's price
  EXPECT_THROW(price_mode_from_name("mean"), Error);
}

TEST_F(Predict, CalibrationCountsTruthsInsideIntervals) {
  EXPECT_TRUE(interval_holds(41.6, 42, 50));
  EXPECT_FALSE(interval_holds(41.4, 42, 50));
  EXPECT_TRUE(interval_holds(50.4, 42, 50));
  ModelPricerOptions o = f32_options(w_, true);
  o.keep_distribution = true;
  ModelPricer mp(o);
  std::vector<std::string> prompts;
  std::vector<double> truth;
  for (const auto& p : tiny::products(12, 8)) {
    prompts.push_back(mp.prompt_for(p.text));
    truth.push_back(p.price * 40);  // spread the truths over the model's range
  }
  const auto preds = mp.predict(prompts, PriceMode::Expected);
  const Calibration c = calibrate(mp.distribution(), preds, truth, {0.5, 0.8, 0.95});
  ASSERT_EQ(c.points.size(), 3u);
  size_t inside = 0;
  for (size_t i = 0; i < preds.size(); ++i) inside += interval_holds(truth[i], preds[i].dist.lo, preds[i].dist.hi);
  EXPECT_DOUBLE_EQ(c.points[1].observed, static_cast<double>(inside) / 12);
  for (size_t k = 1; k < c.points.size(); ++k) {
    EXPECT_GE(c.points[k].observed, c.points[k - 1].observed);
    EXPECT_GT(c.points[k].mean_width, c.points[k - 1].mean_width);
  }
  EXPECT_THROW(calibrate(mp.distribution(), preds, {1.0}, {0.8}), Error);
  EXPECT_NE(calibration_svg(c, "t").find("<svg"), std::string::npos);
}

// ---- the CLI ----------------------------------------------------------------------------------

class PredictCli : public Predict {
 protected:
  std::string model_args() const {
    return "predict --model " + w_.base.string() + " --adapter " + w_.adapter.string() + " --base-dtype f32 ";
  }
  double in_process_price(const std::string& prompt) {
    if (!mp_) mp_ = std::make_unique<ModelPricer>(f32_options(w_, true));
    return mp_->predict({prompt}, kDefaultPriceMode)[0].price;
  }
  std::unique_ptr<ModelPricer> mp_;
};

TEST_F(PredictCli, ArgumentStdinAndJsonLines) {
  const std::string text = "Item steel drill pro";
  ModelPricer mp(f32_options(w_, true));
  const double want = in_process_price(mp.prompt_for(text));

  auto r = cli_test::run_cli(model_args() + "'" + text + "'");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.out.rfind("$", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("80% interval"), std::string::npos) << r.out;

  r = cli_test::run_cli(model_args() + "--json --top 4 '" + text + "'");
  ASSERT_EQ(r.rc, 0) << r.out;
  const json j = json::parse(r.out);
  EXPECT_NEAR(j["price"].get<double>(), want, 1e-6 * want);
  EXPECT_EQ(j["mode"], price_mode_name(kDefaultPriceMode));  // the one default readout, named
  EXPECT_DOUBLE_EQ(j["median"].get<double>(), j["price"].get<double>());
  EXPECT_LE(j["interval"]["lo"].get<double>(), j["interval"]["hi"].get<double>());
  EXPECT_DOUBLE_EQ(j["interval"]["coverage"].get<double>(), 0.8);
  ASSERT_EQ(j["top"].size(), 4u);
  double sum = 0;
  for (const auto& t : j["top"]) {
    EXPECT_TRUE(spells_number(t["token"].get<std::string>()));
    sum += t["prob"].get<double>();
  }
  EXPECT_LE(sum, 1.0 + 1e-9);
  EXPECT_GE(j["top"][0]["prob"].get<double>(), j["top"][3]["prob"].get<double>());

  r = cli_test::run_cli(model_args() + "--json", text + "\n");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NEAR(json::parse(r.out)["price"].get<double>(), want, 1e-6 * want);

  const std::vector<std::string> batch = {"Item mug", "Item lamp deluxe cable", text};
  std::string lines = json{{"text", batch[0]}}.dump() + "\n\n" + json{{"text", batch[1]}, {"id", "b-7"}}.dump() + "\n" +
                      json{{"prompt", mp.prompt_for(batch[2])}}.dump() + "\n";
  std::ofstream(w_.dir / "in.jsonl") << lines;
  for (const std::string& src : {(w_.dir / "in.jsonl").string(), std::string("-")}) {
    r = cli_test::run_cli(model_args() + "--jsonl " + src, src == "-" ? lines : "");
    ASSERT_EQ(r.rc, 0) << r.out;
    std::vector<json> out;
    std::istringstream ss(r.out);
    for (std::string l; std::getline(ss, l);)
      if (!l.empty() && l[0] == '{') out.push_back(json::parse(l));
    ASSERT_EQ(out.size(), 3u) << r.out;
    const int line_no[] = {1, 3, 4};
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(out[i]["line"], line_no[i]);
      const double p = in_process_price(mp.prompt_for(batch[i]));
      EXPECT_NEAR(out[i]["price"].get<double>(), p, 1e-6 * p) << i;
    }
    EXPECT_EQ(out[1]["id"], "b-7");
    EXPECT_FALSE(out[0].contains("id"));
  }

  r = cli_test::run_cli(model_args() + "--mode greedy --json '" + text + "'");
  ASSERT_EQ(r.rc, 0) << r.out;
  const json g = json::parse(r.out);
  EXPECT_EQ(g["mode"], "greedy");
  ASSERT_TRUE(g.contains("completion") && g.contains("parsed"));
  if (g["parsed"].get<bool>()) {
    EXPECT_DOUBLE_EQ(g["price"].get<double>(), *price_in_text(g["completion"].get<std::string>()));
  }
}

// Two --model flags price as the log(1 + price) mean of the two; the JSON names each model's own
// price and top tokens; --calibrate refuses more than one model.
TEST_F(PredictCli, SeveralModelsPriceAsTheirAverage) {
  const fs::path other = w_.dir / "other.gguf";
  tiny::save_model(LlamaModel::random(tiny::model_config(w_.bpe), 12, 0.3f), w_.bpe, other.string());
  const std::string text = "Item steel drill pro";
  ModelPricerOptions a = f32_options(w_, false), b = a;
  b.model = other.string();
  ModelPricer ma(a), mb(b);
  const double pa = ma.predict({ma.prompt_for(text)}, kDefaultPriceMode)[0].price;
  const double pb = mb.predict({mb.prompt_for(text)}, kDefaultPriceMode)[0].price;
  const std::string args = "predict --model " + w_.base.string() + " --model " + other.string() + " --base-dtype f32 ";
  auto r = cli_test::run_cli(args + "--json '" + text + "'");
  ASSERT_EQ(r.rc, 0) << r.out;
  const json j = json::parse(r.out.substr(r.out.find('{')));
  const double want = std::expm1((std::log1p(pa) + std::log1p(pb)) / 2);
  EXPECT_NEAR(j["price"].get<double>(), want, 1e-6 * want);
  ASSERT_EQ(j["models"].size(), 2u);
  EXPECT_NEAR(j["models"][0]["price"].get<double>(), pa, 1e-6 * pa);
  EXPECT_NEAR(j["models"][1]["price"].get<double>(), pb, 1e-6 * pb);
  EXPECT_EQ(j["models"][1]["model"], other.string());
  EXPECT_FALSE(j["models"][0]["top"].empty());
  EXPECT_FALSE(j.contains("top")) << "the average has no one distribution to list tokens from";
  EXPECT_LE(j["interval"]["lo"].get<double>(), j["interval"]["hi"].get<double>());

  r = cli_test::run_cli(args + "--calibrate " + w_.dir.string());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("one model"), std::string::npos) << r.out;
}

// A model holding a NaN weight is refused by file and tensor, not left to price NaN.
TEST_F(Predict, AModelWithNonFiniteWeightsIsRefusedByTensor) {
  const fs::path bad = w_.dir / "nan.gguf";
  fs::copy_file(w_.base, bad);
  std::string name;
  uint64_t at = 0;
  {
    const GgufFile g = GgufFile::open(bad.string());
    for (const auto& t : g.tensors())
      if (t.type == GgmlType::F32 && t.name.find("ffn_down") != std::string::npos) {
        name = t.name;
        at = g.data_start() + t.offset + 4 * 3;
        break;
      }
  }
  ASSERT_FALSE(name.empty());
  {
    std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
    const float nan = std::nanf("");
    f.seekp(static_cast<std::streamoff>(at));
    f.write(reinterpret_cast<const char*>(&nan), 4);
  }
  ModelPricerOptions o = f32_options(w_, false);
  o.model = bad.string();
  try {
    ModelPricer mp(o);
    ADD_FAILURE() << "a NaN weight was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad.string() + ": tensor "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("NaN or infinite"), std::string::npos) << e.what();
  }
}

TEST(PredictAverage, ReadoutsAverageInLogOnePlusPrice) {
  PricePrediction a, b;
  a.price = a.dist.median = 9, a.dist.expected = 99, a.dist.lo = 0, a.dist.hi = 20, a.dist.number_mass = 0.5;
  b.price = b.dist.median = 99, b.dist.expected = 9, b.dist.lo = 8, b.dist.hi = 200, b.dist.number_mass = 1.0;
  b.parsed = false;
  a.dist.top.push_back({3, 9, 0.7});
  const auto one = average_predictions({{a}});
  EXPECT_EQ(one[0].dist.top.size(), 1u) << "one model comes back unchanged";
  const PricePrediction m = average_predictions({{a}, {b}})[0];
  EXPECT_NEAR(m.price, 30.622776601683793, 1e-9);  // sqrt(10 * 100) - 1
  EXPECT_NEAR(m.dist.median, m.price, 1e-12);
  EXPECT_NEAR(m.dist.expected, m.price, 1e-12);
  EXPECT_NEAR(m.dist.lo, 2.0, 1e-12);  // sqrt(1 * 9) - 1
  EXPECT_NEAR(m.dist.hi, std::sqrt(21.0 * 201.0) - 1, 1e-9);
  EXPECT_DOUBLE_EQ(m.dist.number_mass, 0.75);
  EXPECT_FALSE(m.parsed);
  EXPECT_TRUE(m.dist.top.empty());
  EXPECT_THROW(average_predictions({{a}, {}}), Error);
  EXPECT_THROW(average_predictions({}), Error);
}

TEST_F(PredictCli, BadLinesNameTheLineOrAreSkippedAndCounted) {
  std::ofstream(w_.dir / "bad.jsonl") << "{\"text\": \"Item mug\"}\n{\"text\": \"Item\n[1, 2]\n{\"title\": \"x\"}\n"
                                      << "{\"text\": \"Item lamp\"}\n";
  const std::string file = (w_.dir / "bad.jsonl").string();
  auto r = cli_test::run_cli(model_args() + "--jsonl " + file);
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find(file + ":2: invalid JSON"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("\"price\""), std::string::npos) << "nothing is priced before the input is checked";

  r = cli_test::run_cli(model_args() + "--jsonl " + file + " --skip-invalid");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("skipped 3 invalid lines (first: " + file + ":2: invalid JSON"), std::string::npos) << r.out;
  size_t priced = 0;
  for (size_t at = 0; (at = r.out.find("\"price\"", at)) != std::string::npos; ++at) ++priced;
  EXPECT_EQ(priced, 2u);
  EXPECT_NE(r.out.find("\"line\":5"), std::string::npos) << r.out;

  r = cli_test::run_cli(model_args() + "--jsonl " + (w_.dir / "missing.jsonl").string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("missing.jsonl: cannot open"), std::string::npos) << r.out;
  r = cli_test::run_cli(model_args());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("empty product text"), std::string::npos) << r.out;
  r = cli_test::run_cli(model_args() + "--mode mean x");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("unknown price mode"), std::string::npos) << r.out;
}

TEST_F(PredictCli, CalibrateReportsCoverageOnTheValSplit) {
  ModelPricer mp(f32_options(w_, true));
  fs::create_directories(w_.dir / "data");
  std::ofstream val(w_.dir / "data" / "val.jsonl"), batch(w_.dir / "val_prompts.jsonl");
  std::vector<double> truth;
  for (const auto& p : tiny::products(16, 9)) {
    const double price = std::round(p.price * 45 * 100) / 100;
    truth.push_back(price);
    val << json{{"prompt", mp.prompt_for(p.text)}, {"completion", "0.00"}, {"price", price}}.dump() << "\n";
    batch << json{{"prompt", mp.prompt_for(p.text)}}.dump() << "\n";
  }
  val.close();
  batch.close();
  const fs::path out = w_.dir / "calib";
  auto r = cli_test::run_cli(model_args() + "--calibrate " + (w_.dir / "data").string() + " --out " + out.string());
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("the 80% interval holds"), std::string::npos) << r.out;
  const json c = json::parse(cli_test::slurp(out / "calibration.json"));
  EXPECT_EQ(c["items"], 16);
  EXPECT_EQ(c["split"], "val");
  ASSERT_EQ(c["coverage"].size(), 6u);
  EXPECT_NE(cli_test::slurp(out / "calibration.svg").find("<svg"), std::string::npos);

  // The same share, counted from the intervals `predict --jsonl` prints for those prompts.
  r = cli_test::run_cli(model_args() + "--jsonl " + (w_.dir / "val_prompts.jsonl").string());
  ASSERT_EQ(r.rc, 0) << r.out;
  std::istringstream ss(r.out);
  size_t i = 0, inside = 0;
  for (std::string l; std::getline(ss, l);) {
    if (l.empty() || l[0] != '{') continue;
    const json j = json::parse(l);
    inside += interval_holds(truth.at(i++), j["interval"]["lo"], j["interval"]["hi"]);
  }
  ASSERT_EQ(i, 16u);
  EXPECT_DOUBLE_EQ(c["configured"]["observed"].get<double>(), static_cast<double>(inside) / 16);
  EXPECT_DOUBLE_EQ(c["coverage"][3]["observed"].get<double>(), static_cast<double>(inside) / 16);
}

}  // namespace
}  // namespace pricer
