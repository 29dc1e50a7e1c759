// Text generation: the sampler against plain references over known distributions, streamed
// decoding, the KV-cached generation loop, `pricer generate` end to end, and llama2.c's own
// stories260K test (greedy ids and printed text), also through GGUF and Hugging Face copies.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cli_test_util.h"
#include "core/error.h"
#include "io/model_file.h"
#include "model/generate.h"
#include "model/sampler.h"
#include "test_io_util.h"
#include "tokenizer/bpe.h"
#include "tokenizer/text_stream.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace pricer {
namespace {

using Ids = std::vector<int32_t>;

const fs::path kShared = PRICER_SHARED_DIR;

using cli_test::CliRun;
using cli_test::slurp;

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("pricer_generate_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Runs `pricer generate ARGS`, capturing stdout and stderr apart. One thread: these models are
// tiny, and the test suite runs many binaries at once.
CliRun run_generate(const std::string& args) { return cli_test::run_cli_split("-t 1 generate " + args); }

std::string shell_quoted(const fs::path& p) {
  std::string q = "'";
  q += p.string();
  q += '\'';
  return q;
}

std::vector<float> random_logits(size_t n, uint32_t seed, float scale = 2.0f) {
  std::mt19937 rng(seed);
  return test_io::random_floats(n, rng, scale);
}

// ---- Plain references: softmax, top-k and top-p written the obvious way. ----

std::vector<double> ref_softmax(const std::vector<float>& logits, double temperature) {
  double mx = -INFINITY;
  for (float l : logits) mx = std::max(mx, static_cast<double>(l));
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < p.size(); ++i) sum += p[i] = std::exp((logits[i] - mx) / temperature);
  for (double& x : p) x /= sum;
  return p;
}

// Ids of the k largest logits: id i is kept when fewer than k ids beat it (larger, or equal and lower).
std::vector<int32_t> ref_top_k(const std::vector<float>& logits, size_t k) {
  std::vector<int32_t> kept;
  for (size_t i = 0; i < logits.size(); ++i) {
    size_t beaten_by = 0;
    for (size_t j = 0; j < logits.size(); ++j)
      if (logits[j] > logits[i] || (logits[j] == logits[i] && j < i)) ++beaten_by;
    if (beaten_by < k) kept.push_back(static_cast<int32_t>(i));
  }
  return kept;
}

void expect_distribution(const std::vector<Candidate>& got, std::map<int32_t, double> want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double prev = INFINITY;
  for (const Candidate& c : got) {
    ASSERT_TRUE(want.count(c.id)) << what << ": id " << c.id << " should not be a candidate";
    EXPECT_NEAR(c.prob, want[c.id], 1e-9) << what << ": id " << c.id;
    EXPECT_LE(c.prob, prev + 1e-12) << what << ": candidates out of order";
    prev = c.prob;
  }
}

TEST(Sampler, TemperatureZeroIsArgmaxWithTiesToTheLowestId) {
  const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f, NAN, 2.9f};
  EXPECT_EQ(argmax(logits), 1);
  for (SamplingOptions o : {SamplingOptions{.temperature = 0, .top_k = 0, .top_p = 1, .seed = 1},
                            SamplingOptions{.temperature = 0, .top_k = 2, .top_p = 0.3f, .seed = 9}}) {
    Sampler s(o);
    for (int i = 0; i < 20; ++i) EXPECT_EQ(s.sample(logits), 1);
  }
  auto v = random_logits(1000, 4);
  EXPECT_EQ(argmax(v), std::max_element(v.begin(), v.end()) - v.begin());
  EXPECT_THROW(argmax(std::vector<float>{NAN, NAN}), Error);
  EXPECT_THROW(argmax(std::vector<float>{}), Error);
}

