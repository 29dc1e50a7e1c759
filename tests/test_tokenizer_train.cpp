// BPE training: numbers 0-999 are single tokens, the trained vocab round-trips text, learns the
// frequent words, is deterministic, and loads back from its tokenizer.json.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "tokenizer/train_bpe.h"

namespace fs = std::filesystem;
using Ids = std::vector<int32_t>;

namespace {

std::vector<std::string> corpus(size_t n, unsigned seed) {
  const char* words[] = {"the",      "steel", "kit",        "replacement", "for", "dryer", "with",   "pack",
                         "wireless", "light", "Heavy-Duty", "inch",        "USB", "cable", "quality"};
  std::mt19937 rng(seed);
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    std::string s;
    for (int k = 0; k < 30; ++k) {
      s += words[rng() % std::size(words)];
      s += rng() % 5 == 0 ? ", " : " ";
      if (rng() % 7 == 0) s += std::to_string(rng() % 5000) + " ";
    }
    out.push_back(s);
  }
  return out;
}

}  // namespace

TEST(TrainBpe, NumbersAreSingleTokensAndTextRoundTrips) {
  auto texts = corpus(300, 1);
  pricer::BpeTrainOptions opt;
  opt.vocab_size = 1400;
  auto bpe = pricer::train_bpe(texts, opt);
  EXPECT_LE(static_cast<int32_t>(bpe.tokens.size()), opt.vocab_size);
  EXPECT_GT(bpe.tokens.size(), 256u + 990u + 2u);  // learned something beyond the fixed part
  auto tok = pricer::make_trained_tokenizer(bpe);
  EXPECT_EQ(tok->token_bytes(tok->bos_id()), "<|begin_of_text|>");
  EXPECT_EQ(tok->token_bytes(tok->eos_id()), "<|end_of_text|>");
  for (int n = 0; n < 1000; ++n) {
    Ids ids = tok->encode(std::to_string(n));
    ASSERT_EQ(ids.size(), 1u) << n;
    EXPECT_EQ(tok->token_bytes(ids[0]), std::to_string(n));
  }
  // In context too, and longer numbers split in runs of three.
  Ids price = tok->encode("$129.99");
  ASSERT_EQ(price.size(), 4u);
  EXPECT_EQ(tok->token_bytes(price[1]), "129");
  EXPECT_EQ(tok->decode(tok->encode("1234567")), "1234567");
  EXPECT_EQ(tok->encode("1234567").size(), 3u);
  // A frequent word of the corpus became one token.
  EXPECT_EQ(tok->encode(" replacement").size(), 1u);
  for (const auto& t : corpus(20, 2)) EXPECT_EQ(tok->decode(tok->encode(t)), t);
  for (std::string s : {std::string("caf\xC3\xA9 \xF0\x9F\xA6\x99"), std::string("\xFF\x80 x"), std::string()})
    EXPECT_EQ(tok->decode(tok->encode(s)), s);
}

TEST(TrainBpe, DeterministicAndLoadsBackFromJson) {
  auto texts = corpus(200, 3);
  pricer::BpeTrainOptions opt;
  opt.vocab_size = 1300;
  auto a = pricer::train_bpe(texts, opt), b = pricer::train_bpe(texts, opt);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.merges, b.merges);
  fs::path p = fs::temp_directory_path() / ("pricer_trained_" + std::to_string(::getpid()) + ".json");
  pricer::save_tokenizer_json(a, p.string());
  auto loaded = pricer::load_tokenizer(p.string());
  fs::remove(p);
  auto direct = pricer::make_trained_tokenizer(a);
  EXPECT_EQ(loaded->vocab_size(), direct->vocab_size());
  EXPECT_EQ(loaded->bos_id(), a.bos_id);
  EXPECT_EQ(loaded->eos_id(), a.eos_id);
  for (const auto& t : corpus(10, 4)) EXPECT_EQ(loaded->encode(t), direct->encode(t));
  EXPECT_EQ(loaded->encode("<|end_of_text|>x", true), (Ids{a.eos_id, direct->encode("x")[0]}));
}

TEST(TrainBpe, MinFrequencyStopsEarlyAndVocabTooSmallThrows) {
  pricer::BpeTrainOptions opt;
  opt.vocab_size = 5000;
  opt.min_frequency = 1000000;  // nothing is that frequent: only the fixed part remains
  auto bpe = pricer::train_bpe(corpus(50, 5), opt);
  EXPECT_EQ(bpe.tokens.size(), 256u + 990u + 2u);
  opt.vocab_size = 1000;
  EXPECT_THROW(pricer::train_bpe(corpus(5, 6), opt), pricer::Error);
}

TEST(TrainBpe, ProductCorpus) {
  fs::path dir = fs::path(PRICER_SHARED_DIR) / "data/amazon-text";
  if (!fs::exists(dir / "text-00.jsonl")) GTEST_SKIP() << "shared data " << dir << " not present";
  std::vector<std::string> texts;
  std::ifstream in(dir / "text-00.jsonl");
  for (std::string line; texts.size() < 1500 && std::getline(in, line);)
    texts.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
  pricer::BpeTrainOptions opt;
  opt.vocab_size = 2048;
  auto bpe = pricer::train_bpe(std::vector<std::string>(texts.begin(), texts.begin() + 1000), opt);
  EXPECT_EQ(static_cast<int32_t>(bpe.tokens.size()), opt.vocab_size);
  auto tok = pricer::make_trained_tokenizer(bpe);
  size_t bytes = 0, ids = 0;
  for (size_t i = 1000; i < texts.size(); ++i) {  // held-out texts
    Ids v = tok->encode(texts[i]);
    ASSERT_EQ(tok->decode(v), texts[i]) << i;
    bytes += texts[i].size();
    ids += v.size();
  }
  // Even 800 learned merges compress English product text past 2 bytes a token.
  EXPECT_GT(double(bytes) / double(ids), 2.0);
}
