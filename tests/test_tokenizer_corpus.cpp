// decode(encode(s)) == s for every product text in ../shared/data/amazon-prices (train and val),
// through each real tokenizer kind in ../shared: Llama 3 byte-level BPE (Meta's tiktoken file),
// SentencePiece-style BPE with byte fallback (llama2.c tok512.bin) and a GGUF `llama` vocab.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace {

const fs::path kShared = PRICER_SHARED_DIR;

const std::vector<std::string>& product_texts() {
  static const std::vector<std::string> texts = [] {
    std::vector<std::string> out;
    const fs::path dir = kShared / "data/amazon-prices";
    if (!fs::exists(dir)) return out;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".jsonl") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      std::ifstream in(f);
      for (std::string line; std::getline(in, line);)
        if (!line.empty()) out.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
    }
    return out;
  }();
  return texts;
}

void expect_round_trips(const std::string& tokenizer_file) {
  const fs::path path = kShared / tokenizer_file;
  if (!fs::exists(path)) GTEST_SKIP() << "shared tokenizer " << path << " not present";
  const auto& texts = product_texts();
  if (texts.empty())
    GTEST_SKIP() << "shared data " << kShared / "data/amazon-prices"
                 << " not present";
  ASSERT_GT(texts.size(), 13000u);  // 12,104 train + 1,000 val items
  const auto tok = pricer::load_tokenizer(path.string());
  size_t failures = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::vector<int32_t> ids = tok->encode(texts[i]);
    if (tok->decode(ids) != texts[i] && ++failures <= 3)
      ADD_FAILURE() << tokenizer_file << ": text " << i << " does not round trip:\n" << texts[i];
  }
  EXPECT_EQ(failures, 0u);
}

TEST(ProductCorpus, Llama3RoundTripsEveryText) { expect_round_trips("fixtures/llama3-tokenizer/tokenizer.model"); }
TEST(ProductCorpus, Llama2cTok512RoundTripsEveryText) { expect_round_trips("fixtures/stories260K/tok512.bin"); }
TEST(ProductCorpus, GgufLlamaVocabRoundTripsEveryText) { expect_round_trips("fixtures/gguf/llama-2-tiny-random.gguf"); }

}  // namespace