TEST(Sampler, TopKKeepsExactlyK) {
  auto logits = random_logits(60, 11);
  logits[7] = logits[8] = logits[9] = 20.0f;  // a tie at the top: broken by id
  for (float t : {1.0f, 0.7f}) {
    for (size_t k : {1u, 2u, 5u, 17u, 60u, 100u}) {
      const auto kept = ref_top_k(logits, k);
      EXPECT_EQ(kept.size(), std::min<size_t>(k, logits.size()));
      // Within the kept set, probabilities are softmax(l / t) renormalized over that set.
      const auto p = ref_softmax(logits, t);
      double mass = 0;
      for (int32_t id : kept) mass += p[static_cast<size_t>(id)];
      std::map<int32_t, double> want;
      for (int32_t id : kept) want[id] = p[static_cast<size_t>(id)] / mass;
      expect_distribution(sampling_candidates(logits, {.temperature = t, .top_k = static_cast<int64_t>(k), .top_p = 1}),
                          want, "k " + std::to_string(k) + " t " + std::to_string(t));
    }
  }
  const auto one = sampling_candidates(logits, {.temperature = 1, .top_k = 1, .top_p = 1});
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].id, 7);
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingP) {
  // A hand distribution: 0.5, 0.25, 0.15, 0.1 (logits are their logs, ids shuffled).
  const std::vector<float> hand = {std::log(0.15f), std::log(0.5f), std::log(0.1f), std::log(0.25f)};
  auto ids_of = [](const std::vector<Candidate>& c) {
    Ids ids;
    for (const auto& x : c) ids.push_back(x.id);
    return ids;
  };
  EXPECT_EQ(ids_of(sampling_candidates(hand, {.temperature = 1, .top_k = 0, .top_p = 0.2f})), (Ids{1}));
  EXPECT_EQ(ids_of(sampling_candidates(hand, {.temperature = 1, .top_k = 0, .top_p = 0.6f})), (Ids{1, 3}));
  EXPECT_EQ(ids_of(sampling_candidates(hand, {.temperature = 1, .top_k = 0, .top_p = 0.76f})), (Ids{1, 3, 0}));
  EXPECT_EQ(ids_of(sampling_candidates(hand, {.temperature = 1, .top_k = 0, .top_p = 0.95f})), (Ids{1, 3, 0, 2}));
  EXPECT_EQ(ids_of(sampling_candidates(hand, {.temperature = 1, .top_k = 0, .top_p = 1.0f})), (Ids{1, 3, 0, 2}));
  // Top-p applies to the distribution left by top-k: of 0.5 and 0.25 (renormalized 2/3, 1/3),
  // p = 0.6 keeps one token.
  EXPECT_EQ(ids_of(sampling_candidates(hand, {.temperature = 1, .top_k = 2, .top_p = 0.6f})), (Ids{1}));

  std::mt19937 rng(5);
  std::uniform_real_distribution<float> pick_p(0.05f, 0.99f);
  for (int trial = 0; trial < 40; ++trial) {
    const auto logits = random_logits(80, 100 + static_cast<uint32_t>(trial), 1.5f);
    const float top_p = pick_p(rng), t = trial % 2 ? 1.0f : 1.3f;
    auto p = ref_softmax(logits, t);
    std::vector<int32_t> order(p.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
    double mass = 0;
    size_t n = 0;
    while (mass < top_p) mass += p[static_cast<size_t>(order[n++])];
    std::map<int32_t, double> want;
    for (size_t i = 0; i < n; ++i) want[order[i]] = p[static_cast<size_t>(order[i])] / mass;
    expect_distribution(sampling_candidates(logits, {.temperature = t, .top_k = 0, .top_p = top_p}), want,
                        "trial " + std::to_string(trial) + " p " + std::to_string(top_p));
  }
}

TEST(Sampler, SameSeedSameTokensAndFrequenciesFollowTheDistribution) {
  const auto logits = random_logits(30, 21, 1.0f);
  for (SamplingOptions o : {SamplingOptions{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 7},
                            SamplingOptions{.temperature = 0.8f, .top_k = 8, .top_p = 0.9f, .seed = 7}}) {
    Sampler a(o), b(o);
    SamplingOptions other = o;
    other.seed = 8;
    Sampler c(other);
    Ids ra, rb, rc;
    for (int i = 0; i < 300; ++i) {
      ra.push_back(a.sample(logits));
      rb.push_back(b.sample(logits));
      rc.push_back(c.sample(logits));
    }
    EXPECT_EQ(ra, rb);
    EXPECT_NE(ra, rc);

    // The draw frequencies of a long seeded run against the candidate probabilities (the whole
    // softmax when nothing is cut): within 5 standard deviations, never outside the set.
    std::map<int32_t, double> want;
    if (o.top_k == 0) {
      const auto p = ref_softmax(logits, o.temperature);
      for (size_t i = 0; i < p.size(); ++i) want[static_cast<int32_t>(i)] = p[i];
    } else {
      for (const Candidate& x : sampling_candidates(logits, o)) want[x.id] = x.prob;
    }
    const int n = 40000;
    std::map<int32_t, int> count;
    for (int i = 0; i < n; ++i) ++count[a.sample(logits)];
    for (const auto& [id, k] : count) ASSERT_TRUE(want.count(id)) << "drew id " << id << " outside the candidates";
    for (const auto& [id, p] : want) {
      const double sd = std::sqrt(n * p * (1 - p));
      EXPECT_NEAR(count[id], n * p, 5 * sd + 1) << "id " << id << " p " << p;
    }
  }
}

TEST(Sampler, BadOptionsNameTheOption) {
  auto message = [](SamplingOptions o) {
    try {
      Sampler s(o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({.temperature = -0.5f}).find("temperature"), std::string::npos);
  EXPECT_NE(message({.temperature = NAN}).find("temperature"), std::string::npos);
  EXPECT_NE(message({.top_k = -1}).find("top-k"), std::string::npos);
  EXPECT_NE(message({.top_p = 0.0f}).find("top-p"), std::string::npos);
  EXPECT_NE(message({.top_p = 1.5f}).find("top-p"), std::string::npos);
  EXPECT_EQ(message({}), "no error");
}

// ---- Streamed decoding ----

// SentencePiece-style vocab: <unk> <s> </s>, the 256 byte tokens, then "▁", "a", "b", "▁a", "▁b"
// (the pairs merge by their score).
std::unique_ptr<Tokenizer> byte_fallback_tokenizer() {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};
  std::vector<float> scores(3, 0.0f);
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    tokens.push_back(hex);
    types.push_back(6);
    scores.push_back(0.0f);
  }
  for (const char* t : {"\xE2\x96\x81", "a", "b",
                        "\xE2\x96\x81"
                        "a",
                        "\xE2\x96\x81"
                        "b"}) {
    tokens.push_back(t);
    types.push_back(1);
    scores.push_back(std::string(t).size() > 3 ? 1.0f : 0.0f);
  }
  return make_sentencepiece_bpe(tokens, scores, types, 1, 2, true, "hand vocab");
}

TEST(TextStream, PiecesConcatenateToTheDecodeAndNeverSplitACharacter) {
  const auto tok = byte_fallback_tokenizer();
  const std::string text =
      "a b \xC3\xA9 \xF0\x9F\xA6\x99"
      "b a";
  const Ids ids = tok->encode(text);
  for (bool with_bos : {true, false}) {
    Ids context;
    if (with_bos) context.push_back(1);
    TextStream s(*tok, context);
    std::string all;
    int empty_pieces = 0;
    for (int32_t id : ids) {
      const std::string piece = s.push(id);
      EXPECT_EQ(utf8_complete_prefix(piece), piece.size()) << "piece ends inside a character";
      empty_pieces += piece.empty();
      all += piece;
    }
    all += s.finish();
    EXPECT_EQ(all, text);  // the dummy-prefix space is not printed, after BOS or at the start
    EXPECT_EQ(empty_pieces, 1 + 3);  // é's lead byte and the llama's first three bytes wait
  }
  // A context not echoed still shapes what follows: " b" after "a" keeps its space.
  TextStream s(*tok, tok->encode("a"));
  EXPECT_EQ(s.push(tok->encode("a b")[1]), " b");
  // An unfinished character at the very end comes out at finish().
  TextStream cut(*tok);
  EXPECT_EQ(cut.push(3 + 0xC3), "");
  EXPECT_EQ(cut.finish(), "\xC3");
}

TEST(TextStream, CompletePrefixOfUtf8) {
  EXPECT_EQ(utf8_complete_prefix(""), 0u);
  EXPECT_EQ(utf8_complete_prefix("ab"), 2u);
  EXPECT_EQ(utf8_complete_prefix("a\xC3"), 1u);
  EXPECT_EQ(utf8_complete_prefix("a\xC3\xA9"), 3u);
  EXPECT_EQ(utf8_complete_prefix("a\xE2\x96"), 1u);
  EXPECT_EQ(utf8_complete_prefix("a\xF0\x9F\xA6"), 1u);
  EXPECT_EQ(utf8_complete_prefix("a\xF0\x9F\xA6\x99"), 5u);
  EXPECT_EQ(utf8_complete_prefix("a\x80\x80\x80\x80"), 5u);  // stray continuation bytes pass through
  EXPECT_EQ(utf8_complete_prefix("a\xFF"), 2u);
}

// ---- The generation loop on a small random model ----

LlamaModel small_model(int64_t vocab = 40, int64_t context = 64) {
  ModelConfig c = test_io::tiny_config();
  c.vocab_size = vocab;
  c.max_seq_len = context;
  return LlamaModel::from_weights(c, test_io::random_model(c, 17), "random model");
}

GenerationOptions greedy(int64_t max_tokens) {
  GenerationOptions g;
  g.max_tokens = max_tokens;
  g.sampling = {.temperature = 0, .top_k = 0, .top_p = 1};
  return g;
}

TEST(Generate, CachedStepsAgreeWithTheFullForward) {
  LlamaModel m = small_model();
  auto be = make_cpu_backend();
  const Ids prompt = {1, 7, 30};
  const GenerationResult r = generate(m, *be, prompt, greedy(24));
  ASSERT_EQ(r.tokens.size(), 24u);
  EXPECT_EQ(r.reason, StopReason::MaxTokens);
  // Every greedy token is the argmax of the full (uncached) forward over all tokens before it.
  Ids seq = prompt;
  seq.insert(seq.end(), r.tokens.begin(), r.tokens.end() - 1);
  Batch b = make_batch(std::vector<Example>{{seq, 1}}, BatchMode::Packing, 0);
  std::vector<int64_t> rows;
  for (size_t t = prompt.size() - 1; t < seq.size(); ++t) rows.push_back(static_cast<int64_t>(t));
  const std::vector<float> full = m.logits(b, rows, *be);
  const int64_t V = m.config().vocab_size;
  for (size_t i = 0; i < rows.size(); ++i) {
    std::span<const float> row(full.data() + static_cast<int64_t>(i) * V, static_cast<size_t>(V));
    EXPECT_EQ(argmax(row), r.tokens[i]) << "step " << i;
  }
}

TEST(Generate, StopTokenEndsGenerationBeforeItIsEmitted) {
  LlamaModel m = small_model();
  auto be = make_cpu_backend();
  const Ids prompt = {1, 5};
  const Ids free_run = generate(m, *be, prompt, greedy(16)).tokens;
  // The first token that has not appeared before becomes the stop token.
  size_t k = 0;
  for (size_t i = 1; i < free_run.size() && k == 0; ++i)
    if (std::find(free_run.begin(), free_run.begin() + static_cast<long>(i), free_run[i]) ==
        free_run.begin() + static_cast<long>(i))
      k = i;
  GenerationOptions g = greedy(16);
  g.stop_ids = {free_run[k]};
  Ids streamed;
  const GenerationResult r = generate(m, *be, prompt, g, [&](int32_t id) {
    streamed.push_back(id);
    return true;
  });
  EXPECT_EQ(r.reason, StopReason::StopToken);
  EXPECT_EQ(r.stop_token, free_run[k]);
  EXPECT_EQ(r.tokens, Ids(free_run.begin(), free_run.begin() + static_cast<long>(k)));
  EXPECT_EQ(streamed, r.tokens);
}

TEST(Generate, BudgetContextCallbackAndSamplingVocab) {
  LlamaModel m = small_model(40, 16);
  auto be = make_cpu_backend();
  const Ids prompt(10, 3);
  EXPECT_EQ(generate(m, *be, prompt, greedy(4)).tokens.size(), 4u);
  // A context of 16 takes 16 inputs: the 10 prompt tokens and 6 generated ones, plus one more
  // generated token that is never fed back.
  const GenerationResult full = generate(m, *be, prompt, greedy(100));
  EXPECT_EQ(full.tokens.size(), 7u);
  EXPECT_EQ(full.reason, StopReason::ContextFull);
  EXPECT_EQ(generate(m, *be, Ids(16, 3), greedy(5)).tokens.size(), 1u);

  int calls = 0;
  const GenerationResult stopped = generate(m, *be, prompt, greedy(100), [&](int32_t) { return ++calls < 3; });
  EXPECT_EQ(stopped.tokens.size(), 3u);
  EXPECT_EQ(stopped.reason, StopReason::Callback);

  GenerationOptions g;
  g.max_tokens = 6;
  g.sample_vocab = 4;
  g.sampling = {.temperature = 1.5f, .top_k = 0, .top_p = 1, .seed = 3};
  for (int32_t id : generate(m, *be, prompt, g).tokens) EXPECT_LT(id, 4);
}

TEST(Generate, SeededSamplingIsReproducible) {
  LlamaModel m = small_model();
  auto be = make_cpu_backend();
  GenerationOptions g;
  g.max_tokens = 30;
  g.sampling = {.temperature = 1.0f, .top_k = 10, .top_p = 0.95f, .seed = 42};
  const Ids a = generate(m, *be, Ids{1}, g).tokens, b = generate(m, *be, Ids{1}, g).tokens;
  EXPECT_EQ(a, b);
  g.sampling.seed = 43;
  EXPECT_NE(generate(m, *be, Ids{1}, g).tokens, a);
}

TEST(Generate, BadArgumentsAreClearErrors) {
  LlamaModel m = small_model(40, 16);
  auto be = make_cpu_backend();
  auto message = [&](const Ids& prompt, const GenerationOptions& g) {
    try {
      generate(m, *be, prompt, g);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({}, greedy(5)).find("empty prompt"), std::string::npos);
  EXPECT_NE(message(Ids(17, 3), greedy(5)).find("more than the model's context of 16"), std::string::npos);
  EXPECT_NE(message({1, 40}, greedy(5)).find("id 40, outside the model's vocab"), std::string::npos);
  EXPECT_NE(message({1, -2}, greedy(5)).find("id -2"), std::string::npos);
  EXPECT_NE(message({1}, greedy(0)).find("max tokens"), std::string::npos);
  GenerationOptions bad = greedy(5);
  bad.sampling.top_p = 2.0f;
  EXPECT_NE(message({1}, bad).find("top-p"), std::string::npos);
  bad = greedy(5);
  bad.sample_vocab = 41;
  EXPECT_NE(message({1}, bad).find("sampling vocab"), std::string::npos);
}

// ---- `pricer generate` on a Hugging Face directory written by the project's writer ----

// A byte-level tokenizer.json: the 256 bytes, then <s> (256) and </s> (257).
void write_byte_tokenizer(const fs::path& dir) {
  nlohmann::json vocab = nlohmann::json::object();
  const auto& alphabet = tok::byte_to_unicode();
  for (int b = 0; b < 256; ++b) vocab[alphabet[b]] = b;
  const nlohmann::json j = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
      {"added_tokens",
       {{{"id", 256}, {"content", "<s>"}, {"special", true}}, {{"id", 257}, {"content", "</s>"}, {"special", true}}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}}}};
  std::ofstream(dir / "tokenizer.json") << j.dump();
  std::ofstream(dir / "tokenizer_config.json") << R"({"bos_token": "<s>", "eos_token": "</s>"})";
}

class GenerateCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = temp_dir("cli");
    cfg_ = test_io::tiny_config();
    cfg_.vocab_size = 258;
    cfg_.bos_id = 256;
    cfg_.eos_id = 257;
    tensors_ = test_io::random_model(cfg_, 23);
    save(cfg_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void save(const ModelConfig& c) {
    save_hf_dir((dir_ / "model").string(), c, tensors_);
    write_byte_tokenizer(dir_ / "model");
  }
  fs::path dir_;
  ModelConfig cfg_;
  std::map<std::string, Weight> tensors_;
};

TEST_F(GenerateCli, PrintsWhatTheLibraryGeneratesAndStopsAtEos) {
  const auto tok = load_tokenizer((dir_ / "model").string());
  ASSERT_EQ(tok->bos_id(), 256);
  LlamaModel m = LlamaModel::from_weights(cfg_, tensors_, "random");
  auto be = make_cpu_backend();
  Ids prompt = {256};
  for (int32_t id : tok->encode("The price")) prompt.push_back(id);
  GenerationOptions g = greedy(12);
  g.stop_ids = {257, 256};
  const Ids free_run = generate(m, *be, prompt, g).tokens;
  ASSERT_FALSE(free_run.empty());

  const std::string args =
      "--model " + shell_quoted(dir_ / "model") + " --prompt 'The price' --temperature 0 --max-tokens 12";
  CliRun r = run_generate(args);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "The price" + tok->decode(free_run));
  EXPECT_NE(r.err.find("generated " + std::to_string(free_run.size()) + " tokens"), std::string::npos) << r.err;
  r = run_generate(args + " --no-echo -q");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, tok->decode(free_run));
  EXPECT_EQ(r.err, "");

  // The model's EOS set to the third generated token: generation ends before printing it.
  const size_t k = std::min<size_t>(2, free_run.size() - 1);
  const size_t first = static_cast<size_t>(std::find(free_run.begin(), free_run.end(), free_run[k]) - free_run.begin());
  ModelConfig c = cfg_;
  c.eos_id = free_run[k];
  save(c);
  r = run_generate(args);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "The price" + tok->decode(Ids(free_run.begin(), free_run.begin() + static_cast<long>(first))));
  EXPECT_NE(r.err.find("stop token"), std::string::npos) << r.err;
  // --ignore-eos runs to the budget.
  r = run_generate(args + " --ignore-eos --no-echo");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("generated 12 tokens"), std::string::npos) << r.err;

  // Seeded sampling prints the same text twice.
  const std::string sampled = "--model " + shell_quoted(dir_ / "model") + " --temperature 1 --top-k 20 --seed 5 -n 16";
  const CliRun s1 = run_generate(sampled);
  const CliRun s2 = run_generate(sampled);
  ASSERT_EQ(s1.rc, 0) << s1.err;
  EXPECT_EQ(s1.out, s2.out);
  EXPECT_NE(s1.err.find("seed 5"), std::string::npos) << s1.err;
}

TEST_F(GenerateCli, BaseDtypeIsTheInMemoryFormat) {
  // --base-dtype nf4 prints what the library generates from the NF4-converted model.
  const auto tok = load_tokenizer((dir_ / "model").string());
  ModelFile mf = load_model_file((dir_ / "model").string(), DType::NF4);
  ASSERT_EQ(mf.tensors.at("model.layers.0.mlp.down_proj.weight").dtype(), DType::NF4);
  LlamaModel m = LlamaModel::from_weights(mf.config, std::move(mf.tensors), mf.source);
  auto be = make_cpu_backend();
  GenerationOptions g = greedy(10);
  g.stop_ids = {257, 256};
  const Ids ids = generate(m, *be, Ids{256}, g).tokens;
  const CliRun r = run_generate("--model " + shell_quoted(dir_ / "model") + " --base-dtype nf4 --temperature 0 -n 10");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, tok->decode(ids));
}

TEST_F(GenerateCli, BadArgumentsAreClearErrors) {
  const std::string model = "--model " + shell_quoted(dir_ / "model");
  auto expect_error = [&](const std::string& args, const std::string& needle) {
    const CliRun r = run_generate(args);
    EXPECT_EQ(r.rc, 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(r.out, "") << args;
  };
  expect_error(model + " --temperature -1", "temperature must be >= 0");
  expect_error(model + " --top-p 0", "top-p must be in (0, 1]");
  expect_error(model + " --top-p 1.5", "top-p must be in (0, 1]");
  expect_error(model + " --top-k -3", "top-k must be >= 0");
  expect_error(model + " --max-tokens 0", "--max-tokens must be >= 1");
  expect_error(model + " --no-bos", "the prompt is empty and no BOS");
  expect_error(model + " --base-dtype q9", "q9");
  expect_error("--model " + shell_quoted(dir_ / "absent"), "absent");
  const std::string prompt(80, 'x');  // 80 byte tokens + BOS exceed the context of 64
  expect_error(model + " --prompt " + prompt, "more than the model's context of 64");
  expect_error("--model " + shell_quoted(fs::path(PRICER_SOURCE_DIR) / "tests/data/io/meta_style.bin"),
               "holds no tokenizer; give --tokenizer");
  // A tokenizer larger than the model's vocab.
  cfg_.vocab_size = 200;
  tensors_ = test_io::random_model(cfg_, 23);
  cfg_.bos_id = cfg_.eos_id = -1;
  save(cfg_);
  expect_error(model, "more than the model's vocab of 200");
}

// ---- llama2.c's stories260K: its own reference output, bit for bit ----

class Stories260K : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = kShared / "fixtures/stories260K";
    if (!fs::exists(dir_ / "stories260K.bin")) GTEST_SKIP() << "shared fixture " << dir_ << " not present";
    std::ifstream in(dir_ / "expected_greedy_ids_200.txt");
    for (int32_t id; in >> id;) expected_.push_back(id);
    ASSERT_EQ(expected_.size(), 200u);
  }
  Ids greedy_ids(const std::string& model_path) {
    ModelFile mf = load_model_file(model_path);
    LlamaModel m = LlamaModel::from_weights(mf.config, std::move(mf.tensors), mf.source);
    auto be = make_cpu_backend();
    GenerationOptions g = greedy(200);
    g.stop_ids = {1, 2};
    return generate(m, *be, Ids{1}, g).tokens;
  }
  std::string model() const { return (dir_ / "stories260K.bin").string(); }
  std::string tokenizer() const { return (dir_ / "tok512.bin").string(); }
  fs::path dir_;
  Ids expected_;
};

TEST_F(Stories260K, GreedyIdsMatchLlama2c) { EXPECT_EQ(greedy_ids(model()), expected_); }

TEST_F(Stories260K, CachedDecodeLogitsEqualTheFullForward) {
  ModelFile mf = load_model_file(model());
  LlamaModel m = LlamaModel::from_weights(mf.config, std::move(mf.tensors), mf.source);
  auto be = make_cpu_backend();
  Ids seq = {1};
  seq.insert(seq.end(), expected_.begin(), expected_.end() - 1);
  Batch b = make_batch(std::vector<Example>{{seq, 1}}, BatchMode::Packing, 0);
  std::vector<int64_t> rows(seq.size());
  std::iota(rows.begin(), rows.end(), 0);
  const std::vector<float> full = m.logits(b, rows, *be);
  const auto V = static_cast<size_t>(m.config().vocab_size);
  KvCache cache = m.make_cache(static_cast<int64_t>(seq.size()));
  double worst = 0;
  for (size_t t = 0; t < seq.size(); ++t) {
    const std::vector<float> step =
        t == 0 ? m.prefill(cache, std::span(seq).first(1), *be) : m.decode(cache, seq[t], *be);
    ASSERT_EQ(step.size(), V);
    for (size_t v = 0; v < V; ++v) worst = std::max(worst, static_cast<double>(std::fabs(step[v] - full[t * V + v])));
    EXPECT_EQ(argmax(step), expected_[t]) << "step " << t;
  }
  EXPECT_LT(worst, 1e-4);
}

TEST_F(Stories260K, GgufAndHuggingFaceCopiesGenerateTheSameTokens) {
  const fs::path tmp = temp_dir("stories");
  const ModelFile mf = load_model_file(model());
  save_gguf((tmp / "stories260K.gguf").string(), mf.config, mf.tensors);
  save_hf_dir((tmp / "hf").string(), mf.config, mf.tensors);
  EXPECT_EQ(greedy_ids((tmp / "stories260K.gguf").string()), expected_);
  EXPECT_EQ(greedy_ids((tmp / "hf").string()), expected_);

  // And the CLI prints llama2.c's text from each (sampled text too, the same for each format).
  const std::string want = slurp(dir_ / "expected_stdout_t0_n200.txt");
  const std::string sample = " --temperature 1 --top-p 0.9 --seed 3 --max-tokens 100";
  std::string sampled_bin;
  for (const fs::path& m : {fs::path(model()), tmp / "stories260K.gguf", tmp / "hf"}) {
    const std::string base = "--model " + shell_quoted(m) + " --tokenizer " + shell_quoted(tokenizer());
    CliRun r = run_generate(base + " --temperature 0 --max-tokens 200");
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out, want) << m;
    r = run_generate(base + sample);
    ASSERT_EQ(r.rc, 0) << r.err;
    if (sampled_bin.empty()) sampled_bin = r.out;
    EXPECT_EQ(r.out, sampled_bin) << m;
  }
  fs::remove_all(tmp);
}

TEST_F(Stories260K, CliPrintsLlama2csOutputExactly) {
  const std::string want = slurp(dir_ / "expected_stdout_t0_n200.txt");
  const std::string base = "--model " + shell_quoted(model()) + " --tokenizer " + shell_quoted(tokenizer());
  CliRun r = run_generate(base + " --temperature 0 --max-tokens 200");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, want);
  EXPECT_NE(r.err.find("generated 200 tokens"), std::string::npos) << r.err;

  // The story's own opening as a prompt (prefilled in one pass) continues into the same story:
  // echoed, the prompt's tokens and the new ones are the same 200 tokens as above.
  const std::string opening = "Once upon a time";
  const auto tok = load_tokenizer(tokenizer());
  const auto n_prompt = static_cast<int64_t>(tok->encode(opening).size());
  ASSERT_EQ(tok->encode(opening), Ids(expected_.begin(), expected_.begin() + n_prompt));
  const std::string rest = " --temperature 0 --max-tokens " + std::to_string(200 - n_prompt);
  r = run_generate(base + " --prompt '" + opening + "'" + rest);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, want);
  r = run_generate(base + " --prompt '" + opening + "' --no-echo" + rest);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, want.substr(opening.size()));
}

}  // namespace
}  // namespace pricer
